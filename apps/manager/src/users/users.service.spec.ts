import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { AuditService } from '../audit/audit.service';
import type { AclService } from '../acl/acl.service';
import type { CallerCache } from '../authz/caller-cache';
import type { RateLimiterService } from '../authz/rate-limiter.service';
import { testCaller } from '../../test/test-caller';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { ManagerConfig } from '../config/manager-config';
import type { UnitOfWork } from '../database/unit-of-work.repository';
import type { TokensService } from '../tokens/tokens.service';
import type { PasswordHasherRepository } from './password-hasher.repository';
import { PasswordPolicy } from './password-policy';
import type { RealmEntity } from '../realms/realm.entity';
import type { EndSessions, UserSessions } from './user-sessions';
import type { UserEntity } from './user.entity';
import { createUserSchema } from './users.dto';
import type { UsersRepository } from './users.repository';
import { UsersService } from './users.service';

const NOW = new Date('2026-05-01T12:00:00Z');
const STRONG = 'correct-Horse-7';
const LOCAL: RealmEntity = realm('local', 'local');
const CORP: RealmEntity = realm('corp', 'ldap');

function realm(id: string, type: RealmEntity['type']): RealmEntity {
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

function user(id: string, extra: Partial<UserEntity> = {}): UserEntity {
  const at = id.lastIndexOf('@');
  return {
    id,
    realmId: id.slice(at + 1),
    username: id.slice(0, at),
    displayName: null,
    email: null,
    enabled: true,
    passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA',
    passwordChangedAt: NOW,
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
    ...extra,
  };
}

const ADMIN = testCaller([{ path: '/', role: 'Admin' }], {
  principal: 'admin@local',
  display: 'admin@local!bootstrap',
});
const SESSION = testCaller([], {
  kind: 'session',
  principal: 'alice@local',
  tokenId: null,
  tokenName: null,
  sessionId: 'session-1',
  display: 'alice@local',
});

interface Parts {
  repository?: Parameters<typeof strictMock<UsersRepository>>[1];
  passwords?: Parameters<typeof strictMock<PasswordHasherRepository>>[1];
  limits?: Parameters<typeof strictMock<RateLimiterService>>[1];
}

function setup(parts: Parts = {}) {
  const invalidations: number[] = [];
  const notes: Record<string, unknown>[] = [];
  const ended: [string, EndSessions][] = [];
  const repository = strictMock<UsersRepository>('UsersRepository', parts.repository);
  const service = new UsersService(
    repository,
    strictMock<UserSessions>('UserSessions', { end: async (...args) => void ended.push(args) }),
    strictMock<TokensService>('TokensService', { removeOwnedBy: async () => undefined }),
    strictMock<AclService>('AclService', { removeGrantsOf: async () => undefined }),
    strictMock<UnitOfWork>('UnitOfWork', { run: (work) => work() }),
    strictMock<PasswordHasherRepository>('PasswordHasherRepository', parts.passwords),
    new PasswordPolicy({ access: { passwordMinLength: 12 } } as ManagerConfig),
    strictMock<CallerCache>('CallerCache', { invalidate: () => void invalidations.push(1) }),
    strictMock<RateLimiterService>('RateLimiterService', parts.limits),
    strictMock<AuditService>('AuditService', { note: (details) => void notes.push(details) }),
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
  );
  return { service, repository, invalidations, notes, ended };
}

async function errorOf(promise: Promise<unknown>): Promise<DomainError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
  throw new Error('expected a domain error');
}

describe('UsersService.create', () => {
  it('stores a local user with the argon2 hash of its password and answers it without the hash', async () => {
    const inserted: UserEntity[] = [];
    const { service, invalidations, notes } = setup({
      repository: {
        findRealm: async () => LOCAL,
        insertUser: async (u) => (inserted.push(u), true),
      },
      passwords: { hash: async (p) => `$argon2id$hash-of-${p}` },
    });
    const answer = await service.create(
      createUserSchema.parse({ username: 'alice', password: STRONG, email: 'alice@example.org' }),
    );
    expect(inserted[0]).toMatchObject({
      id: 'alice@local',
      realmId: 'local',
      passwordHash: `$argon2id$hash-of-${STRONG}`,
      passwordChangedAt: NOW,
      enabled: true,
      email: 'alice@example.org',
    });
    expect(answer).toMatchObject({
      id: 'alice@local',
      hasPassword: true,
      enabled: true,
      groups: [],
      passwordChangedAt: NOW.toISOString(),
    });
    expect(JSON.stringify(answer)).not.toContain('argon2');
    expect(JSON.stringify(notes)).not.toContain(STRONG);
    expect(invalidations).toHaveLength(1);
  });

  it('refuses a weak password with 400 before hashing or storing anything', async () => {
    const { service } = setup({ repository: { findRealm: async () => LOCAL } });
    const error = await errorOf(
      service.create(createUserSchema.parse({ username: 'alice', password: 'alice' })),
    );
    expect(error.code).toBe(ErrorCode.ValidationFailed);
    expect(error.message).toContain('at least 12 characters');
    expect(error.message).toContain('must not be the user name');
  });

  it('refuses a password for a user of a directory realm, and creates one without a password', async () => {
    const inserted: UserEntity[] = [];
    const { service } = setup({
      repository: {
        findRealm: async () => CORP,
        insertUser: async (u) => (inserted.push(u), true),
      },
    });
    const error = await errorOf(
      service.create(createUserSchema.parse({ username: 'bob', realm: 'corp', password: STRONG })),
    );
    expect(error.code).toBe(ErrorCode.ValidationFailed);
    expect(error.message).toMatch(/^password: .*only local users have a password/);
    expect(inserted).toEqual([]);
    const answer = await service.create(createUserSchema.parse({ username: 'bob', realm: 'corp' }));
    expect(answer).toMatchObject({ id: 'bob@corp', realm: 'corp', hasPassword: false });
    expect(inserted[0].passwordHash).toBeNull();
  });

  it('answers 404 for an unknown realm and 409 for an existing user', async () => {
    expect(
      (
        await errorOf(
          setup({ repository: { findRealm: async () => null } }).service.create(
            createUserSchema.parse({ username: 'a', realm: 'nope' }),
          ),
        )
      ).code,
    ).toBe(ErrorCode.NotFound);
    const { service, invalidations } = setup({
      repository: { findRealm: async () => LOCAL, insertUser: async () => false },
    });
    const error = await errorOf(service.create(createUserSchema.parse({ username: 'alice' })));
    expect(error.code).toBe(ErrorCode.Conflict);
    expect(error.message).toBe('user alice@local already exists');
    expect(invalidations).toEqual([]);
  });
});

describe('UsersService.update and delete', () => {
  it('disabling a user ends its sessions in the same change and forgets cached callers', async () => {
    const updates: unknown[][] = [];
    let stored = user('alice@local');
    const { service, invalidations, ended } = setup({
      repository: {
        findUser: async () => stored,
        updateUser: async (...args) => {
          updates.push(args);
          stored = { ...stored, ...args[1] };
        },
        membershipsOf: async () => [{ groupId: 'ops', userId: 'alice@local', source: 'local' }],
      },
    });
    const answer = await service.update(ADMIN, 'alice@local', { enabled: false });
    expect(updates).toEqual([['alice@local', { enabled: false }]]);
    expect(ended).toEqual([['alice@local', { all: NOW }]]);
    expect(answer).toMatchObject({ enabled: false, groups: [{ id: 'ops', source: 'local' }] });
    expect(invalidations).toHaveLength(1);
  });

  it('changes names without touching sessions', async () => {
    const updates: unknown[][] = [];
    const { service, ended } = setup({
      repository: {
        findUser: async () => user('alice@local'),
        updateUser: async (...args) => void updates.push(args),
        membershipsOf: async () => [],
      },
    });
    await service.update(ADMIN, 'alice@local', {
      displayName: 'Alice',
      email: null,
      enabled: true,
    });
    expect(updates).toEqual([
      ['alice@local', { displayName: 'Alice', email: null, enabled: true }],
    ]);
    expect(ended).toEqual([]);
  });

  it('refuses to disable or remove the caller’s own user, whether it calls with a token or a session', async () => {
    const { service } = setup({ repository: { findUser: async () => user('admin@local') } });
    const disable = await errorOf(service.update(ADMIN, 'admin@local', { enabled: false }));
    expect(disable.code).toBe(ErrorCode.Forbidden);
    expect(disable.message).toContain('your own user');
    expect((await errorOf(service.delete(ADMIN, 'admin@local'))).code).toBe(ErrorCode.Forbidden);
    const self = testCaller([], {
      kind: 'session',
      principal: 'admin@local',
      sessionId: 's',
      tokenId: null,
    });
    expect((await errorOf(service.delete(self, 'admin@local'))).code).toBe(ErrorCode.Forbidden);
  });

  it('removes another user, and answers 404 for an unknown one', async () => {
    const deleted: string[] = [];
    const { service, invalidations } = setup({
      repository: { deleteUser: async (id) => (deleted.push(id), id === 'bob@local') },
    });
    await service.delete(ADMIN, 'bob@local');
    expect(deleted).toEqual(['bob@local']);
    expect(invalidations).toHaveLength(1);
    expect((await errorOf(service.delete(ADMIN, 'ghost@local'))).code).toBe(ErrorCode.NotFound);
  });
});

describe('UsersService passwords', () => {
  it('an administrator’s reset hashes the new password and ends every session of the user', async () => {
    const calls: [string, string, Date][] = [];
    const { service, invalidations, ended } = setup({
      repository: {
        findUser: async () => user('alice@local'),
        findRealm: async () => LOCAL,
        setPassword: async (...args) => void calls.push(args),
      },
      passwords: { hash: async (p) => `h(${p})` },
    });
    await service.resetPassword('alice@local', STRONG);
    expect(calls).toEqual([['alice@local', `h(${STRONG})`, NOW]]);
    expect(ended).toEqual([['alice@local', { all: NOW }]]);
    expect(invalidations).toHaveLength(1);
  });

  it('refuses to set the password of a directory user', async () => {
    const { service } = setup({
      repository: { findUser: async () => user('bob@corp'), findRealm: async () => CORP },
    });
    const error = await errorOf(service.resetPassword('bob@corp', STRONG));
    expect(error.code).toBe(ErrorCode.ValidationFailed);
    expect(error.message).toContain('managed by the directory');
  });

  it('a user’s own change needs the right current password, counts the attempt, and ends only the other sessions', async () => {
    const attempts: string[] = [];
    const calls: [string, string, Date][] = [];
    const { service, ended } = setup({
      repository: {
        findUser: async () => user('alice@local'),
        findRealm: async () => LOCAL,
        setPassword: async (...args) => void calls.push(args),
      },
      passwords: {
        verify: async (_hash, password) => password === 'old-Password-1',
        hash: async (p) => `h(${p})`,
      },
      limits: { loginAttempt: async (key) => void attempts.push(key) },
    });
    const wrong = await errorOf(service.changeOwnPassword(SESSION, 'guess-Password-1', STRONG));
    expect(wrong.code).toBe(ErrorCode.Forbidden);
    expect(wrong.message).toBe('currentPassword: the current password is wrong');
    expect(calls).toEqual([]);
    const weak = await errorOf(service.changeOwnPassword(SESSION, 'old-Password-1', 'weak'));
    expect(weak.code).toBe(ErrorCode.ValidationFailed);
    expect(weak.message).toMatch(/^newPassword: /);
    const same = await errorOf(
      service.changeOwnPassword(SESSION, 'old-Password-1', 'old-Password-1'),
    );
    expect(same.message).toContain('must differ');
    await service.changeOwnPassword(SESSION, 'old-Password-1', STRONG);
    expect(calls).toEqual([['alice@local', `h(${STRONG})`, NOW]]);
    expect(ended).toEqual([['alice@local', { except: 'session-1' }]]);
    expect(attempts).toEqual(Array(4).fill('password-change:alice@local'));
  });

  it('stops at the rate limit before checking the password', async () => {
    const { service } = setup({
      limits: {
        loginAttempt: async () => {
          throw new DomainError(ErrorCode.RateLimited, 'too many login attempts');
        },
      },
    });
    expect((await errorOf(service.changeOwnPassword(SESSION, 'x', STRONG))).code).toBe(
      ErrorCode.RateLimited,
    );
  });

  it('refuses the own change without a session', async () => {
    const { service } = setup();
    expect((await errorOf(service.changeOwnPassword(ADMIN, 'x', STRONG))).code).toBe(
      ErrorCode.Forbidden,
    );
  });
});

describe('UsersService.list', () => {
  it('answers the users with their memberships from one query, never a password hash', async () => {
    const asked: string[][] = [];
    const { service } = setup({
      repository: {
        listUsers: async (realmId) =>
          realmId === 'local'
            ? [user('alice@local'), user('bob@local', { passwordHash: null })]
            : [],
        membershipsOf: async (ids) => {
          asked.push([...ids]);
          return [
            { groupId: 'ops', userId: 'bob@local', source: 'corp' },
            { groupId: 'dev', userId: 'alice@local', source: 'local' },
          ];
        },
      },
    });
    const answer = await service.list('local');
    expect(asked).toEqual([['alice@local', 'bob@local']]);
    expect(answer.items.map((u) => [u.id, u.hasPassword, u.groups])).toEqual([
      ['alice@local', true, [{ id: 'dev', source: 'local' }]],
      ['bob@local', false, [{ id: 'ops', source: 'corp' }]],
    ]);
    expect(JSON.stringify(answer)).not.toContain('argon2');
  });
});
