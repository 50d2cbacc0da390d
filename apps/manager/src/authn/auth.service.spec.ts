import { describe, expect, it } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { AclEntryEntity } from '../acl/acl-entry.entity';
import type { ApiTokenEntity } from '../tokens/api-token.entity';
import type { PasswordHasherRepository } from '../users/password-hasher.repository';
import type { SessionEntity } from '../sessions/session.entity';
import type { UserEntity } from '../users/user.entity';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import type { OperatorConsoleRepository } from '../common/operator-console.repository';
import type { RandomRepository } from '../common/random.repository';
import { loadConfig } from '../config/manager-config';
import type { ManagerIdentity } from '../pki/state-dir.repository';
import { hashTokenSecret } from '../tokens/api-token';
import type { AuthRepository } from './auth.repository';
import { CallerCache } from '../authz/caller-cache';
import { AuthService } from './auth.service';
import { sha256Hex } from '../sessions/session-secrets';
import type { AclService } from '../acl/acl.service';
import type { UnitOfWork } from '../database/unit-of-work.repository';
import type { SessionsService } from '../sessions/sessions.service';
import type { TokensService } from '../tokens/tokens.service';
import type { UsersService } from '../users/users.service';

const NOW = new Date('2026-05-01T12:00:00Z');
const SECRET = 'S'.repeat(43);
const TOKEN = `dvdm_00112233aabbccdd_${SECRET}`;
const SESSION_SECRET = 'C'.repeat(43);
const CONFIG = loadConfig({});
const IDENTITY = { secretKey: Buffer.alloc(32, 9) } as ManagerIdentity;

function storedToken(overrides: Partial<ApiTokenEntity> = {}): ApiTokenEntity {
  return {
    id: '00112233aabbccdd',
    ownerType: 'user',
    principal: 'alice@local',
    name: 'ci',
    comment: '',
    limited: false,
    secretHash: hashTokenSecret(SECRET),
    createdAt: new Date('2026-01-01T00:00:00Z'),
    lastUsedAt: new Date(NOW.getTime() - 5_000),
    expiresAt: null,
    revokedAt: null,
    ...overrides,
  };
}

function user(overrides: Partial<UserEntity> = {}): UserEntity {
  return {
    id: 'alice@local',
    realmId: 'local',
    username: 'alice',
    displayName: null,
    email: null,
    enabled: true,
    passwordHash: null,
    passwordChangedAt: null,
    externalId: null,
    requireTfa: false,
    failedLogins: 0,
    lockedUntil: null,
    totpLocked: false,
    tfaFailures: 0,
    tfaLockedUntil: null,
    sessionsValidAfter: null,
    createdAt: NOW,
    syncedAt: null,
    ...overrides,
  };
}

function session(overrides: Partial<SessionEntity> = {}): SessionEntity {
  return {
    id: sha256Hex(SESSION_SECRET),
    userId: 'alice@local',
    stage: 'active',
    createdAt: new Date(NOW.getTime() - 60_000),
    lastSeenAt: new Date(NOW.getTime() - 10_000),
    expiresAt: new Date(NOW.getTime() + 3_600_000),
    sourceIp: '127.0.0.1',
    ...overrides,
  };
}

const ENTRY = (e: Partial<AclEntryEntity>): AclEntryEntity => ({
  id: 'x',
  path: '/',
  principalType: 'user',
  principal: 'alice@local',
  role: 'Audit',
  propagate: true,
  createdAt: NOW,
  ...e,
});

/** The reads every successful authentication makes, answering `entries` for the ACL. */
function reads(
  entries: AclEntryEntity[] = [],
  groups: { id: string; tenant: boolean; requireTfa: boolean }[] = [],
): Partial<AuthRepository> {
  return {
    findUser: async () => user(),
    groupsOf: async () => groups,
    aclEntriesOf: async () => entries,
    vmsOwnedBy: async (g) => new Map(g.map((id) => [id, new Set<string>()])),
    remoteGroupEntries: async (g) => new Map(g.map((id) => [id, new Map<string, string>()])),
  };
}

function service(
  repository: Partial<AuthRepository>,
  extra: {
    random?: Partial<RandomRepository>;
    console?: Partial<OperatorConsoleRepository>;
    passwords?: Partial<PasswordHasherRepository>;
    users?: Partial<UsersService>;
    tokens?: Partial<TokensService>;
    acl?: Partial<AclService>;
  } = {},
) {
  return new AuthService(
    strictMock<AuthRepository>('AuthRepository', repository),
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
    strictMock<RandomRepository>('RandomRepository', extra.random ?? {}),
    strictMock<OperatorConsoleRepository>('OperatorConsoleRepository', extra.console ?? {}),
    strictMock<PasswordHasherRepository>('PasswordHasherRepository', extra.passwords ?? {}),
    CONFIG,
    IDENTITY,
    new CallerCache(),
    strictMock<UsersService>('UsersService', extra.users ?? {}),
    strictMock<TokensService>('TokensService', extra.tokens ?? {}),
    strictMock<SessionsService>('SessionsService'),
    strictMock<AclService>('AclService', extra.acl ?? {}),
    strictMock<UnitOfWork>('UnitOfWork', { run: (work) => work() }),
  );
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return error.code;
    throw error;
  }
  return 'no error';
}

describe('AuthService.authenticate with API tokens', () => {
  it("accepts a valid token and answers its owner's grants, including those of the owner's groups", async () => {
    const auth = service({
      findToken: async () => storedToken(),
      ...reads(
        [
          ENTRY({ path: '/remotes/a', role: 'Manage' }),
          ENTRY({ principalType: 'group', principal: 'ops', path: '/remotes/b' }),
        ],
        [{ id: 'ops', tenant: false, requireTfa: false }],
      ),
    });
    const caller = await auth.authenticate({ authorization: `Bearer ${TOKEN}`, safeMethod: true });
    expect(caller).toMatchObject({
      kind: 'token',
      principal: 'alice@local',
      display: 'alice@local!ci',
      groups: ['ops'],
      limit: null,
    });
    expect(caller.grants.map((g) => [g.path, g.role])).toEqual([
      ['/remotes/a', 'Manage'],
      ['/remotes/b', 'Audit'],
    ]);
  });

  it("keeps a limited token's own entries apart as its limit", async () => {
    const auth = service({
      findToken: async () => storedToken({ limited: true }),
      ...reads([
        ENTRY({ role: 'Admin' }),
        ENTRY({ principalType: 'token', principal: '00112233aabbccdd', path: '/remotes/a' }),
      ]),
    });
    const caller = await auth.authenticate({ authorization: `Bearer ${TOKEN}`, safeMethod: true });
    expect(caller.grants.map((g) => g.path)).toEqual(['/']);
    expect(caller.limit?.map((g) => g.path)).toEqual(['/remotes/a']);
  });

  it('marks grants of tenant groups as tenant-scoped', async () => {
    const auth = service({
      findToken: async () => storedToken(),
      ...reads(
        [ENTRY({ principalType: 'group', principal: 'tenant-a', role: 'Manage' })],
        [{ id: 'tenant-a', tenant: true, requireTfa: false }],
      ),
    });
    const caller = await auth.authenticate({ authorization: `Bearer ${TOKEN}`, safeMethod: true });
    expect(caller.grants).toEqual([
      { path: '/', role: 'Manage', propagate: true, tenantGroup: 'tenant-a' },
    ]);
  });

  it('records the last use at most once a minute', async () => {
    const touched: Date[] = [];
    const auth = service(
      {
        findToken: async () => storedToken({ lastUsedAt: new Date(NOW.getTime() - 61_000) }),
        ...reads(),
      },
      { tokens: { recordUse: async (_id: string, at: Date) => void touched.push(at) } },
    );
    await auth.authenticate({ authorization: `Bearer ${TOKEN}`, safeMethod: false });
    expect(touched).toEqual([NOW]);
  });

  it.each([
    ['another scheme', `Basic ${TOKEN}`],
    ['a malformed token', 'Bearer dvdm_short'],
    ['an agent key', `Bearer dvk_00112233aabbccdd_${SECRET}`],
  ])('refuses %s with 401 without looking anything up', async (_, header) => {
    expect(
      await codeOf(service({}).authenticate({ authorization: header, safeMethod: true })),
    ).toBe('unauthenticated');
  });

  it('refuses a request without any credentials', async () => {
    expect(await codeOf(service({}).authenticate({ safeMethod: true }))).toBe('unauthenticated');
  });

  it.each([
    ['an unknown id', null],
    ['a wrong secret', storedToken({ secretHash: hashTokenSecret('T'.repeat(43)) })],
    ['a revoked token', storedToken({ revokedAt: new Date('2026-04-01T00:00:00Z') })],
    ['an expired token', storedToken({ expiresAt: NOW })],
  ])('refuses %s with 401', async (_, stored) => {
    expect(
      await codeOf(
        service({ findToken: async () => stored }).authenticate({
          authorization: `Bearer ${TOKEN}`,
          safeMethod: true,
        }),
      ),
    ).toBe('unauthenticated');
  });

  it('refuses the token of a disabled user and of a deleted group', async () => {
    const disabled = service({
      findToken: async () => storedToken(),
      findUser: async () => user({ enabled: false }),
    });
    expect(
      await codeOf(disabled.authenticate({ authorization: `Bearer ${TOKEN}`, safeMethod: true })),
    ).toBe('unauthenticated');
    const orphan = service({
      findToken: async () => storedToken({ ownerType: 'group', principal: 'ops' }),
      findGroup: async () => null,
    });
    expect(
      await codeOf(orphan.authenticate({ authorization: `Bearer ${TOKEN}`, safeMethod: true })),
    ).toBe('unauthenticated');
  });

  it('answers a cached caller until an access change invalidates it', async () => {
    let lookups = 0;
    const auth = service({
      findToken: async () => {
        lookups++;
        return storedToken();
      },
      ...reads(),
    });
    await auth.authenticate({ authorization: `Bearer ${TOKEN}`, safeMethod: true });
    await auth.authenticate({ authorization: `Bearer ${TOKEN}`, safeMethod: true });
    expect(lookups).toBe(1);
    auth.invalidate();
    await auth.authenticate({ authorization: `Bearer ${TOKEN}`, safeMethod: true });
    expect(lookups).toBe(2);
  });
});

describe('AuthService.authenticate with sessions', () => {
  it('accepts an active session for reads, and for writes only with its CSRF token', async () => {
    const auth = service({ findSession: async () => session(), ...reads() });
    const caller = await auth.authenticate({ sessionSecret: SESSION_SECRET, safeMethod: true });
    expect(caller).toMatchObject({
      kind: 'session',
      principal: 'alice@local',
      sessionStage: 'active',
      tokenId: null,
    });
    expect(
      await codeOf(auth.authenticate({ sessionSecret: SESSION_SECRET, safeMethod: false })),
    ).toBe('forbidden');
    expect(
      await codeOf(
        auth.authenticate({
          sessionSecret: SESSION_SECRET,
          safeMethod: false,
          csrfToken: 'forged',
        }),
      ),
    ).toBe('forbidden');
    const csrfToken = auth.csrfTokenFor(sha256Hex(SESSION_SECRET));
    await expect(
      auth.authenticate({ sessionSecret: SESSION_SECRET, safeMethod: false, csrfToken }),
    ).resolves.toMatchObject({ kind: 'session' });
  });

  it.each([
    ['a session past its absolute end', session({ expiresAt: NOW })],
    [
      'an idle session',
      session({ lastSeenAt: new Date(NOW.getTime() - CONFIG.access.sessionIdleSeconds * 1000) }),
    ],
    ['an unknown session', null],
  ])('refuses %s with 401', async (_, stored) => {
    expect(
      await codeOf(
        service({ findSession: async () => stored, ...reads() }).authenticate({
          sessionSecret: SESSION_SECRET,
          safeMethod: true,
        }),
      ),
    ).toBe('unauthenticated');
  });

  it('answers a session waiting for its second factor with that stage (the guard keeps it off every other route)', async () => {
    const auth = service({ findSession: async () => session({ stage: 'tfa' }), ...reads() });
    await expect(
      auth.authenticate({ sessionSecret: SESSION_SECRET, safeMethod: true }),
    ).resolves.toMatchObject({ sessionStage: 'tfa' });
  });

  it('refuses sessions of disabled users and sessions older than "log out everywhere"', async () => {
    const disabled = service({
      findSession: async () => session(),
      findUser: async () => user({ enabled: false }),
    });
    expect(
      await codeOf(disabled.authenticate({ sessionSecret: SESSION_SECRET, safeMethod: true })),
    ).toBe('unauthenticated');
    const voided = service({
      findSession: async () => session(),
      findUser: async () => user({ sessionsValidAfter: NOW }),
    });
    expect(
      await codeOf(voided.authenticate({ sessionSecret: SESSION_SECRET, safeMethod: true })),
    ).toBe('unauthenticated');
  });

  it('refuses a malformed cookie without looking anything up', async () => {
    expect(
      await codeOf(service({}).authenticate({ sessionSecret: 'x; DROP TABLE', safeMethod: true })),
    ).toBe('unauthenticated');
  });
});

describe('AuthService.bootstrap', () => {
  it('creates admin@local with a generated password and a token, Admin on /, and prints both once', async () => {
    const printed: string[] = [];
    const saved: unknown[] = [];
    const auth = service(
      { isBootstrapped: async () => false, markBootstrapped: async () => true },
      {
        users: { createUnlessPresent: async (user) => void (saved[0] = user) },
        tokens: { createBootstrapToken: async (token) => void (saved[1] = token) },
        acl: { grantUnlessPresent: async (entry) => void (saved[2] = entry) },
        random: {
          bytes: (n: number) => Buffer.alloc(n, 7),
          uuid: () => '00000000-0000-4000-8000-000000000001',
        },
        console: { print: (text: string) => void printed.push(text) },
        passwords: { hash: async (pw: string) => `argon2id(${pw})` },
      },
    );
    await auth.bootstrap();
    const secret = Buffer.alloc(32, 7).toString('base64url');
    const password = Buffer.alloc(18, 7).toString('base64url');
    expect(printed).toHaveLength(1);
    expect(printed[0]).toContain(`bootstrap admin token: dvdm_0707070707070707_${secret}`);
    expect(printed[0]).toContain(`administrator: admin@local password: ${password}`);
    expect(saved![0]).toMatchObject({
      id: 'admin@local',
      realmId: 'local',
      passwordHash: `argon2id(${password})`,
      enabled: true,
    });
    expect(saved![1]).toMatchObject({
      id: '0707070707070707',
      principal: 'admin@local',
      secretHash: hashTokenSecret(secret),
    });
    expect(JSON.stringify(saved)).not.toContain(secret);
    expect(saved![2]).toMatchObject({
      path: '/',
      principalType: 'user',
      principal: 'admin@local',
      role: 'Admin',
    });
  });

  it('does nothing once bootstrapped', async () => {
    await service({ isBootstrapped: async () => true }).bootstrap();
  });
});
