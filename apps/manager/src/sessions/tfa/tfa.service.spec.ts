import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it, vi } from 'vitest';
import type { AuditService } from '../../audit/audit.service';
import type { RequestOrigin } from '../../audit/request-origin';
import type { AuthenticatedCaller } from '../../authz/caller';
import type { CallerCache } from '../../authz/caller-cache';
import type { UnitOfWork } from '../../database/unit-of-work.repository';
import type { LoginRepository } from '../login.repository';
import type { UsersService } from '../../users/users.service';
import type { RateLimiterService } from '../../authz/rate-limiter.service';
import { testCaller } from '../../../test/test-caller';
import type { ClockRepository } from '../../common/clock.repository';
import { DomainError } from '../../common/domain-error';
import { ErrorCode } from '../../common/error-code';
import type { RandomRepository } from '../../common/random.repository';
import type { ManagerConfig } from '../../config/manager-config';
import { SecretBox } from '../../pki/secret-box';
import type { ManagerIdentity } from '../../pki/state-dir.repository';
import type { PasswordHasherRepository } from '../../users/password-hasher.repository';
import type { RealmEntity } from '../../realms/realm.entity';
import type { RealmsService } from '../../realms/realms.service';
import type { SessionEntity } from '../session.entity';
import { hashRecoveryCode, normalizeRecoveryCode } from './recovery-codes';
import { totpCode, totpStep } from './totp';
import type { TfaRepository } from './tfa.repository';
import { MAX_TOTP_DEVICES, TfaService } from './tfa.service';
import type { TotpDeviceEntity } from './totp-device.entity';
import type { UserEntity } from '../../users/user.entity';

const NOW = new Date('2026-05-01T12:00:10Z');
const KEY = Buffer.alloc(32, 7);
const box = new SecretBox(KEY);
const ORIGIN: RequestOrigin = {
  traceId: 't',
  source: '192.0.2.7',
  method: 'POST',
  path: '/api/v1/access/tfa/totp',
};
const DEVICE_ID = '0b7e6c2a-1d3f-4e5a-9b8c-7d6e5f4a3b2c';
/** base32 of 20 bytes of 0x42: what generateTotpSecret makes of the fixed random bytes below. */
const SECRET = 'IJBEEQSCIJBEEQSCIJBEEQSCIJBEEQSC';
const SESSION_ID = 'a'.repeat(64);

function user(overrides: Partial<UserEntity> = {}): UserEntity {
  return {
    id: 'alice@local',
    realmId: 'local',
    username: 'alice',
    displayName: null,
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

function realm(type: RealmEntity['type'], id = type === 'local' ? 'local' : 'corp'): RealmEntity {
  return {
    id,
    type,
    comment: '',
    settings: {},
    sealedSecret: null,
    requireTfa: false,
    groupMappings: [],
    syncIntervalMinutes: null,
    lastSyncAt: null,
    lastSyncError: null,
    createdAt: NOW,
  };
}

function device(overrides: Partial<TotpDeviceEntity> = {}): TotpDeviceEntity {
  const id = overrides.id ?? DEVICE_ID;
  return {
    id,
    userId: 'alice@local',
    name: 'phone',
    sealedSecret: box.seal(SECRET, `totp:${id}`),
    confirmed: false,
    lastStep: null,
    createdAt: NOW,
    ...overrides,
  };
}

function session(
  stage: 'setup' | 'active' = 'active',
  principal = 'alice@local',
): AuthenticatedCaller {
  const caller = testCaller([], {
    kind: 'session',
    principal,
    tokenId: null,
    tokenName: null,
    sessionId: SESSION_ID,
    display: principal,
  });
  return { ...caller, sessionStage: stage };
}

interface Mocks {
  repository?: Partial<TfaRepository>;
  users?: Partial<UsersService>;
  logins?: Partial<LoginRepository>;
  passwords?: Partial<PasswordHasherRepository>;
  realms?: Partial<RealmsService>;
  auth?: Partial<Pick<CallerCache, 'invalidate'>>;
  limits?: Partial<RateLimiterService>;
  audit?: Partial<AuditService>;
  random?: Partial<RandomRepository>;
}

function service(mocks: Mocks = {}) {
  const parts = {
    repository: strictMock<TfaRepository>('TfaRepository', mocks.repository),
    users: strictMock<UsersService>('UsersService', mocks.users),
    logins: strictMock<LoginRepository>('LoginRepository', mocks.logins),
    passwords: strictMock<PasswordHasherRepository>('PasswordHasherRepository', mocks.passwords),
    realms: strictMock<RealmsService>('RealmsService', mocks.realms),
    auth: strictMock<CallerCache>('CallerCache', mocks.auth),
    limits: strictMock<RateLimiterService>('RateLimiterService', mocks.limits),
    audit: strictMock<AuditService>('AuditService', mocks.audit),
    clock: strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
    random: strictMock<RandomRepository>('RandomRepository', mocks.random),
  };
  const config = {
    access: { loginFailuresBeforeLock: 5, lockSeconds: 900 },
  } as unknown as ManagerConfig;
  const tfa = new TfaService(
    parts.repository,
    parts.users,
    parts.passwords,
    parts.realms,
    parts.auth,
    parts.limits,
    parts.audit,
    parts.clock,
    parts.random,
    config,
    { secretKey: KEY } as ManagerIdentity,
    parts.logins,
    strictMock<UnitOfWork>('UnitOfWork', { run: (work) => work() }),
  );
  return { tfa, ...parts };
}

/** Random bytes of 0x42 (20 of them give SECRET) and counting uuids. */
function fixedRandom(): Partial<RandomRepository> {
  let n = 0;
  return {
    bytes: (length: number) => Buffer.alloc(length, 0x42),
    uuid: () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`,
  };
}

/** Distinct bytes per call, so that recovery codes differ. */
function codeRandom(): Partial<RandomRepository> {
  let n = 0;
  return {
    bytes: (length: number) => {
      n++;
      return Buffer.from(Array.from({ length }, (_, i) => (n * 5 + i * 7 + 3) % 248));
    },
    uuid: () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`,
  };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return `${error.code}: ${error.message}`;
    throw error;
  }
  return 'no error';
}

const localUser = () => ({ findUser: async () => user(), findRealm: async () => realm('local') });

describe('TfaService.overview', () => {
  it('lists the own devices, the unused recovery codes and the locks', async () => {
    const { tfa } = service({
      repository: {
        findUser: async () =>
          user({ totpLocked: true, tfaLockedUntil: new Date(NOW.getTime() + 60_000) }),
        devices: async () => [device({ confirmed: true })],
        webauthnCredentials: async () => [
          {
            id: 'c1',
            userId: 'alice@local',
            name: 'yubikey',
            credentialId: 'AQID',
            publicKey: 'pk',
            counter: 3,
            transports: ['usb'],
            createdAt: NOW,
            lastUsedAt: null,
          },
        ],
        unusedRecoveryCodes: async () => 7,
      },
    });
    await expect(tfa.overview(session())).resolves.toEqual({
      devices: [{ id: DEVICE_ID, name: 'phone', confirmed: true, createdAt: NOW.toISOString() }],
      webauthn: [{ id: 'c1', name: 'yubikey', createdAt: NOW.toISOString(), lastUsedAt: null }],
      recoveryCodesLeft: 7,
      totpLocked: true,
      lockedUntil: new Date(NOW.getTime() + 60_000).toISOString(),
    });
  });

  it('answers no lock once the second-factor lock has run out', async () => {
    const { tfa } = service({
      repository: {
        findUser: async () => user({ tfaLockedUntil: new Date(NOW.getTime() - 1) }),
        devices: async () => [],
        webauthnCredentials: async () => [],
        unusedRecoveryCodes: async () => 0,
      },
    });
    await expect(tfa.overview(session())).resolves.toMatchObject({
      lockedUntil: null,
      totpLocked: false,
    });
  });

  it('refuses an API token caller without touching the database', async () => {
    const { tfa } = service();
    expect(await codeOf(tfa.overview(testCaller([], { principal: 'alice@local' })))).toMatch(
      /^unauthenticated/,
    );
  });

  it('refuses a disabled user', async () => {
    const { tfa } = service({ repository: { findUser: async () => user({ enabled: false }) } });
    expect(await codeOf(tfa.overview(session()))).toMatch(/^unauthenticated/);
  });
});

describe('TfaService.enrol', () => {
  function enrolling(extra: Partial<TfaRepository> = {}, passwordOk = true) {
    const created: TotpDeviceEntity[] = [];
    const parts = service({
      repository: {
        ...localUser(),
        devices: async () => [],
        createDevice: async (d: TotpDeviceEntity) => {
          created.push(d);
          return true;
        },
        ...extra,
      },
      passwords: {
        verify: async (hash: string, password: string) =>
          passwordOk && hash === '$argon2id$stored' && password === 'secret pw',
      },
      users: {
        clearPasswordFailures: async () => undefined,
        recordPasswordFailure: async () => undefined,
      },
      limits: { loginAttempt: async () => undefined },
      audit: { note: () => undefined },
      random: fixedRandom(),
    });
    return { ...parts, created };
  }

  it('creates an unconfirmed device whose secret is sealed to its row, and answers the secret, URI and QR code once', async () => {
    const { tfa, created, limits, users, audit } = enrolling();
    const answer = await tfa.enrol(session(), { name: 'phone', password: 'secret pw' }, ORIGIN);
    expect(answer.secret).toBe(SECRET);
    expect(answer.uri).toBe(
      `otpauth://totp/DebVisor:alice%40local?secret=${SECRET}&issuer=DebVisor&algorithm=SHA1&digits=6&period=30`,
    );
    expect(answer.qrCode).toMatch(/^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
    expect(created).toHaveLength(1);
    const [stored] = created;
    expect(stored).toMatchObject({
      id: answer.id,
      userId: 'alice@local',
      name: 'phone',
      confirmed: false,
      lastStep: null,
      createdAt: NOW,
    });
    expect(stored.sealedSecret).not.toContain(SECRET);
    expect(box.open(stored.sealedSecret, `totp:${answer.id}`)).toBe(SECRET);
    expect(() =>
      box.open(stored.sealedSecret, 'totp:00000000-0000-4000-8000-000000000099'),
    ).toThrow();
    expect(limits.loginAttempt).toHaveBeenCalledWith('192.0.2.7');
    expect(users.clearPasswordFailures).toHaveBeenCalledWith('alice@local');
    expect(audit.note).toHaveBeenCalledWith({ device: answer.id, name: 'phone' });
  });

  it('refuses a wrong password, counts it towards the account lock, and creates nothing', async () => {
    const { tfa, created, users } = enrolling({}, false);
    expect(await codeOf(tfa.enrol(session(), { name: 'phone', password: 'guess' }, ORIGIN))).toBe(
      'forbidden: wrong password: this change needs your current password',
    );
    expect(created).toEqual([]);
    expect(users.recordPasswordFailure).toHaveBeenCalledWith(
      'alice@local',
      5,
      new Date(NOW.getTime() + 900_000),
      NOW,
    );
    expect(users.clearPasswordFailures).not.toHaveBeenCalled();
  });

  it('needs the password of a local user', async () => {
    const { tfa, created, limits } = enrolling();
    expect(await codeOf(tfa.enrol(session(), { name: 'phone' }, ORIGIN))).toMatch(
      /^validation_failed: password/,
    );
    expect(created).toEqual([]);
    expect(limits.loginAttempt).not.toHaveBeenCalled();
  });

  it('refuses a user whose account is locked after wrong passwords without checking the password', async () => {
    const { tfa, passwords } = enrolling({
      findUser: async () => user({ lockedUntil: new Date(NOW.getTime() + 1000) }),
    });
    expect(
      await codeOf(tfa.enrol(session(), { name: 'phone', password: 'secret pw' }, ORIGIN)),
    ).toMatch(/^forbidden: your account refuses passwords/);
    expect(passwords.verify).not.toHaveBeenCalled();
  });

  it('is refused by the login rate limit before the password is checked', async () => {
    const { tfa, passwords, limits } = enrolling();
    limits.loginAttempt.mockRejectedValueOnce(new DomainError(ErrorCode.RateLimited, 'too many'));
    expect(
      await codeOf(tfa.enrol(session(), { name: 'phone', password: 'secret pw' }, ORIGIN)),
    ).toBe('rate_limited: too many');
    expect(passwords.verify).not.toHaveBeenCalled();
  });

  it('refuses a name the user has already (409), before and at the insert', async () => {
    const before = enrolling({ devices: async () => [device({ name: 'phone' })] });
    expect(
      await codeOf(before.tfa.enrol(session(), { name: 'phone', password: 'secret pw' }, ORIGIN)),
    ).toMatch(/^conflict: you have a device named "phone"/);
    expect(before.created).toEqual([]);
    const racing = enrolling({ createDevice: async () => false });
    expect(
      await codeOf(racing.tfa.enrol(session(), { name: 'phone', password: 'secret pw' }, ORIGIN)),
    ).toMatch(/^conflict: you have a device named "phone"/);
  });

  it(`refuses a device beyond ${MAX_TOTP_DEVICES}`, async () => {
    const many = Array.from({ length: MAX_TOTP_DEVICES }, (_, i) =>
      device({ id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, name: `d${i}` }),
    );
    const { tfa, created } = enrolling({ devices: async () => many });
    expect(
      await codeOf(tfa.enrol(session(), { name: 'phone', password: 'secret pw' }, ORIGIN)),
    ).toMatch(/^conflict: you have 20 devices/);
    expect(created).toEqual([]);
  });

  it('checks a directory user’s password with the directory', async () => {
    const ldapUser = user({ id: 'bob@corp', realmId: 'corp', username: 'bob', passwordHash: null });
    const directory = realm('ldap');
    const verify = vi.fn(async (): Promise<{ userId: string } | 'wrong'> => ({
      userId: 'bob@corp',
    }));
    const parts = service({
      repository: {
        findUser: async () => ldapUser,
        findRealm: async () => directory,
        devices: async () => [],
        createDevice: async () => true,
      },
      realms: { verifyDirectoryPassword: verify },
      users: {
        clearPasswordFailures: async () => undefined,
        recordPasswordFailure: async () => undefined,
      },
      limits: { loginAttempt: async () => undefined },
      audit: { note: () => undefined },
      random: fixedRandom(),
    });
    await expect(
      parts.tfa.enrol(session('active', 'bob@corp'), { name: 'phone', password: 'dir pw' }, ORIGIN),
    ).resolves.toMatchObject({ secret: SECRET });
    expect(verify).toHaveBeenCalledWith(directory, 'bob', 'dir pw');

    verify.mockResolvedValueOnce('wrong');
    expect(
      await codeOf(
        parts.tfa.enrol(
          session('active', 'bob@corp'),
          { name: 'phone', password: 'guess' },
          ORIGIN,
        ),
      ),
    ).toMatch(/^forbidden: wrong password/);
    expect(parts.users.recordPasswordFailure).toHaveBeenCalledWith(
      'bob@corp',
      5,
      expect.any(Date),
      NOW,
    );
    // The directory answering for another user is not a proof.
    verify.mockResolvedValueOnce({ userId: 'eve@corp' });
    expect(
      await codeOf(
        parts.tfa.enrol(
          session('active', 'bob@corp'),
          { name: 'phone', password: 'dir pw' },
          ORIGIN,
        ),
      ),
    ).toMatch(/^forbidden: wrong password/);
    verify.mockRejectedValueOnce(new Error('connect ECONNREFUSED'));
    expect(
      await codeOf(
        parts.tfa.enrol(
          session('active', 'bob@corp'),
          { name: 'phone', password: 'dir pw' },
          ORIGIN,
        ),
      ),
    ).toBe(
      'realm_unavailable: cannot check your password with the directory of realm corp: retry later',
    );
  });

  it('lets a user without a password (OpenID Connect) enrol only shortly after logging in', async () => {
    const oidcUser = user({
      id: 'carol@sso',
      realmId: 'sso',
      username: 'carol',
      passwordHash: null,
    });
    let createdAt = new Date(NOW.getTime() - 60_000);
    const parts = service({
      repository: {
        findUser: async () => oidcUser,
        findRealm: async () => realm('openid', 'sso'),
        findSession: async (id: string) => ({ id, createdAt }) as SessionEntity,
        devices: async () => [],
        createDevice: async () => true,
        takeEnrolmentCode: async () => true,
      },
      audit: { note: () => undefined },
      random: fixedRandom(),
    });
    await expect(
      parts.tfa.enrol(
        session('setup', 'carol@sso'),
        { name: 'phone', enrolmentCode: 'from-an-admin' },
        ORIGIN,
      ),
    ).resolves.toMatchObject({ secret: SECRET });
    expect(parts.repository.findSession).toHaveBeenCalledWith(SESSION_ID);
    createdAt = new Date(NOW.getTime() - 6 * 60_000);
    expect(
      await codeOf(
        parts.tfa.enrol(
          session('setup', 'carol@sso'),
          { name: 'phone', enrolmentCode: 'from-an-admin' },
          ORIGIN,
        ),
      ),
    ).toMatch(/^forbidden: .*log in again through your identity provider/);
  });
});

describe('TfaService.confirm', () => {
  const validCode = () => totpCode(SECRET, NOW);

  function confirming(
    result: Awaited<ReturnType<TfaRepository['confirmDevice']>>,
    stored = device(),
  ) {
    return service({
      repository: {
        findUser: async () => user(),
        device: async () => stored,
        confirmDevice: async () => result,
      },
      auth: { invalidate: () => undefined },
      audit: { note: () => undefined },
      random: codeRandom(),
    });
  }

  it('confirms the first device with 10 recovery codes, stored as their hashes, and activates a setup session', async () => {
    const parts = confirming({ confirmed: true, first: true, sessionUpgraded: true });
    const answer = await parts.tfa.confirm(session('setup'), DEVICE_ID, validCode());
    expect(answer).toMatchObject({ id: DEVICE_ID, confirmed: true, stage: 'active' });
    expect(answer.recoveryCodes).toHaveLength(10);
    expect(new Set(answer.recoveryCodes).size).toBe(10);
    const [input] = parts.repository.confirmDevice.mock.calls[0];
    expect(input).toMatchObject({
      userId: 'alice@local',
      deviceId: DEVICE_ID,
      step: totpStep(NOW),
      sessionId: SESSION_ID,
      now: NOW,
    });
    expect(input.recoveryCodes.map((c) => c.codeHash)).toEqual(
      answer.recoveryCodes!.map((c) => hashRecoveryCode(normalizeRecoveryCode(c)!)),
    );
    expect(JSON.stringify(input)).not.toContain(answer.recoveryCodes![0]);
    expect(parts.auth.invalidate).toHaveBeenCalledOnce();
    expect(parts.audit.note).toHaveBeenCalledWith({
      device: DEVICE_ID,
      firstFactor: true,
      sessionActivated: true,
    });
  });

  it('answers no recovery codes for a further device, and leaves cached sessions alone', async () => {
    const parts = confirming({ confirmed: true, first: false, sessionUpgraded: false });
    await expect(parts.tfa.confirm(session('active'), DEVICE_ID, validCode())).resolves.toEqual({
      id: DEVICE_ID,
      confirmed: true,
      recoveryCodes: null,
      stage: 'active',
    });
    expect(parts.auth.invalidate).not.toHaveBeenCalled();
  });

  it('accepts the code of the previous step (clock drift) and stores that step', async () => {
    const parts = confirming({ confirmed: true, first: false, sessionUpgraded: false });
    await parts.tfa.confirm(
      session(),
      DEVICE_ID,
      totpCode(SECRET, new Date(NOW.getTime() - 30_000)),
    );
    expect(parts.repository.confirmDevice.mock.calls[0][0].step).toBe(totpStep(NOW) - 1);
  });

  it.each([
    [
      'a wrong code',
      () => String((Number(totpCode(SECRET, NOW)) + 1) % 1_000_000).padStart(6, '0'),
    ],
    ['a code two steps old', () => totpCode(SECRET, new Date(NOW.getTime() - 60_000))],
    ['a malformed code', () => '12345a'],
  ])('refuses %s without confirming anything', async (_, code) => {
    const wrong = code();
    // Skip the rare case where the shifted code is valid in a neighbouring step.
    const valid = [-30_000, 0, 30_000].map((d) => totpCode(SECRET, new Date(NOW.getTime() + d)));
    expect(valid).not.toContain(wrong);
    const parts = confirming({ confirmed: true, first: true, sessionUpgraded: false });
    expect(await codeOf(parts.tfa.confirm(session(), DEVICE_ID, wrong))).toMatch(
      /^validation_failed: code: wrong code/,
    );
    expect(parts.repository.confirmDevice).not.toHaveBeenCalled();
  });

  it('refuses the code of a step used already on this device', async () => {
    const parts = confirming(
      { confirmed: true, first: true, sessionUpgraded: false },
      device({ lastStep: totpStep(NOW) }),
    );
    expect(await codeOf(parts.tfa.confirm(session(), DEVICE_ID, validCode()))).toMatch(
      /^validation_failed/,
    );
  });

  it('refuses a device confirmed already (409) and an unknown one (404)', async () => {
    const confirmed = confirming({ confirmed: false }, device({ confirmed: true }));
    expect(await codeOf(confirmed.tfa.confirm(session(), DEVICE_ID, validCode()))).toMatch(
      /^conflict: this TOTP device is confirmed already/,
    );
    const { tfa } = service({
      repository: { findUser: async () => user(), device: async () => null },
    });
    expect(await codeOf(tfa.confirm(session(), DEVICE_ID, validCode()))).toBe(
      'not_found: TOTP device not found',
    );
  });

  it('answers 409 when a parallel request confirmed the device or used the step first', async () => {
    const parts = confirming({ confirmed: false });
    expect(await codeOf(parts.tfa.confirm(session('setup'), DEVICE_ID, validCode()))).toMatch(
      /^conflict: the device was confirmed or removed meanwhile/,
    );
    expect(parts.auth.invalidate).not.toHaveBeenCalled();
  });

  it('answers the setup stage when the session was not upgraded', async () => {
    const parts = confirming({ confirmed: true, first: false, sessionUpgraded: false });
    await expect(
      parts.tfa.confirm(session('setup'), DEVICE_ID, validCode()),
    ).resolves.toMatchObject({ stage: 'setup' });
  });
});

describe('TfaService.removeDevice and regenerateRecoveryCodes', () => {
  function withPassword(repository: Partial<TfaRepository>) {
    return service({
      repository: { ...localUser(), ...repository },
      passwords: { verify: async (_hash: string, password: string) => password === 'secret pw' },
      users: {
        clearPasswordFailures: async () => undefined,
        recordPasswordFailure: async () => undefined,
      },
      limits: { loginAttempt: async () => undefined },
      audit: { note: () => undefined },
      random: codeRandom(),
    });
  }

  it('removes a device after a fresh password check', async () => {
    const parts = withPassword({ deleteDevice: async () => true });
    await parts.tfa.removeDevice(session(), DEVICE_ID, 'secret pw', ORIGIN);
    expect(parts.repository.deleteDevice).toHaveBeenCalledWith('alice@local', DEVICE_ID);
    expect(parts.audit.note).toHaveBeenCalledWith({ device: DEVICE_ID });
  });

  it('removes nothing with a wrong or missing password, and answers 404 for a device of nobody', async () => {
    const parts = withPassword({ deleteDevice: async () => false });
    expect(await codeOf(parts.tfa.removeDevice(session(), DEVICE_ID, 'guess', ORIGIN))).toMatch(
      /^forbidden/,
    );
    expect(await codeOf(parts.tfa.removeDevice(session(), DEVICE_ID, undefined, ORIGIN))).toMatch(
      /^validation_failed/,
    );
    expect(parts.repository.deleteDevice).not.toHaveBeenCalled();
    expect(await codeOf(parts.tfa.removeDevice(session(), DEVICE_ID, 'secret pw', ORIGIN))).toBe(
      'not_found: TOTP device not found',
    );
  });

  it('replaces the recovery codes with 10 new ones, answered once and stored as hashes', async () => {
    const parts = withPassword({ replaceRecoveryCodes: async () => true });
    const { recoveryCodes } = await parts.tfa.regenerateRecoveryCodes(
      session(),
      'secret pw',
      ORIGIN,
    );
    expect(recoveryCodes).toHaveLength(10);
    expect(recoveryCodes[0]).toMatch(/^[2-9a-z]{4}(-[2-9a-z]{4}){4}$/);
    const [userId, stored, at] = parts.repository.replaceRecoveryCodes.mock.calls[0];
    expect(userId).toBe('alice@local');
    expect(at).toEqual(NOW);
    expect(stored.map((c) => c.codeHash)).toEqual(
      recoveryCodes.map((c) => hashRecoveryCode(normalizeRecoveryCode(c)!)),
    );
  });

  it('refuses recovery codes without a second factor (409)', async () => {
    const parts = withPassword({ replaceRecoveryCodes: async () => false });
    expect(await codeOf(parts.tfa.regenerateRecoveryCodes(session(), 'secret pw', ORIGIN))).toMatch(
      /^conflict: recovery codes back up a second factor/,
    );
  });

  it('makes no recovery codes with a wrong password', async () => {
    const parts = withPassword({});
    expect(await codeOf(parts.tfa.regenerateRecoveryCodes(session(), 'guess', ORIGIN))).toMatch(
      /^forbidden/,
    );
  });
});

describe('TfaService administration', () => {
  it('unlock acts on an existing user: its locks and its login throttles go, cached callers are forgotten, the user is noted', async () => {
    const parts = service({
      users: { unlockLogins: async () => 'local:bob' },
      logins: { clearThrottlesOf: async () => undefined },
      auth: { invalidate: () => undefined },
      audit: { note: () => undefined },
    });
    await parts.tfa.unlock('bob@local');
    expect(parts.users.unlockLogins).toHaveBeenCalledWith('bob@local');
    expect(parts.logins.clearThrottlesOf).toHaveBeenCalledWith('local:bob');
    expect(parts.auth.invalidate).toHaveBeenCalledOnce();
    expect(parts.audit.note).toHaveBeenCalledWith({ user: 'bob@local' });
  });

  it('removeAll acts on an existing user: its factors and its second-factor locks go, cached callers are forgotten, the user is noted', async () => {
    const parts = service({
      repository: { removeAllFactors: async () => true },
      users: { clearTfaLocks: async () => undefined },
      auth: { invalidate: () => undefined },
      audit: { note: () => undefined },
    });
    await parts.tfa.removeAll('bob@local');
    expect(parts.repository.removeAllFactors).toHaveBeenCalledWith('bob@local');
    expect(parts.users.clearTfaLocks).toHaveBeenCalledWith('bob@local');
    expect(parts.auth.invalidate).toHaveBeenCalledOnce();
    expect(parts.audit.note).toHaveBeenCalledWith({ user: 'bob@local' });
  });

  it('unlock answers 404 for an unknown user', async () => {
    const parts = service({ users: { unlockLogins: async () => null } });
    expect(await codeOf(parts.tfa.unlock('nobody@local'))).toBe(
      'not_found: user nobody@local not found',
    );
  });

  it('removeAll answers 404 for an unknown user', async () => {
    const parts = service({ repository: { removeAllFactors: async () => false } });
    expect(await codeOf(parts.tfa.removeAll('nobody@local'))).toBe(
      'not_found: user nobody@local not found',
    );
  });
});
