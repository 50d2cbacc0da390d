import { strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it } from 'vitest';
import type { AuditService } from '../audit/audit.service';
import type { CallerCache } from '../authz/caller-cache';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { SecretBox } from '../pki/secret-box';
import type { ManagerIdentity } from '../pki/state-dir.repository';
import { RealmEntity } from './realm.entity';
import { LdapBindStrategy } from './ldap-bind.strategy';
import type { LdapDirectoryRepository } from './ldap-directory.repository';
import { ldapRealmSettingsSchema } from './ldap-settings';
import { createRealmSchema, updateRealmSchema } from './realms.dto';
import type { IdentityBatch, IdentityBatchResult, RealmSyncService } from './realm-sync.service';
import type { NewRealm, RealmPatch, RealmsRepository } from './realms.repository';
import { LOGIN_CHOICES_TTL_MS, RealmsService } from './realms.service';
import { UserEntity } from '../users/user.entity';
import type { AclService } from '../acl/acl.service';
import type { UnitOfWork } from '../database/unit-of-work.repository';
import type { TokensService } from '../tokens/tokens.service';
import type { UserSessions } from '../users/user-sessions';

const NOW = new Date('2026-05-01T12:00:00Z');
const KEY = Buffer.alloc(32, 7);
const box = new SecretBox(KEY);
const BIND_PASSWORD = 'bind-secret-4711';
const LDAP = {
  url: 'ldap://ldap.example.test',
  startTls: true,
  bindDn: 'cn=reader,dc=example,dc=test',
  userBaseDn: 'ou=people,dc=example,dc=test',
  groupBaseDn: 'ou=groups,dc=example,dc=test',
};
const LDAP_SETTINGS = ldapRealmSettingsSchema.parse(LDAP);
const OIDC = { issuerUrl: 'https://idp.example.test', clientId: 'debvisor' };
const ANN_DN = 'uid=ann,ou=people,dc=example,dc=test';
const NO_CHANGE: IdentityBatchResult = {
  usersCreated: 0,
  usersDisabled: 0,
  groupsCreated: 0,
  membershipsAdded: 0,
  membershipsRemoved: 0,
};

function realm(overrides: Partial<RealmEntity> = {}): RealmEntity {
  const id = overrides.id ?? 'corp';
  return Object.assign(new RealmEntity(), {
    id,
    type: 'ldap',
    comment: '',
    settings: LDAP_SETTINGS,
    sealedSecret: box.seal(BIND_PASSWORD, `realm:${id}`),
    requireTfa: false,
    groupMappings: [{ pattern: 'debvisor-tenant-*', tenant: true }, { pattern: 'debvisor-*' }],
    syncIntervalMinutes: null,
    lastSyncAt: null,
    lastSyncError: null,
    createdAt: NOW,
    ...overrides,
  } satisfies Partial<RealmEntity>);
}

function user(overrides: Partial<UserEntity> = {}): UserEntity {
  return Object.assign(new UserEntity(), {
    id: 'ann@corp',
    realmId: 'corp',
    username: 'ann',
    displayName: 'Ann',
    email: 'ann@example.test',
    enabled: true,
    externalId: ANN_DN,
    syncedAt: NOW,
    createdAt: NOW,
    ...overrides,
  } satisfies Partial<UserEntity>);
}

interface Parts {
  /** The realm's repository; `applyIdentities` is the directory sync's writes (RealmSyncService.apply). */
  repository?: Parameters<typeof strictMock<RealmsRepository>>[1] & {
    applyIdentities?: RealmSyncService['apply'];
  };
  ldap?: Parameters<typeof strictMock<LdapDirectoryRepository>>[1];
  notes?: Record<string, unknown>[];
  events?: Parameters<AuditService['systemEvent']>[0][];
  now?: () => Date;
  logs?: unknown[][];
}

function service(parts: Parts = {}) {
  const auth = strictMock<CallerCache>('CallerCache', { invalidate: () => undefined });
  const log = (...args: unknown[]) => void parts.logs?.push(args);
  const ldap = strictMock<LdapDirectoryRepository>('LdapDirectoryRepository', parts.ldap);
  const { applyIdentities, ...repository } = parts.repository ?? {};
  const realms = new RealmsService(
    strictMock<RealmsRepository>('RealmsRepository', repository),
    ldap,
    auth,
    strictMock<AuditService>('AuditService', {
      note: (details) => void parts.notes?.push(details),
      systemEvent: async (event) => void parts.events?.push(event),
    }),
    strictMock<ClockRepository>('ClockRepository', { now: parts.now ?? (() => NOW) }),
    strictMock<PinoLogger>('PinoLogger', {
      setContext: () => undefined,
      info: log,
      warn: log,
      error: log,
    }),
    { secretKey: KEY } as ManagerIdentity,
    new LdapBindStrategy(ldap),
    strictMock<TokensService>('TokensService', { removeOwnedBy: async () => undefined }),
    strictMock<AclService>('AclService', { removeGrantsOf: async () => undefined }),
    strictMock<UnitOfWork>('UnitOfWork', { run: (work) => work() }),
    strictMock<UserSessions>('UserSessions', { end: async () => undefined }),
    strictMock<RealmSyncService>(
      'RealmSyncService',
      applyIdentities ? { apply: applyIdentities } : {},
    ),
  );
  return { realms, auth };
}

async function errorOf(promise: Promise<unknown>): Promise<DomainError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  return error as DomainError;
}

const unavailable = () =>
  new DomainError(
    ErrorCode.RealmUnavailable,
    'Cannot connect to the directory server at ldap://ldap.example.test: connection refused',
  );

/** A repository create that answers the stored row. */
function storing(created: NewRealm[]) {
  return async (row: NewRealm) => {
    created.push(row);
    return Object.assign(new RealmEntity(), {
      ...row,
      groupMappings: [...row.groupMappings],
      lastSyncAt: null,
      lastSyncError: null,
    });
  };
}

describe('creating realms', () => {
  const body = (overrides: Record<string, unknown> = {}) =>
    createRealmSchema.parse({
      id: 'corp',
      type: 'ldap',
      settings: LDAP,
      secret: BIND_PASSWORD,
      groupMappings: [{ pattern: 'debvisor-*' }],
      ...overrides,
    });

  it('tests an LDAP realm’s connection with its bind password, seals the password to the realm and never answers it', async () => {
    const created: NewRealm[] = [];
    const tested: unknown[][] = [];
    const notes: Record<string, unknown>[] = [];
    const { realms, auth } = service({
      repository: { find: async () => null, create: storing(created) },
      ldap: { testConnection: async (...args) => void tested.push(args) },
      notes,
    });
    const answer = await realms.create(body());
    expect(tested).toEqual([[LDAP_SETTINGS, BIND_PASSWORD]]);
    expect(box.open(created[0].sealedSecret!, 'realm:corp')).toBe(BIND_PASSWORD);
    expect(() => box.open(created[0].sealedSecret!, 'realm:other')).toThrow();
    expect(answer).toMatchObject({
      id: 'corp',
      type: 'ldap',
      hasSecret: true,
      settings: LDAP_SETTINGS,
      connection: { ok: true },
      createdAt: NOW.toISOString(),
    });
    expect(JSON.stringify(answer)).not.toContain(BIND_PASSWORD);
    expect(JSON.stringify(notes)).not.toContain(BIND_PASSWORD);
    expect(auth.invalidate).toHaveBeenCalled();
  });

  it('refuses an LDAP realm whose directory cannot be used, storing nothing', async () => {
    const { realms } = service({
      repository: { find: async () => null },
      ldap: { testConnection: async () => Promise.reject(unavailable()) },
    });
    expect((await errorOf(realms.create(body()))).code).toBe(ErrorCode.RealmUnavailable);
  });

  it('stores an LDAP realm whose test failed when addAnyway is set, answering why', async () => {
    const created: NewRealm[] = [];
    const { realms } = service({
      repository: { find: async () => null, create: storing(created) },
      ldap: { testConnection: async () => Promise.reject(unavailable()) },
    });
    const answer = await realms.create(body({ addAnyway: true }));
    expect(created).toHaveLength(1);
    expect(answer.connection).toEqual({
      ok: false,
      error: { code: 'realm_unavailable', message: unavailable().message },
    });
  });

  it('stores an OpenID Connect realm without a directory test', async () => {
    const created: NewRealm[] = [];
    const { realms } = service({
      repository: { find: async () => null, create: storing(created) },
    });
    const answer = await realms.create(
      body({ type: 'openid', settings: OIDC, secret: 'client-secret' }),
    );
    expect(answer).toMatchObject({
      type: 'openid',
      hasSecret: true,
      syncIntervalMinutes: null,
      connection: null,
    });
    expect(box.open(created[0].sealedSecret!, 'realm:corp')).toBe('client-secret');
  });

  it('refuses an id that is taken', async () => {
    const { realms } = service({ repository: { find: async () => realm() } });
    expect((await errorOf(realms.create(body()))).code).toBe(ErrorCode.Conflict);
  });

  it('validates the settings by type, the group mappings and OpenID Connect’s secret and schedule', () => {
    const issues = (input: Record<string, unknown>) =>
      createRealmSchema.safeParse(input).error?.issues.map((i) => i.path.join('.')) ?? [];
    expect(issues({ id: 'corp', type: 'ldap', settings: OIDC })).toContain('settings.url');
    expect(issues({ id: 'corp', type: 'openid', settings: LDAP, secret: 'x' })).toContain(
      'settings.issuerUrl',
    );
    expect(issues({ id: 'sso', type: 'openid', settings: OIDC })).toEqual(['secret']);
    expect(
      issues({ id: 'sso', type: 'openid', settings: OIDC, secret: 'x', syncIntervalMinutes: 60 }),
    ).toEqual(['syncIntervalMinutes']);
    expect(issues({ id: 'corp', type: 'ldap', settings: LDAP, syncIntervalMinutes: 4 })).toEqual([
      'syncIntervalMinutes',
    ]);
    expect(
      issues({ id: 'corp', type: 'ldap', settings: LDAP, syncIntervalMinutes: 10_081 }),
    ).toEqual(['syncIntervalMinutes']);
    expect(
      issues({ id: 'corp', type: 'ldap', settings: LDAP, groupMappings: [{ pattern: 'a b' }] }),
    ).toEqual(['groupMappings.0.pattern']);
    expect(
      issues({
        id: 'corp',
        type: 'ldap',
        settings: LDAP,
        groupMappings: [{ pattern: 'x'.repeat(129) }],
      }),
    ).toEqual(['groupMappings.0.pattern']);
    expect(
      issues({
        id: 'corp',
        type: 'ldap',
        settings: LDAP,
        groupMappings: [{ pattern: '*', group: 'alice@local' }],
      }),
    ).toEqual(['groupMappings.0.group']);
    expect(issues({ id: 'corp', type: 'local', settings: {} })).toContain('type');
    expect(
      issues({
        id: 'corp',
        type: 'ldap',
        settings: LDAP,
        syncIntervalMinutes: 5,
        groupMappings: [{ pattern: 'debvisor-*', group: 'ops', tenant: true }],
      }),
    ).toEqual([]);
  });
});

describe('changing realms', () => {
  const body = (input: Record<string, unknown>) => updateRealmSchema.parse(input);

  it('lets the local realm change only its comment and requireTfa', async () => {
    const patches: RealmPatch[] = [];
    const local = realm({
      id: 'local',
      type: 'local',
      settings: {},
      sealedSecret: null,
      groupMappings: [],
    });
    const { realms, auth } = service({
      repository: {
        find: async () => local,
        update: async (_id, patch) => {
          patches.push(patch);
          return Object.assign(new RealmEntity(), local, { requireTfa: true });
        },
      },
    });
    expect((await realms.update('local', body({ requireTfa: true }))).requireTfa).toBe(true);
    expect(patches).toEqual([{ comment: undefined, requireTfa: true }]);
    expect(auth.invalidate).toHaveBeenCalled();
    for (const refused of [
      { type: 'ldap', settings: LDAP },
      { settings: {} },
      { secret: 'x' },
      { groupMappings: [] },
      { syncIntervalMinutes: 60 },
    ]) {
      expect(
        (await errorOf(realms.update('local', body(refused)))).code,
        JSON.stringify(refused),
      ).toBe(ErrorCode.ValidationFailed);
    }
    expect(patches).toHaveLength(1);
  });

  it('refuses to make another realm local', async () => {
    const { realms } = service({ repository: { find: async () => realm() } });
    expect((await errorOf(realms.update('corp', body({ type: 'local' })))).code).toBe(
      ErrorCode.ValidationFailed,
    );
  });

  it('changes a comment without testing the directory or touching the secret', async () => {
    const patches: RealmPatch[] = [];
    const { realms } = service({
      repository: {
        find: async () => realm(),
        update: async (_id, patch) => (patches.push(patch), realm({ comment: 'new' })),
      },
    });
    const answer = await realms.update('corp', body({ comment: 'new' }));
    expect(answer.connection).toBeNull();
    expect(patches[0]).not.toHaveProperty('sealedSecret');
    expect(patches[0].settings).toBeUndefined();
  });

  it('tests new settings with the stored bind password', async () => {
    const tested: unknown[][] = [];
    const { realms } = service({
      repository: { find: async () => realm(), update: async () => realm() },
      ldap: { testConnection: async (...args) => void tested.push(args) },
    });
    await realms.update(
      'corp',
      body({ settings: { ...LDAP, url: 'ldaps://ldap.example.test', startTls: false } }),
    );
    expect(tested).toEqual([
      [{ ...LDAP_SETTINGS, url: 'ldaps://ldap.example.test', startTls: false }, BIND_PASSWORD],
    ]);
  });

  it('seals a new secret, or removes it with null', async () => {
    const patches: RealmPatch[] = [];
    const tested: unknown[][] = [];
    const { realms } = service({
      repository: {
        find: async () => realm(),
        update: async (_id, patch) => (patches.push(patch), realm()),
      },
      ldap: { testConnection: async (...args) => void tested.push(args) },
    });
    await realms.update('corp', body({ secret: 'rotated' }));
    await realms.update('corp', body({ secret: null, addAnyway: true }));
    expect(box.open(patches[0].sealedSecret!, 'realm:corp')).toBe('rotated');
    expect(patches[1].sealedSecret).toBeNull();
    expect(tested.map((call) => call[1])).toEqual(['rotated', null]);
  });

  it('refuses invalid settings for the realm’s type, naming the field', async () => {
    const { realms } = service({ repository: { find: async () => realm() } });
    const error = await errorOf(
      realms.update('corp', body({ settings: { ...LDAP, url: 'http://x' } })),
    );
    expect(error.code).toBe(ErrorCode.ValidationFailed);
    expect(error.message).toMatch(/^settings\.url: /);
  });

  it('changes type only with the new type’s settings, dropping the old secret unless a new one comes', async () => {
    const patches: RealmPatch[] = [];
    const { realms } = service({
      repository: {
        find: async () => realm({ syncIntervalMinutes: 60 }),
        update: async (_id, patch) => (patches.push(patch), realm()),
      },
    });
    expect((await errorOf(realms.update('corp', body({ type: 'openid' })))).message).toMatch(
      /^settings:/,
    );
    expect(
      (await errorOf(realms.update('corp', body({ type: 'openid', settings: OIDC })))).message,
    ).toMatch(/^secret:/);
    await realms.update('corp', body({ type: 'openid', settings: OIDC, secret: 'client-secret' }));
    expect(patches[0]).toMatchObject({ type: 'openid', syncIntervalMinutes: null });
    expect(box.open(patches[0].sealedSecret!, 'realm:corp')).toBe('client-secret');
  });

  it('refuses a schedule for an OpenID Connect realm', async () => {
    const { realms } = service({
      repository: { find: async () => realm({ type: 'openid', settings: OIDC }) },
    });
    expect((await errorOf(realms.update('corp', body({ syncIntervalMinutes: 60 })))).code).toBe(
      ErrorCode.ValidationFailed,
    );
  });

  it('refuses new LDAP settings the directory rejects, unless addAnyway', async () => {
    const patches: RealmPatch[] = [];
    const { realms } = service({
      repository: {
        find: async () => realm(),
        update: async (_id, patch) => (patches.push(patch), realm()),
      },
      ldap: { testConnection: async () => Promise.reject(unavailable()) },
    });
    expect((await errorOf(realms.update('corp', body({ secret: 'wrong' })))).code).toBe(
      ErrorCode.RealmUnavailable,
    );
    expect(patches).toHaveLength(0);
    expect(
      (await realms.update('corp', body({ secret: 'wrong', addAnyway: true }))).connection,
    ).toMatchObject({ ok: false });
  });
});

describe('deleting realms', () => {
  it('refuses to delete the local realm', async () => {
    const { realms } = service();
    expect((await errorOf(realms.delete('local'))).code).toBe(ErrorCode.BadRequest);
  });

  it('deletes a realm and forgets cached callers, 404 for an unknown one', async () => {
    const { realms, auth } = service({
      repository: { usersOfRealm: async () => [], delete: async (id) => id === 'corp' },
    });
    await realms.delete('corp');
    expect(auth.invalidate).toHaveBeenCalledTimes(1);
    expect((await errorOf(realms.delete('gone'))).code).toBe(ErrorCode.NotFound);
  });
});

describe('views', () => {
  it('answer hasSecret instead of the secret', async () => {
    const { realms } = service({
      repository: { list: async () => [realm(), realm({ id: 'open', sealedSecret: null })] },
    });
    const { items } = await realms.list();
    expect(items.map((r) => [r.id, r.hasSecret])).toEqual([
      ['corp', true],
      ['open', false],
    ]);
    expect(JSON.stringify(items)).not.toContain('sealed');
    expect(JSON.stringify(items)).not.toContain(realm().sealedSecret!.split('.')[3]);
  });

  it('offer a login page each realm’s id, type and comment only, local first', async () => {
    const local = realm({
      id: 'local',
      type: 'local',
      comment: 'Local accounts',
      settings: {},
      sealedSecret: null,
    });
    const sso = realm({ id: 'sso', type: 'openid', comment: 'Company SSO', settings: OIDC });
    const { realms } = service({
      repository: { list: async () => [realm({ comment: 'Directory' }), local, sso] },
    });
    expect(await realms.loginChoices()).toEqual({
      items: [
        { id: 'local', type: 'local', comment: 'Local accounts' },
        { id: 'corp', type: 'ldap', comment: 'Directory' },
        { id: 'sso', type: 'openid', comment: 'Company SSO' },
      ],
    });
  });

  it('read the login page’s list once while nothing changes, afresh after a realm is removed here or after the TTL', async () => {
    let now = NOW;
    let reads = 0;
    const stored = [
      realm({ id: 'local', type: 'local', settings: {}, sealedSecret: null }),
      realm(),
    ];
    const { realms } = service({
      now: () => now,
      repository: {
        list: async () => (reads++, [...stored]),
        usersOfRealm: async () => [],
        delete: async () => (stored.pop(), true),
      },
    });
    await realms.loginChoices();
    await realms.loginChoices();
    expect(reads).toBe(1);
    await realms.delete('corp');
    expect((await realms.loginChoices()).items.map((r) => r.id)).toEqual(['local']);
    expect(reads).toBe(2);
    now = new Date(NOW.getTime() + LOGIN_CHOICES_TTL_MS);
    await realms.loginChoices();
    expect(reads).toBe(3);
  });

  it('do not keep a failed read of the login page’s list', async () => {
    let fail = true;
    const { realms } = service({
      repository: {
        list: async () => {
          if (fail) throw new Error('database unavailable');
          return [realm({ id: 'local', type: 'local', settings: {}, sealedSecret: null })];
        },
      },
    });
    await expect(realms.loginChoices()).rejects.toThrow('database unavailable');
    fail = false;
    expect((await realms.loginChoices()).items).toEqual([
      { id: 'local', type: 'local', comment: '' },
    ]);
  });
});

describe('directory logins', () => {
  /** A repository holding `stored` (or nobody) that records the batches it is given. */
  function withUsers(stored: UserEntity | null, batches: IdentityBatch[]) {
    return {
      findUser: async (id: string) =>
        batches.length > 0
          ? user({ id, username: id.split('@')[0] })
          : stored?.id === id
            ? stored
            : null,
      applyIdentities: async (batch: IdentityBatch) => (batches.push(batch), NO_CHANGE),
    };
  }

  it('binds with the cached DN without searching for the user, then stores its current groups', async () => {
    const batches: IdentityBatch[] = [];
    const binds: string[] = [];
    const { realms, auth } = service({
      repository: withUsers(user(), batches),
      ldap: {
        bindAsUser: async (_settings, dn, password) => (binds.push(dn), password === 'ann-pw'),
        groupsOfUser: async (settings, bindPassword, dn) => {
          expect([settings, bindPassword, dn]).toEqual([LDAP_SETTINGS, BIND_PASSWORD, ANN_DN]);
          return ['debvisor-operator', 'debvisor-tenant-acme', 'unrelated'];
        },
      },
    });
    expect(await realms.verifyDirectoryPassword(realm(), 'ann', 'ann-pw')).toEqual({
      userId: 'ann@corp',
    });
    expect(binds).toEqual([ANN_DN]);
    expect(batches).toEqual([
      {
        realmId: 'corp',
        at: NOW,
        users: [
          {
            id: 'ann@corp',
            username: 'ann',
            displayName: 'Ann',
            email: 'ann@example.test',
            externalId: ANN_DN,
            reenable: false,
            groups: [
              { id: 'debvisor-operator', tenant: false },
              { id: 'debvisor-tenant-acme', tenant: true },
            ],
          },
        ],
      },
    ]);
    expect(auth.invalidate).toHaveBeenCalled();
  });

  it('looks up a user the manager has not seen, binds as it and stores it as the directory spells it', async () => {
    const batches: IdentityBatch[] = [];
    const { realms } = service({
      repository: withUsers(null, batches),
      ldap: {
        findUser: async (_settings, bindPassword, username) => {
          expect([bindPassword, username]).toEqual([BIND_PASSWORD, 'ANN']);
          return { username: 'ann', dn: ANN_DN, displayName: 'Ann Example', email: null };
        },
        bindAsUser: async (_settings, dn, password) => dn === ANN_DN && password === 'ann-pw',
        groupsOfUser: async () => [],
      },
    });
    expect(await realms.verifyDirectoryPassword(realm(), 'ANN', 'ann-pw')).toEqual({
      userId: 'ann@corp',
    });
    expect(batches[0].users[0]).toMatchObject({
      id: 'ann@corp',
      username: 'ann',
      displayName: 'Ann Example',
      groups: [],
    });
  });

  it('answers unknown for a user the directory does not hold, without a bind', async () => {
    const { realms } = service({
      repository: { findUser: async () => null },
      ldap: { findUser: async () => null },
    });
    expect(await realms.verifyDirectoryPassword(realm(), 'nobody', 'pw')).toBe('unknown');
  });

  it('answers unknown for a name that cannot be a user name, without asking the directory', async () => {
    const { realms } = service();
    for (const name of ['*', 'a b', '-x', 'x'.repeat(201)])
      expect(await realms.verifyDirectoryPassword(realm(), name, 'pw')).toBe('unknown');
  });

  it('answers wrong after one refused bind when the directory still has the cached DN', async () => {
    const binds: string[] = [];
    const { realms } = service({
      repository: { findUser: async () => user() },
      ldap: {
        bindAsUser: async (_settings, dn) => (binds.push(dn), false),
        findUser: async () => ({ username: 'ann', dn: ANN_DN, displayName: 'Ann', email: null }),
      },
    });
    expect(await realms.verifyDirectoryPassword(realm(), 'ann', 'guess')).toBe('wrong');
    expect(binds).toEqual([ANN_DN]);
  });

  it('follows a user the directory moved to another DN', async () => {
    const moved = 'uid=ann,ou=staff,dc=example,dc=test';
    const batches: IdentityBatch[] = [];
    const { realms } = service({
      repository: withUsers(user(), batches),
      ldap: {
        bindAsUser: async (_settings, dn) => dn === moved,
        findUser: async () => ({ username: 'ann', dn: moved, displayName: 'Ann', email: null }),
        groupsOfUser: async (_settings, _password, dn) => (dn === moved ? ['debvisor-admin'] : []),
      },
    });
    expect(await realms.verifyDirectoryPassword(realm(), 'ann', 'ann-pw')).toEqual({
      userId: 'ann@corp',
    });
    expect(batches[0].users[0]).toMatchObject({
      externalId: moved,
      groups: [{ id: 'debvisor-admin', tenant: false }],
    });
  });

  it('answers unknown for a cached user the directory no longer holds', async () => {
    const { realms } = service({
      repository: { findUser: async () => user() },
      ldap: { bindAsUser: async () => false, findUser: async () => null },
    });
    expect(await realms.verifyDirectoryPassword(realm(), 'ann', 'ann-pw')).toBe('unknown');
  });

  it('lets realm_unavailable through when the directory cannot be reached', async () => {
    const { realms } = service({
      repository: { findUser: async () => null },
      ldap: { findUser: async () => Promise.reject(unavailable()) },
    });
    expect((await errorOf(realms.verifyDirectoryPassword(realm(), 'ann', 'ann-pw'))).code).toBe(
      ErrorCode.RealmUnavailable,
    );
  });
});

describe('external identities', () => {
  const identity = {
    username: 'ann',
    externalId: ANN_DN,
    displayName: 'Ann',
    email: null,
    groups: ['debvisor-operator'],
  };

  function applying(before: UserEntity | null, batches: IdentityBatch[]) {
    let calls = 0;
    return {
      findUser: async () => (calls++ === 0 ? before : user()),
      applyIdentities: async (batch: IdentityBatch) => (batches.push(batch), NO_CHANGE),
    };
  }

  it('re-enables a user the sync disabled, once the realm lists it again', async () => {
    const batches: IdentityBatch[] = [];
    const { realms } = service({
      repository: applying(user({ enabled: false, externalId: null }), batches),
    });
    await realms.applyExternalIdentity(realm(), identity);
    expect(batches[0].users[0].reenable).toBe(true);
  });

  it('keeps a user disabled that an administrator disabled, or that the directory never listed', async () => {
    for (const before of [
      user({ enabled: false }),
      user({ enabled: false, externalId: null, syncedAt: null }),
    ]) {
      const batches: IdentityBatch[] = [];
      const { realms } = service({ repository: applying(before, batches) });
      await realms.applyExternalIdentity(realm(), identity);
      expect(batches[0].users[0].reenable).toBe(false);
    }
  });

  it('never re-enables users of an OpenID Connect realm', async () => {
    const batches: IdentityBatch[] = [];
    const { realms } = service({
      repository: applying(user({ enabled: false, externalId: null }), batches),
    });
    await realms.applyExternalIdentity(realm({ type: 'openid', settings: OIDC }), identity);
    expect(batches[0].users[0].reenable).toBe(false);
  });

  it('clips display names and emails to what the database holds', async () => {
    const batches: IdentityBatch[] = [];
    const { realms } = service({ repository: applying(null, batches) });
    await realms.applyExternalIdentity(realm(), {
      ...identity,
      displayName: 'd'.repeat(300),
      email: `${'e'.repeat(300)}@x`,
    });
    expect(batches[0].users[0].displayName).toHaveLength(255);
    expect(batches[0].users[0].email).toHaveLength(255);
  });

  it('refuses a user name that cannot be a manager user name', async () => {
    const { realms } = service();
    expect(
      (await errorOf(realms.applyExternalIdentity(realm(), { ...identity, username: 'ann smith' })))
        .code,
    ).toBe(ErrorCode.Unauthenticated);
  });
});

describe('directory syncs', () => {
  const directory = {
    users: [
      { username: 'ann', dn: ANN_DN, displayName: 'Ann', email: 'ann@example.test' },
      {
        username: 'bob',
        dn: 'uid=bob,ou=people,dc=example,dc=test',
        displayName: 'Bob',
        email: null,
      },
      {
        username: 'bad name',
        dn: 'uid=bad name,ou=people,dc=example,dc=test',
        displayName: null,
        email: null,
      },
      {
        username: 'dora',
        dn: 'uid=dora,ou=people,dc=example,dc=test',
        displayName: 'Dora',
        email: null,
      },
    ],
    groups: [
      { name: 'debvisor-operator', dn: 'cn=debvisor-operator', memberUsernames: ['ann', 'bob'] },
      { name: 'debvisor-tenant-acme', dn: 'cn=debvisor-tenant-acme', memberUsernames: ['bob'] },
      { name: 'staff', dn: 'cn=staff', memberUsernames: ['ann', 'bob', 'dora'] },
    ],
  };

  it('stores every listed user with its mapped groups and disables users no longer listed', async () => {
    const batches: IdentityBatch[] = [];
    const notes: Record<string, unknown>[] = [];
    const stored = [
      user(), // unchanged
      user({
        id: 'bob@corp',
        username: 'bob',
        displayName: 'Robert',
        externalId: 'uid=bob,ou=people,dc=example,dc=test',
        email: null,
      }), // renamed
      user({
        id: 'dora@corp',
        username: 'dora',
        enabled: false,
        externalId: null,
        displayName: 'Dora',
        email: null,
      }), // disabled by a sync, back
      user({ id: 'carl@corp', username: 'carl' }), // gone
      user({ id: 'eve@corp', username: 'eve', enabled: false }), // gone, an admin had disabled her
    ];
    const { realms, auth } = service({
      repository: {
        find: async () => realm(),
        usersOfRealm: async () => stored,
        applyIdentities: async (batch) => (
          batches.push(batch),
          {
            usersCreated: 0,
            usersDisabled: 1,
            groupsCreated: 2,
            membershipsAdded: 3,
            membershipsRemoved: 4,
          }
        ),
      },
      ldap: {
        fetchDirectory: async (settings, password) => {
          expect([settings, password]).toEqual([LDAP_SETTINGS, BIND_PASSWORD]);
          return directory;
        },
      },
      notes,
    });
    const summary = await realms.sync('corp');
    expect(summary).toEqual({
      users: { created: 0, updated: 2, disabled: 1, skipped: 1 },
      groups: { created: 2 },
      memberships: { added: 3, removed: 4 },
    });
    expect(notes).toEqual([summary]);
    expect(auth.invalidate).toHaveBeenCalled();
    const [batch] = batches;
    expect(batch.sync).toEqual({ disable: ['carl@corp'], all: ['carl@corp', 'eve@corp'] });
    expect(batch.users.map((u) => [u.id, u.reenable, u.groups])).toEqual([
      ['ann@corp', false, [{ id: 'debvisor-operator', tenant: false }]],
      [
        'bob@corp',
        false,
        [
          { id: 'debvisor-operator', tenant: false },
          { id: 'debvisor-tenant-acme', tenant: true },
        ],
      ],
      ['dora@corp', true, []],
    ]);
  });

  it('stores why a sync failed and lets the error through', async () => {
    const failures: string[] = [];
    const { realms } = service({
      repository: {
        find: async () => realm(),
        recordSyncFailure: async (_id, message) => void failures.push(message),
      },
      ldap: { fetchDirectory: async () => Promise.reject(unavailable()) },
    });
    expect((await errorOf(realms.sync('corp'))).code).toBe(ErrorCode.RealmUnavailable);
    expect(failures).toEqual([unavailable().message]);
  });

  it('stores no internals of an unexpected failure', async () => {
    const failures: string[] = [];
    const { realms } = service({
      repository: {
        find: async () => realm(),
        usersOfRealm: async () => Promise.reject(new Error('connection to 10.0.0.9:5432 lost')),
        recordSyncFailure: async (_id, m) => void failures.push(m),
      },
      ldap: { fetchDirectory: async () => directory },
    });
    await expect(realms.sync('corp')).rejects.toThrow('connection to 10.0.0.9:5432 lost');
    expect(failures).toEqual(['the sync failed unexpectedly (see the manager log)']);
  });

  it('refuses to sync an OpenID Connect realm', async () => {
    const { realms } = service({
      repository: { find: async () => realm({ type: 'openid', settings: OIDC }) },
    });
    expect((await errorOf(realms.sync('corp'))).code).toBe(ErrorCode.BadRequest);
  });

  it('runs a sync asked for during a running one after it, never both at once', async () => {
    let active = 0;
    let most = 0;
    let fetches = 0;
    const { realms } = service({
      repository: {
        find: async () => realm(),
        usersOfRealm: async () => [],
        applyIdentities: async () => NO_CHANGE,
      },
      ldap: {
        fetchDirectory: async () => {
          active++;
          fetches++;
          most = Math.max(most, active);
          await new Promise((resolve) => setTimeout(resolve, 20));
          active--;
          return { users: [], groups: [] };
        },
      },
    });
    await Promise.all([realms.sync('corp'), realms.sync('corp'), realms.sync('corp')]);
    expect(fetches).toBe(3);
    expect(most).toBe(1);
  });
});

describe('scheduled syncs', () => {
  const minutes = (n: number) => n * 60_000;

  it('syncs the realms whose interval has passed and leaves the others', async () => {
    const synced: string[] = [];
    const due = realm({
      id: 'due',
      syncIntervalMinutes: 60,
      lastSyncAt: new Date(NOW.getTime() - minutes(61)),
    });
    const fresh = realm({
      id: 'fresh',
      syncIntervalMinutes: 60,
      lastSyncAt: new Date(NOW.getTime() - minutes(59)),
    });
    const never = realm({ id: 'never', syncIntervalMinutes: 5, lastSyncAt: null });
    const byId = new Map([due, fresh, never].map((r) => [r.id, r]));
    const events: Parameters<AuditService['systemEvent']>[0][] = [];
    const { realms } = service({
      events,
      repository: {
        scheduledRealms: async () => [...byId.values()],
        find: async (id) => byId.get(id)!,
        usersOfRealm: async (id) => (synced.push(id), []),
        applyIdentities: async () => NO_CHANGE,
      },
      ldap: { fetchDirectory: async () => ({ users: [], groups: [] }) },
    });
    await realms.runDueSyncs();
    expect(synced).toEqual(['due', 'never']);
    expect(events.map((e) => [e.action, e.target, e.outcome, e.details.scheduled])).toEqual([
      ['access.realm.sync', '/access/realms/due', 'success', true],
      ['access.realm.sync', '/access/realms/never', 'success', true],
    ]);
  });

  it('records a failure without throwing, and waits a full interval before trying again', async () => {
    let now = NOW.getTime();
    const failures: string[] = [];
    const logs: unknown[][] = [];
    const failing = realm({ syncIntervalMinutes: 10, lastSyncAt: null });
    const { realms } = service({
      repository: {
        scheduledRealms: async () => [failing],
        find: async () => failing,
        recordSyncFailure: async (_id, m) => void failures.push(m),
      },
      ldap: { fetchDirectory: async () => Promise.reject(unavailable()) },
      now: () => new Date(now),
      logs,
    });
    await expect(realms.runDueSyncs()).resolves.toBeUndefined();
    now += minutes(9);
    await realms.runDueSyncs();
    now += minutes(1);
    await realms.runDueSyncs();
    expect(failures).toHaveLength(2);
    expect(JSON.stringify(logs)).toContain('realm sync failed');
    expect(JSON.stringify(logs)).not.toContain(BIND_PASSWORD);
  });

  it('never throws out of the timer, even when the realms cannot be read', async () => {
    const logs: unknown[][] = [];
    const { realms } = service({
      repository: { scheduledRealms: async () => Promise.reject(new Error('database down')) },
      logs,
    });
    await expect(realms.runDueSyncs()).resolves.toBeUndefined();
    expect(JSON.stringify(logs)).toContain('cannot look for realms to sync');
  });
});
