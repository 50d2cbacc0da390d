import { strictMock } from '@debvisor/testing/strict-mock';
import type { RpcMetrics } from '@debvisor/common';
import { describe, expect, it, vi } from 'vitest';
import type { AuditService } from '../audit/audit.service';
import type { RequestOrigin } from '../audit/request-origin';
import type { RateLimiterService } from '../authz/rate-limiter.service';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { loadConfig } from '../config/manager-config';
import type { MetricsService } from '../health/metrics.service';
import { SecretBox } from '../pki/secret-box';
import type { ManagerIdentity } from '../pki/state-dir.repository';
import type { LoginOutcome, LoginService } from './login.service';
import type { OidcLoginRepository } from './oidc-login.repository';
import { hostAuthority } from '../common/host-authority';
import { OIDC_LOGIN_SECONDS, OidcLoginService } from './oidc-login.service';
import type { RealmEntity } from '../realms/realm.entity';
import type { OidcClientRepository, OidcIdentity } from '../realms/oidc-client.repository';
import type { RealmsService } from '../realms/realms.service';
import type { SessionStage } from './session.entity';
import type { UserEntity } from '../users/user.entity';

const NOW = new Date('2026-05-01T12:00:00Z');
const KEY = Buffer.alloc(32, 7);
const BOX = new SecretBox(KEY);
const CLIENT_SECRET = 'the-client-secret';
const ISSUER = 'https://idp.example.test';
const AUTHORIZATION_URL = `${ISSUER}/auth?client_id=debvisor`;
const ORIGIN: RequestOrigin = {
  traceId: 'f'.repeat(32),
  source: '192.0.2.7',
  method: 'GET',
  path: '/api/v1/auth/oidc/callback',
};
const START = {
  authorizationUrl: AUTHORIZATION_URL,
  state: 'state-1',
  nonce: 'nonce-1',
  codeVerifier: 'verifier-1',
};
const IDENTITY: OidcIdentity = {
  subject: 'sub-1',
  username: 'alice',
  email: 'alice@example.test',
  displayName: 'Alice',
  groups: ['debvisor-operator'],
};

function realm(overrides: Partial<RealmEntity> = {}): RealmEntity {
  return {
    id: 'sso',
    type: 'openid',
    comment: '',
    settings: { issuerUrl: ISSUER, clientId: 'debvisor' },
    sealedSecret: BOX.seal(CLIENT_SECRET, 'realm:sso'),
    requireTfa: false,
    groupMappings: [{ pattern: 'debvisor-*' }],
    syncIntervalMinutes: null,
    lastSyncAt: null,
    lastSyncError: null,
    createdAt: NOW,
    ...overrides,
  };
}

function user(overrides: Partial<UserEntity> = {}): UserEntity {
  return {
    id: 'alice@sso',
    realmId: 'sso',
    username: 'alice',
    displayName: 'Alice',
    email: 'alice@example.test',
    enabled: true,
    passwordHash: null,
    passwordChangedAt: null,
    externalId: 'sub-1',
    requireTfa: false,
    failedLogins: 0,
    lockedUntil: null,
    totpLocked: false,
    tfaFailures: 0,
    tfaLockedUntil: null,
    sessionsValidAfter: null,
    createdAt: NOW,
    syncedAt: NOW,
    ...overrides,
  };
}

function outcome(stage: SessionStage): LoginOutcome {
  return {
    stage,
    user: 'alice@sso',
    sessionSecret: 's'.repeat(43),
    csrfToken: 'csrf',
    expiresAt: new Date(NOW.getTime() + 3_600_000),
    methods: stage === 'tfa' ? ['totp'] : [],
  };
}

interface Setup {
  realms?: Record<string, RealmEntity>;
  publicUrl?: string;
  identity?: () => Promise<OidcIdentity>;
  applied?: UserEntity;
  stage?: SessionStage;
}

function setup(options: Setup = {}) {
  const realms = options.realms ?? { sso: realm() };
  let now = NOW.getTime();
  const repository = strictMock<OidcLoginRepository>('repository', {
    findRealm: async (id) => realms[id] ?? null,
  });
  const oidc = strictMock<OidcClientRepository>('oidc', {
    beginLogin: async () => START,
    completeLogin: options.identity ?? (async () => IDENTITY),
  });
  const realmsService = strictMock<RealmsService>('realms', {
    applyExternalIdentity: async () => options.applied ?? user(),
  });
  const login = strictMock<LoginService>('login', {
    afterFirstFactor: async () => outcome(options.stage ?? 'active'),
  });
  const limits = strictMock<RateLimiterService>('limits', { loginAttempt: async () => undefined });
  const audit = strictMock<AuditService>('audit', { authentication: async () => undefined });
  const authAttempt = vi.fn();
  const metrics = {
    rpc: strictMock<RpcMetrics>('metrics.rpc', { authAttempt }),
  } as unknown as MetricsService;
  const clock = strictMock<ClockRepository>('clock', { now: () => new Date(now) });
  const config = loadConfig(options.publicUrl ? { DEBVISOR_PUBLIC_URL: options.publicUrl } : {});
  const service = new OidcLoginService(
    repository,
    oidc,
    realmsService,
    login,
    limits,
    audit,
    metrics,
    clock,
    config,
    { secretKey: KEY } as ManagerIdentity,
  );
  return {
    service,
    repository,
    oidc,
    realmsService,
    login,
    limits,
    audit,
    authAttempt,
    advance: (ms: number) => (now += ms),
  };
}

async function failure(promise: Promise<unknown>): Promise<DomainError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(DomainError);
  return error as DomainError;
}

describe('OidcLoginService.beginLogin', () => {
  it('sends the browser to the realm provider with the callback at the Host the browser used', async () => {
    const { service, oidc } = setup();
    const start = await service.beginLogin('sso', 'Manager.Example.test:8443');
    expect(start.authorizationUrl).toBe(AUTHORIZATION_URL);
    expect(oidc.beginLogin).toHaveBeenCalledWith(
      expect.objectContaining({
        issuerUrl: ISSUER,
        clientId: 'debvisor',
        scopes: ['openid', 'profile', 'email'],
      }),
      CLIENT_SECRET,
      'https://manager.example.test:8443/api/v1/auth/oidc/callback',
    );
  });

  it('uses the configured public URL instead of the Host header', async () => {
    const { service, oidc } = setup({ publicUrl: 'https://dcm.example.test/' });
    await service.beginLogin('sso', 'evil.example.test');
    expect(oidc.beginLogin.mock.calls[0]![2]).toBe(
      'https://dcm.example.test/api/v1/auth/oidc/callback',
    );
  });

  it('seals state, nonce, verifier, redirect URI and a 10-minute expiry in the cookie with the oidc-login context', async () => {
    const { service } = setup();
    const start = await service.beginLogin('sso', '127.0.0.1:9443');
    expect(start.expiresAt).toEqual(new Date(NOW.getTime() + OIDC_LOGIN_SECONDS * 1000));
    expect(start.cookie).not.toContain('verifier-1');
    expect(JSON.parse(BOX.open(start.cookie, 'oidc-login'))).toEqual({
      v: 1,
      realm: 'sso',
      state: 'state-1',
      nonce: 'nonce-1',
      codeVerifier: 'verifier-1',
      redirectUri: 'https://127.0.0.1:9443/api/v1/auth/oidc/callback',
      expiresAt: NOW.getTime() + 600_000,
    });
    expect(() => BOX.open(start.cookie, 'realm:sso')).toThrow();
  });

  it.each([
    ['an unknown realm', {}],
    ['an LDAP realm', { sso: realm({ type: 'ldap' }) }],
    ['the local realm', { sso: realm({ type: 'local' }) }],
  ])('answers 404 for %s without asking a provider', async (_, realms) => {
    const { service, oidc } = setup({ realms });
    const error = await failure(service.beginLogin('sso', 'manager.example.test'));
    expect(error.code).toBe(ErrorCode.NotFound);
    expect(error.message).toBe('OpenID realm sso not found');
    expect(oidc.beginLogin).not.toHaveBeenCalled();
  });

  it.each([
    undefined,
    '',
    'evil.example/path',
    'user@evil.example',
    'evil.example:0',
    'evil.example:70000',
    'a b',
    'evil.example?x',
    '[::1',
    '[not-ip]:443',
    'under_score.example',
  ])('refuses the Host header %j with 400 when no public URL is configured', async (host) => {
    const { service, oidc } = setup();
    const error = await failure(service.beginLogin('sso', host));
    expect(error.code).toBe(ErrorCode.BadRequest);
    expect(error.message).toContain('DEBVISOR_PUBLIC_URL');
    expect(oidc.beginLogin).not.toHaveBeenCalled();
  });

  it('answers realm_unavailable for a realm whose secret was sealed for another row, or that has none, or bad settings', async () => {
    const cases = [
      realm({ sealedSecret: BOX.seal(CLIENT_SECRET, 'realm:other') }),
      realm({ sealedSecret: null }),
      realm({ settings: { issuerUrl: 'http://idp.example.test', clientId: 'debvisor' } }),
    ];
    for (const broken of cases) {
      const { service, oidc } = setup({ realms: { sso: broken } });
      const error = await failure(service.beginLogin('sso', 'manager.example.test'));
      expect(error.code).toBe(ErrorCode.RealmUnavailable);
      expect(error.message).toMatch(/^the OpenID realm sso cannot be used: /);
      expect(error.message).not.toContain(CLIENT_SECRET);
      expect(oidc.beginLogin).not.toHaveBeenCalled();
    }
  });
});

describe('hostAuthority', () => {
  it.each([
    ['localhost', 'localhost'],
    ['127.0.0.1:8443', '127.0.0.1:8443'],
    ['[::1]:8443', '[::1]:8443'],
    ['[FE80::1]', '[fe80::1]'],
    ['DCM.Example.Test:0443', 'dcm.example.test:443'],
  ])('accepts %j as %j', (input, expected) => {
    expect(hostAuthority(input)).toBe(expected);
  });
});

describe('OidcLoginService.completeLogin', () => {
  async function started(s: ReturnType<typeof setup>) {
    return (await s.service.beginLogin('sso', 'manager.example.test')).cookie;
  }

  it('validates the callback against the sealed attempt, maps the identity to its user and opens a session', async () => {
    const s = setup();
    const cookie = await started(s);
    const done = await s.service.completeLogin(
      cookie,
      '/api/v1/auth/oidc/callback?code=abc&state=state-1&iss=x',
      ORIGIN,
    );
    expect(done).toEqual({ outcome: outcome('active'), redirectTo: '/' });
    expect(s.limits.loginAttempt).toHaveBeenCalledWith('192.0.2.7');
    const [settings, secret, redirectUri, callbackUrl, checks] =
      s.oidc.completeLogin.mock.calls[0]!;
    expect(settings.issuerUrl).toBe(ISSUER);
    expect(secret).toBe(CLIENT_SECRET);
    expect(redirectUri).toBe('https://manager.example.test/api/v1/auth/oidc/callback');
    expect(callbackUrl.href).toBe(
      'https://manager.example.test/api/v1/auth/oidc/callback?code=abc&state=state-1&iss=x',
    );
    expect(checks).toMatchObject({
      state: 'state-1',
      nonce: 'nonce-1',
      codeVerifier: 'verifier-1',
    });
    expect(s.realmsService.applyExternalIdentity).toHaveBeenCalledWith(
      realm({ sealedSecret: expect.any(String) as unknown as string }),
      {
        username: 'alice',
        externalId: 'sub-1',
        displayName: 'Alice',
        email: 'alice@example.test',
        groups: ['debvisor-operator'],
      },
    );
    expect(s.login.afterFirstFactor).toHaveBeenCalledWith(user(), false, 'oidc', ORIGIN);
    expect(s.audit.authentication).not.toHaveBeenCalled();
    expect(s.authAttempt).not.toHaveBeenCalled();
  });

  it('keeps the callback on the attempt redirect URI whatever host or path the request named', async () => {
    const s = setup();
    const cookie = await started(s);
    await s.service.completeLogin(
      cookie,
      '//evil.example.test/elsewhere?code=abc&state=state-1',
      ORIGIN,
    );
    expect(s.oidc.completeLogin.mock.calls[0]![3].href).toBe(
      'https://manager.example.test/api/v1/auth/oidc/callback?code=abc&state=state-1',
    );
  });

  it('passes the realm requirement of a second factor on and sends the browser to the matching page', async () => {
    for (const [stage, page] of [
      ['tfa', '/?login=tfa'],
      ['setup', '/?login=setup'],
    ] as const) {
      const s = setup({ realms: { sso: realm({ requireTfa: true }) }, stage });
      const done = await s.service.completeLogin(
        await started(s),
        '/cb?code=c&state=state-1',
        ORIGIN,
      );
      expect(done.redirectTo).toBe(page);
      expect(s.login.afterFirstFactor.mock.calls[0]![1]).toBe(true);
    }
  });

  async function refused(
    s: ReturnType<typeof setup>,
    cookie: string | undefined,
    target = '/cb?code=c&state=state-1',
  ) {
    const error = await failure(s.service.completeLogin(cookie, target, ORIGIN));
    expect(s.authAttempt).toHaveBeenCalledWith('oidc', 'failure');
    expect(s.audit.authentication).toHaveBeenCalledTimes(1);
    expect(s.login.afterFirstFactor).not.toHaveBeenCalled();
    return { error, audited: s.audit.authentication.mock.calls[0]! };
  }

  it('refuses a callback without the attempt cookie with 401 and audits it', async () => {
    const s = setup();
    const { error, audited } = await refused(s, undefined);
    expect(error.code).toBe(ErrorCode.Unauthenticated);
    expect(error.message).toContain('no OpenID login is in progress in this browser');
    expect(audited).toEqual([
      {
        outcome: 'failure',
        method: 'oidc',
        realm: undefined,
        principal: null,
        reason: error.message,
      },
      ORIGIN,
    ]);
    expect(s.oidc.completeLogin).not.toHaveBeenCalled();
  });

  it('refuses an altered cookie, one sealed for another purpose, and a forged well-formed one', async () => {
    const s0 = setup();
    const genuine = await started(s0);
    const [v, iv, tag, ciphertext] = genuine.split('.');
    const flipped = `${ciphertext!.startsWith('A') ? 'B' : 'A'}${ciphertext!.slice(1)}`;
    const forged = JSON.stringify({
      v: 1,
      realm: 'sso',
      state: 's',
      nonce: 'n',
      codeVerifier: 'c',
      redirectUri: 'https://evil/cb',
      expiresAt: NOW.getTime() + 60_000,
    });
    for (const cookie of [
      `${v}.${iv}.${tag}.${flipped}`,
      BOX.seal(forged, 'realm:sso'),
      new SecretBox(Buffer.alloc(32, 1)).seal(forged, 'oidc-login'),
      'garbage',
    ]) {
      const s = setup();
      const { error } = await refused(s, cookie);
      expect(error.code).toBe(ErrorCode.Unauthenticated);
      expect(error.message).toContain('the OpenID login cookie is invalid');
      expect(s.oidc.completeLogin).not.toHaveBeenCalled();
    }
  });

  it('refuses an attempt older than 10 minutes', async () => {
    const s = setup();
    const cookie = await started(s);
    s.advance(OIDC_LOGIN_SECONDS * 1000);
    const { error, audited } = await refused(s, cookie);
    expect(error.message).toContain('expired');
    expect(audited[0]).toMatchObject({ realm: 'sso', principal: null });
    expect(s.oidc.completeLogin).not.toHaveBeenCalled();
  });

  it('refuses an attempt whose realm was removed or changed type meanwhile', async () => {
    const s = setup();
    const cookie = await started(s);
    const other = setup({ realms: { sso: realm({ type: 'ldap' }) } });
    const { error } = await refused(other, cookie);
    expect(error.code).toBe(ErrorCode.Unauthenticated);
    expect(error.message).toContain('the realm sso no longer logs in through OpenID Connect');
  });

  it('records and passes on what the provider exchange refused (state mismatch, IdP error, unavailable)', async () => {
    for (const thrown of [
      new DomainError(
        ErrorCode.Unauthenticated,
        'OpenID login failed: the identity provider refused the login (access_denied)',
      ),
      new DomainError(
        ErrorCode.RealmUnavailable,
        `the OpenID provider ${ISSUER} is unavailable: connection refused`,
      ),
    ]) {
      const s = setup({ identity: () => Promise.reject(thrown) });
      const { error, audited } = await refused(
        s,
        await started(s),
        '/cb?error=access_denied&state=state-1',
      );
      expect(error).toBe(thrown);
      expect(audited[0]).toEqual({
        outcome: 'failure',
        method: 'oidc',
        realm: 'sso',
        principal: null,
        reason: thrown.message,
      });
      expect(s.realmsService.applyExternalIdentity).not.toHaveBeenCalled();
    }
  });

  it('refuses a disabled user after updating it from the identity', async () => {
    const s = setup({ applied: user({ enabled: false }) });
    const { error, audited } = await refused(s, await started(s));
    expect(error.code).toBe(ErrorCode.Unauthenticated);
    expect(error.message).toBe('OpenID login failed: the account is disabled');
    expect(audited[0]).toMatchObject({
      realm: 'sso',
      principal: 'alice@sso',
      reason: error.message,
    });
    expect(s.realmsService.applyExternalIdentity).toHaveBeenCalledTimes(1);
  });

  it('records an unexpected failure without its internals', async () => {
    const s = setup();
    s.realmsService.applyExternalIdentity.mockRejectedValueOnce(
      new Error('duplicate key value violates unique constraint'),
    );
    const cookie = await started(s);
    const error = await s.service
      .completeLogin(cookie, '/cb?code=c&state=state-1', ORIGIN)
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(Error);
    expect(s.audit.authentication.mock.calls[0]![0]).toMatchObject({
      principal: 'alice@sso',
      reason: 'internal error',
    });
  });

  it('does not reach the provider when the login rate limit refuses the address', async () => {
    const s = setup();
    const cookie = await started(s);
    s.limits.loginAttempt.mockRejectedValueOnce(
      new DomainError(
        ErrorCode.RateLimited,
        'too many login attempts from this address; retry later',
      ),
    );
    const error = await failure(
      s.service.completeLogin(cookie, '/cb?code=c&state=state-1', ORIGIN),
    );
    expect(error.code).toBe(ErrorCode.RateLimited);
    expect(s.oidc.completeLogin).not.toHaveBeenCalled();
  });
});
