import { strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it, vi } from 'vitest';
import type { AuditService } from '../../audit/audit.service';
import type { RequestOrigin } from '../../audit/request-origin';
import type { AuthenticatedCaller } from '../../authz/caller';
import type { CallerCache } from '../../authz/caller-cache';
import type { CsrfTokens } from '../session-secrets';
import type { UsersService } from '../../users/users.service';
import type { RateLimiterService } from '../../authz/rate-limiter.service';
import { sha256Hex } from '../session-secrets';
import { testCaller } from '../../../test/test-caller';
import type { ClockRepository } from '../../common/clock.repository';
import { DomainError } from '../../common/domain-error';
import { ErrorCode } from '../../common/error-code';
import type { RandomRepository } from '../../common/random.repository';
import type { ManagerConfig } from '../../config/manager-config';
import type { MetricsService } from '../../health/metrics.service';
import type { ManagerIdentity } from '../../pki/state-dir.repository';
import type { LoginRepository } from '../login.repository';
import { LoginService } from '../login.service';
import type { SessionsService } from '../sessions.service';
import type { PasswordHasherRepository } from '../../users/password-hasher.repository';
import type { RealmsService } from '../../realms/realms.service';
import type { SessionEntity } from '../session.entity';
import type { TfaRepository } from './tfa.repository';
import type { TfaService } from './tfa.service';
import type { UserEntity } from '../../users/user.entity';
import type { WebauthnCredentialEntity } from './webauthn-credential.entity';
import { relyingParty } from './webauthn-rp';
import type { WebauthnVerifierRepository } from './webauthn-verifier.repository';
import { WebauthnService } from './webauthn.service';

const NOW = new Date('2026-05-01T12:00:00Z');
const TWO_MINUTES = new Date(NOW.getTime() + 120_000);
const ORIGIN: RequestOrigin = {
  traceId: 't',
  source: '192.0.2.7',
  method: 'POST',
  path: '/api/v1/access/tfa/webauthn/options',
};
const SESSION_ID = 'a'.repeat(64);
const RP = { id: 'dvm.example', origin: 'https://dvm.example:8006' };
const CHALLENGE_BYTES = Buffer.alloc(32, 0x11);

function user(overrides: Partial<UserEntity> = {}): UserEntity {
  return {
    id: 'alice@local',
    realmId: 'local',
    username: 'alice',
    displayName: 'Alice',
    email: null,
    enabled: true,
    passwordHash: '$argon2id$stored',
    passwordChangedAt: null,
    externalId: null,
    requireTfa: false,
    failedLogins: 0,
    lockedUntil: null,
    totpLocked: false,
    tfaFailures: 0,
    tfaLockedUntil: null,
    sessionsValidAfter: null,
    createdAt: new Date('2026-01-01T00:00:00Z'),
    syncedAt: null,
    ...overrides,
  };
}

function credential(overrides: Partial<WebauthnCredentialEntity> = {}): WebauthnCredentialEntity {
  return {
    id: '00000000-0000-4000-8000-0000000000c1',
    userId: 'alice@local',
    name: 'yubikey',
    credentialId: 'Y3JlZC0x',
    publicKey: 'cHVibGljLWtleQ',
    counter: 5,
    transports: ['usb'],
    createdAt: NOW,
    lastUsedAt: null,
    ...overrides,
  };
}

function session(stage: 'setup' | 'active' = 'active'): AuthenticatedCaller {
  const caller = testCaller([], {
    kind: 'session',
    principal: 'alice@local',
    tokenId: null,
    tokenName: null,
    sessionId: SESSION_ID,
    display: 'alice@local',
  });
  return { ...caller, sessionStage: stage };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return `${error.code}: ${error.message}`;
    throw error;
  }
  throw new Error('expected a DomainError');
}

const RECOVERY = { shown: ['aaaa-bbbb'], stored: [{ id: 'r1', codeHash: 'h1' }] };

function enrolment(
  mocks: {
    repository?: Partial<TfaRepository>;
    logins?: Partial<LoginRepository>;
    verifier?: Partial<WebauthnVerifierRepository>;
    freshCheck?: TfaService['freshCheck'];
  } = {},
) {
  const tfa = strictMock<TfaService>('TfaService', {
    sessionUser: async () => user(),
    freshCheck: mocks.freshCheck ?? (async () => undefined),
    approveRequiredEnrolment: async () => undefined,
    newRecoveryCodes: () => RECOVERY,
  });
  const repository = strictMock<TfaRepository>('TfaRepository', mocks.repository);
  const logins = strictMock<LoginRepository>('LoginRepository', mocks.logins);
  const verifier = strictMock<WebauthnVerifierRepository>(
    'WebauthnVerifierRepository',
    mocks.verifier,
  );
  const auth = strictMock<CallerCache>('CallerCache', { invalidate: () => undefined });
  const audit = strictMock<AuditService>('AuditService', { note: () => undefined });
  const clock = strictMock<ClockRepository>('ClockRepository', { now: () => NOW });
  const random = strictMock<RandomRepository>('RandomRepository', {
    bytes: () => CHALLENGE_BYTES,
    uuid: () => '00000000-0000-4000-8000-0000000000c9',
  });
  const config = { publicUrl: undefined } as unknown as ManagerConfig;
  const service = new WebauthnService(
    tfa,
    repository,
    logins,
    verifier,
    auth,
    audit,
    clock,
    random,
    config,
  );
  return { service, tfa, repository, logins, verifier, auth };
}

describe('relyingParty', () => {
  it('uses the Host the browser reached the manager at, without the port for the RP ID', () => {
    expect(relyingParty(undefined, 'DVM.example:8006')).toEqual(RP);
    expect(relyingParty(undefined, 'localhost:9443')).toEqual({
      id: 'localhost',
      origin: 'https://localhost:9443',
    });
  });

  it('prefers the configured public URL over the Host header', () => {
    expect(relyingParty('https://manager.example.org', 'evil.example:1')).toEqual({
      id: 'manager.example.org',
      origin: 'https://manager.example.org',
    });
  });

  it('refuses a Host header that is not a host name or address with a port', async () => {
    for (const host of [undefined, 'a/b', 'user@host', 'host:99999', '']) {
      expect(await codeOf(Promise.resolve().then(() => relyingParty(undefined, host)))).toMatch(
        /^bad_request: the Host header/,
      );
    }
  });
});

describe('WebauthnService enrolment', () => {
  it('checks the password, then answers registration options excluding existing credentials and stores the challenge with the name for 2 minutes', async () => {
    const registrationOptions = vi.fn(async () => ({ challenge: 'EREREQ', rp: { id: RP.id } }));
    const setWebauthnChallenge = vi.fn(async () => undefined);
    const { service, tfa } = enrolment({
      repository: { webauthnCredentials: async () => [credential()] },
      logins: { setWebauthnChallenge },
      verifier: { registrationOptions },
    });
    await expect(
      service.registrationOptions(
        session(),
        { name: 'laptop', password: 'pw' },
        'dvm.example:8006',
        ORIGIN,
      ),
    ).resolves.toEqual({
      challenge: 'EREREQ',
      rp: { id: RP.id },
    });
    expect(tfa.freshCheck).toHaveBeenCalledWith(session(), user(), 'pw', ORIGIN);
    expect(registrationOptions).toHaveBeenCalledWith({
      rp: RP,
      userName: 'alice@local',
      userDisplayName: 'Alice',
      challenge: CHALLENGE_BYTES,
      exclude: [credential()],
    });
    expect(setWebauthnChallenge).toHaveBeenCalledWith(SESSION_ID, 'EREREQ', TWO_MINUTES, 'laptop');
  });

  it('answers no options after a wrong password', async () => {
    const { service } = enrolment({
      freshCheck: async () => {
        throw new DomainError(ErrorCode.Forbidden, 'wrong password');
      },
    });
    expect(
      await codeOf(
        service.registrationOptions(
          session(),
          { name: 'laptop', password: 'guess' },
          'dvm.example',
          ORIGIN,
        ),
      ),
    ).toMatch(/^forbidden/);
    // The strict mock has no registrationOptions: generating options would have thrown.
  });

  it('refuses a name the user has already (409)', async () => {
    const { service } = enrolment({
      repository: { webauthnCredentials: async () => [credential()] },
    });
    expect(
      await codeOf(
        service.registrationOptions(
          session(),
          { name: 'yubikey', password: 'pw' },
          'dvm.example',
          ORIGIN,
        ),
      ),
    ).toMatch(/^conflict: .*"yubikey"/);
  });

  it('verifies the answer against the session challenge and RP, stores the credential and answers the recovery codes for the first factor', async () => {
    const verifyRegistration = vi.fn(async () => ({
      ok: true as const,
      credential: { credentialId: 'bmV3', publicKey: 'a2V5', counter: 0, transports: ['internal'] },
    }));
    const addWebauthnCredential = vi.fn(async () => ({
      added: true as const,
      first: true,
      sessionUpgraded: true,
    }));
    const { service, auth } = enrolment({
      logins: {
        takeWebauthnChallenge: async () => ({
          challenge: 'EREREQ',
          expiresAt: TWO_MINUTES,
          pendingName: 'laptop',
        }),
      },
      verifier: { verifyRegistration },
      repository: { addWebauthnCredential },
    });
    const response = { id: 'bmV3' };
    await expect(service.register(session('setup'), response, 'dvm.example:8006')).resolves.toEqual(
      {
        id: '00000000-0000-4000-8000-0000000000c9',
        name: 'laptop',
        recoveryCodes: RECOVERY.shown,
        stage: 'active',
      },
    );
    expect(verifyRegistration).toHaveBeenCalledWith({ response, challenge: 'EREREQ', rp: RP });
    expect(addWebauthnCredential).toHaveBeenCalledWith({
      credential: {
        id: '00000000-0000-4000-8000-0000000000c9',
        userId: 'alice@local',
        name: 'laptop',
        credentialId: 'bmV3',
        publicKey: 'a2V5',
        counter: 0,
        transports: ['internal'],
        createdAt: NOW,
        lastUsedAt: null,
      },
      recoveryCodes: RECOVERY.stored,
      sessionId: SESSION_ID,
      now: NOW,
    });
    expect(auth.invalidate).toHaveBeenCalled();
  });

  it('answers no recovery codes when the user had a second factor already', async () => {
    const { service } = enrolment({
      logins: {
        takeWebauthnChallenge: async () => ({
          challenge: 'EREREQ',
          expiresAt: TWO_MINUTES,
          pendingName: 'laptop',
        }),
      },
      verifier: {
        verifyRegistration: async () => ({
          ok: true as const,
          credential: { credentialId: 'bmV3', publicKey: 'a2V5', counter: 0, transports: [] },
        }),
      },
      repository: {
        addWebauthnCredential: async () => ({
          added: true as const,
          first: false,
          sessionUpgraded: false,
        }),
      },
    });
    await expect(service.register(session(), {}, 'dvm.example:8006')).resolves.toMatchObject({
      recoveryCodes: null,
      stage: 'active',
    });
  });

  it('refuses an answer without an open, unexpired enrolment challenge, without verifying it', async () => {
    for (const pending of [
      null,
      { challenge: 'x', expiresAt: NOW, pendingName: 'laptop' },
      { challenge: 'x', expiresAt: TWO_MINUTES, pendingName: null },
    ]) {
      const { service } = enrolment({ logins: { takeWebauthnChallenge: async () => pending } });
      expect(await codeOf(service.register(session(), {}, 'dvm.example'))).toMatch(
        /^conflict: no WebAuthn enrolment is waiting/,
      );
      // The strict mock has no verifyRegistration: verifying would have thrown.
    }
  });

  it('stores nothing when the authenticator answer does not verify', async () => {
    const { service } = enrolment({
      logins: {
        takeWebauthnChallenge: async () => ({
          challenge: 'EREREQ',
          expiresAt: TWO_MINUTES,
          pendingName: 'laptop',
        }),
      },
      verifier: {
        verifyRegistration: async () => ({
          ok: false as const,
          reason: 'Unexpected registration response origin',
        }),
      },
    });
    expect(await codeOf(service.register(session(), {}, 'dvm.example'))).toMatch(
      /^validation_failed: response: .*origin/,
    );
    // The strict mock has no addWebauthnCredential: storing would have thrown.
  });
});

const SECRET = 's'.repeat(43);
const PENDING_ID = sha256Hex(SECRET);

function pendingSession(): SessionEntity {
  return {
    id: PENDING_ID,
    userId: 'alice@local',
    stage: 'tfa',
    createdAt: NOW,
    lastSeenAt: NOW,
    expiresAt: new Date(NOW.getTime() + 300_000),
    sourceIp: null,
  };
}

function login(
  mocks: {
    repository?: Partial<LoginRepository>;
    verifier?: Partial<WebauthnVerifierRepository>;
    user?: Partial<UserEntity>;
  } = {},
) {
  const repository = strictMock<LoginRepository>('LoginRepository', {
    findSession: async (id) => (id === PENDING_ID ? pendingSession() : null),
    findUser: async () => user(mocks.user),
    webauthnCredentials: async () => [credential()],
    deleteSession: async () => true,
    createSession: async () => undefined,
    ...mocks.repository,
  });
  const verifier = strictMock<WebauthnVerifierRepository>(
    'WebauthnVerifierRepository',
    mocks.verifier,
  );
  const users = strictMock<UsersService>('UsersService', {
    reserveTfaAttempt: async () => true,
    recordTfaFailure: async () => undefined,
    clearTfaFailures: async () => undefined,
  });
  const auth = strictMock<CsrfTokens>('CsrfTokens', {
    matches: (id, token) => id === PENDING_ID && token === 'csrf',
    tokenFor: () => 'new-csrf',
  });
  const limits = strictMock<RateLimiterService>('RateLimiterService', {
    loginAttempt: async () => undefined,
  });
  const audit = strictMock<AuditService>('AuditService', { authentication: async () => undefined });
  const metrics = { rpc: { authAttempt: vi.fn() } } as unknown as MetricsService;
  const clock = strictMock<ClockRepository>('ClockRepository', { now: () => NOW });
  const random = strictMock<RandomRepository>('RandomRepository', {
    bytes: (n) => Buffer.alloc(n, 0x11),
  });
  const config = {
    publicUrl: undefined,
    access: { sessionMaxSeconds: 3600 },
  } as unknown as ManagerConfig;
  const service = new LoginService(
    repository,
    strictMock<PasswordHasherRepository>('PasswordHasherRepository'),
    strictMock<RealmsService>('RealmsService'),
    auth,
    limits,
    audit,
    metrics,
    clock,
    random,
    verifier,
    config,
    { secretKey: Buffer.alloc(32, 7) } as ManagerIdentity,
    strictMock<PinoLogger>('PinoLogger'),
    strictMock<SessionsService>('SessionsService'),
    strictMock<CallerCache>('CallerCache'),
    users,
  );
  return { service, repository, verifier, audit, users };
}

const ASSERTION = { id: 'Y3JlZC0x', type: 'public-key' };

describe('LoginService with WebAuthn', () => {
  it('offers webauthn as a second-factor method when the user has a credential', async () => {
    const { service } = login({
      repository: {
        confirmedTotpDevices: async () => [],
        unusedRecoveryCodes: async () => 10,
        groupRequiresTfa: async () => false,
      },
    });
    await expect(
      service.afterFirstFactor(user(), false, 'password', ORIGIN),
    ).resolves.toMatchObject({ stage: 'tfa', methods: ['webauthn', 'recovery'] });
  });

  it('answers authentication options for the pending login and stores their challenge on it for 2 minutes', async () => {
    const authenticationOptions = vi.fn(async () => ({ challenge: 'EREREQ', rpId: RP.id }));
    const setWebauthnChallenge = vi.fn(async () => undefined);
    const { service } = login({
      repository: { setWebauthnChallenge },
      verifier: { authenticationOptions },
    });
    await expect(
      service.webauthnOptions(SECRET, 'csrf', 'dvm.example:8006', ORIGIN),
    ).resolves.toEqual({ challenge: 'EREREQ', rpId: RP.id });
    expect(authenticationOptions).toHaveBeenCalledWith({
      rp: RP,
      challenge: Buffer.alloc(32, 0x11),
      allow: [credential()],
    });
    expect(setWebauthnChallenge).toHaveBeenCalledWith(PENDING_ID, 'EREREQ', TWO_MINUTES, null);
  });

  it('answers no options without the pending cookie or its CSRF token', async () => {
    const { service } = login();
    expect(await codeOf(service.webauthnOptions(undefined, 'csrf', 'dvm.example', ORIGIN))).toMatch(
      /^unauthenticated: no login is waiting/,
    );
    expect(await codeOf(service.webauthnOptions(SECRET, 'other', 'dvm.example', ORIGIN))).toMatch(
      /^forbidden: .*CSRF/,
    );
    // The strict mock has no authenticationOptions: generating options would have thrown.
  });

  it('accepts a verified assertion whose counter advances, and replaces the pending login with an active session', async () => {
    const verifyAuthentication = vi.fn(async () => ({ ok: true as const, newCounter: 6 }));
    const useWebauthnCredential = vi.fn(async () => true);
    const { service, repository, audit, users } = login({
      repository: {
        takeWebauthnChallenge: async () => ({
          challenge: 'EREREQ',
          expiresAt: TWO_MINUTES,
          pendingName: null,
        }),
        useWebauthnCredential,
      },
      verifier: { verifyAuthentication },
      // The TOTP lock does not concern WebAuthn.
      user: { totpLocked: true },
    });
    await expect(
      service.secondFactor(SECRET, 'csrf', { webauthn: ASSERTION }, ORIGIN, 'dvm.example:8006'),
    ).resolves.toMatchObject({ stage: 'active', methods: [] });
    expect(verifyAuthentication).toHaveBeenCalledWith({
      response: ASSERTION,
      challenge: 'EREREQ',
      rp: RP,
      credential: credential(),
    });
    expect(useWebauthnCredential).toHaveBeenCalledWith(credential().id, 6, NOW);
    expect(users.clearTfaFailures).toHaveBeenCalledWith('alice@local', false);
    expect(repository.deleteSession).toHaveBeenCalledWith(PENDING_ID);
    expect(audit.authentication).toHaveBeenCalledWith(
      expect.objectContaining({ outcome: 'success', method: 'webauthn' }),
      ORIGIN,
    );
  });

  it.each([
    [
      'no challenge was asked for (or it was spent)',
      { takeWebauthnChallenge: async () => null },
      undefined,
    ],
    [
      'the challenge expired',
      {
        takeWebauthnChallenge: async () => ({
          challenge: 'EREREQ',
          expiresAt: NOW,
          pendingName: null,
        }),
      },
      undefined,
    ],
    [
      'the challenge is an enrolment one',
      {
        takeWebauthnChallenge: async () => ({
          challenge: 'EREREQ',
          expiresAt: TWO_MINUTES,
          pendingName: 'laptop',
        }),
      },
      undefined,
    ],
    [
      'the credential is not the user’s',
      {
        takeWebauthnChallenge: async () => ({
          challenge: 'EREREQ',
          expiresAt: TWO_MINUTES,
          pendingName: null,
        }),
        webauthnCredentials: async () => [credential({ credentialId: 'b3RoZXI' })],
      },
      undefined,
    ],
    [
      'the assertion does not verify',
      {
        takeWebauthnChallenge: async () => ({
          challenge: 'EREREQ',
          expiresAt: TWO_MINUTES,
          pendingName: null,
        }),
      },
      {
        verifyAuthentication: async () => ({
          ok: false as const,
          reason: 'Unexpected authentication response challenge',
        }),
      },
    ],
    [
      'the counter did not advance (lost the race or replayed)',
      {
        takeWebauthnChallenge: async () => ({
          challenge: 'EREREQ',
          expiresAt: TWO_MINUTES,
          pendingName: null,
        }),
        useWebauthnCredential: async () => false,
      },
      { verifyAuthentication: async () => ({ ok: true as const, newCounter: 6 }) },
    ],
  ] as [string, Partial<LoginRepository>, Partial<WebauthnVerifierRepository> | undefined][])(
    'refuses and counts a failure when %s',
    async (_, repository, verifier) => {
      const parts = login({ repository, verifier });
      expect(
        await codeOf(
          parts.service.secondFactor(
            SECRET,
            'csrf',
            { webauthn: ASSERTION },
            ORIGIN,
            'dvm.example',
          ),
        ),
      ).toBe('unauthenticated: invalid or already used code');
      expect(parts.users.recordTfaFailure).toHaveBeenCalledWith(
        'alice@local',
        5,
        10,
        expect.any(Date),
      );
      expect(parts.repository.createSession).not.toHaveBeenCalled();
    },
  );

  it('refuses WebAuthn while the whole second factor is locked, without spending the challenge', async () => {
    const { service } = login({ user: { tfaLockedUntil: TWO_MINUTES } });
    expect(
      await codeOf(
        service.secondFactor(SECRET, 'csrf', { webauthn: ASSERTION }, ORIGIN, 'dvm.example'),
      ),
    ).toMatch(/^unauthenticated: too many failed attempts/);
    // The strict mock has no takeWebauthnChallenge: spending the challenge would have thrown.
  });
});
