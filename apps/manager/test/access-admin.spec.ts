import { createCa } from '@debvisor/pki';
import { cleanupTempDirs, freePort } from '@debvisor/testing';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startTestDatabases,
  startTestManager,
  type ApiAnswer,
  type RequestOptions,
  type TestDatabases,
  type TestManager,
} from './manager-harness';
import { registeredRoutes, samplePath } from './routes';

const KEY_A = `dvk_0123456789abcdef_${'A'.repeat(43)}`;
const KEY_B = `dvk_fedcba9876543210_${'B'.repeat(43)}`;
const VM = '3f1d2c4b-5a6e-4f70-8a9b-0c1d2e3f4a5b';
const STRONG = 'correct-Horse-7-battery';

let dbs: TestDatabases;
let caPem: string;
let m: TestManager;

beforeAll(async () => {
  [dbs, caPem] = await Promise.all([
    startTestDatabases(),
    createCa('test cluster CA').then((ca) => ca.certPem),
  ]);
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    env: { DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE: '1000' },
  });
  for (const id of ['x', 'y'])
    expect((await m.api('POST', '/api/v1/remotes', await unreachableRemote(id))).status).toBe(201);
});
afterAll(async () => {
  await m?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

async function unreachableRemote(id: string) {
  return {
    id,
    endpoints: [`127.0.0.1:${await freePort()}`],
    caCertPem: caPem,
    credentials: [
      { name: 'admin', key: KEY_A },
      { name: 'reader', key: KEY_B },
    ],
    addAnyway: true,
  };
}

async function query<T = Record<string, unknown>>(
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new Client({ connectionString: m.databaseUrl });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

interface Session {
  readonly options: RequestOptions;
  api(method: string, path: string, body?: unknown): Promise<ApiAnswer>;
}

/** Logs in with a password; the session's requests carry its cookie and CSRF token. */
async function login(username: string, password: string): Promise<Session> {
  const answer = await m.api('POST', '/api/v1/auth/login', { username, password }, { token: null });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  expect(answer.body.stage).toBe('active');
  const setCookie = ([] as string[]).concat(answer.headers['set-cookie'] ?? []);
  const cookie = setCookie
    .map((c) => c.split(';')[0])
    .find((c) => c.startsWith('debvisor_session='));
  expect(cookie).toBeDefined();
  const options: RequestOptions = {
    token: null,
    headers: { cookie: cookie!, 'x-csrf-token': answer.body.csrfToken },
  };
  return { options, api: (method, path, body) => m.api(method, path, body, options) };
}

async function createUser(
  username: string,
  password = STRONG,
  extra: Record<string, unknown> = {},
) {
  const answer = await m.api('POST', '/api/v1/access/users', {
    username,
    realm: 'local',
    password,
    ...extra,
  });
  expect(answer.status, JSON.stringify(answer.body)).toBe(201);
  return answer.body;
}

async function grant(path: string, principalType: string, principal: string, role: string) {
  const answer = await m.api('PUT', '/api/v1/access/acl', { path, principalType, principal, role });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
}

const enc = encodeURIComponent;

describe('users and passwords', () => {
  it('creates a local user with a password who can then log in; no answer holds a password hash', async () => {
    const created = await createUser('alice', STRONG, {
      displayName: 'Alice',
      email: 'alice@example.org',
    });
    expect(created).toMatchObject({
      id: 'alice@local',
      realm: 'local',
      username: 'alice',
      enabled: true,
      hasPassword: true,
      displayName: 'Alice',
      groups: [],
    });
    const [row] = await query<{ password_hash: string }>(
      'SELECT password_hash FROM users WHERE id = $1',
      ['alice@local'],
    );
    expect(row.password_hash).toMatch(/^\$argon2id\$/);
    const session = await login('alice', STRONG);
    expect((await session.api('GET', '/api/v1/auth/session')).body.user).toBe('alice@local');
    const list = await m.api('GET', '/api/v1/access/users');
    expect(list.status).toBe(200);
    expect(list.body.items.map((u: { id: string }) => u.id)).toEqual([
      'admin@local',
      'alice@local',
    ]);
    const answers = JSON.stringify([
      created,
      list.body,
      (await m.api('GET', `/api/v1/access/users/${enc('alice@local')}`)).body,
    ]);
    expect(answers).not.toContain('$argon2');
    expect(answers).not.toMatch(/hash/i);
  });

  it('refuses weak passwords with 400 validation_failed saying what is wrong, and stores no user', async () => {
    const cases: [string, string, RegExp][] = [
      ['bob', 'Sh0rt!', /at least 12 characters/],
      ['bob', 'aaaaaaaaaaaaaaaaaaaa', /at least 5 different characters/],
      [
        'bob',
        'onlylowercase',
        /mix at least two of lower-case letters, upper-case letters, digits and other characters/,
      ],
      ['bobby-tables1', 'Bobby-Tables1', /must not be the user name/],
    ];
    for (const [username, password, message] of cases) {
      const answer = await m.api('POST', '/api/v1/access/users', {
        username,
        realm: 'local',
        password,
      });
      expect(answer.status, password).toBe(400);
      expect(answer.body.error.code).toBe('validation_failed');
      expect(answer.body.error.message).toMatch(message);
      expect(answer.body.error.message).toMatch(/^password: /);
    }
    expect(
      await query('SELECT id FROM users WHERE id IN ($1, $2)', [
        'bob@local',
        'bobby-tables1@local',
      ]),
    ).toEqual([]);
  });

  it('answers 409 for an existing user and 404 for an unknown realm', async () => {
    await createUser('dup');
    expect(
      (
        await m.api('POST', '/api/v1/access/users', {
          username: 'dup',
          realm: 'local',
          password: STRONG,
        })
      ).status,
    ).toBe(409);
    const unknown = await m.api('POST', '/api/v1/access/users', {
      username: 'eve',
      realm: 'nowhere',
    });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.message).toContain('realm nowhere');
  });

  it('lets a user change their own password: the current one must be right, and their other sessions end', async () => {
    await createUser('carol');
    const first = await login('carol', STRONG);
    const second = await login('carol', STRONG);
    const wrong = await first.api('POST', '/api/v1/access/password', {
      currentPassword: 'not-my-Password-1',
      newPassword: 'a-New-passw0rd-here',
    });
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.message).toContain('current password is wrong');
    const weak = await first.api('POST', '/api/v1/access/password', {
      currentPassword: STRONG,
      newPassword: 'weak',
    });
    expect(weak.status).toBe(400);
    expect(weak.body.error.message).toMatch(/^newPassword: /);
    expect(
      (
        await first.api('POST', '/api/v1/access/password', {
          currentPassword: STRONG,
          newPassword: 'a-New-passw0rd-here',
        })
      ).status,
    ).toBe(204);
    expect((await first.api('GET', '/api/v1/auth/session')).status).toBe(200);
    expect((await second.api('GET', '/api/v1/auth/session')).status).toBe(401);
    expect(
      (
        await m.api(
          'POST',
          '/api/v1/auth/login',
          { username: 'carol', password: STRONG },
          { token: null },
        )
      ).status,
    ).toBe(401);
    await login('carol', 'a-New-passw0rd-here');
  });

  it('refuses the self-service password change to an API token, even the admin’s', async () => {
    const answer = await m.api('POST', '/api/v1/access/password', {
      currentPassword: STRONG,
      newPassword: 'a-New-passw0rd-here',
    });
    expect(answer.status).toBe(403);
    expect(answer.body.error.message).toContain('login session');
  });

  it('lets an administrator reset a password, which ends every session of the user', async () => {
    await createUser('dan');
    const session = await login('dan', STRONG);
    const weak = await m.api('POST', `/api/v1/access/users/${enc('dan@local')}/password`, {
      password: 'dan',
    });
    expect(weak.status).toBe(400);
    expect(
      (
        await m.api('POST', `/api/v1/access/users/${enc('dan@local')}/password`, {
          password: 'Reset-by-the-admin-9',
        })
      ).status,
    ).toBe(204);
    expect((await session.api('GET', '/api/v1/auth/session')).status).toBe(401);
    await login('dan', 'Reset-by-the-admin-9');
  });

  it('disabling a user ends its sessions and makes its tokens answer 401', async () => {
    await createUser('erin');
    await grant('/', 'user', 'erin@local', 'Audit');
    const session = await login('erin', STRONG);
    const created = await session.api('POST', '/api/v1/access/tokens/mine', { name: 'ci' });
    expect(created.status).toBe(201);
    const token = created.body.token as string;
    expect((await m.api('GET', '/api/v1/remotes', undefined, { token })).status).toBe(200);
    expect((await session.api('GET', '/api/v1/remotes')).status).toBe(200);

    const disabled = await m.api('PUT', `/api/v1/access/users/${enc('erin@local')}`, {
      enabled: false,
    });
    expect(disabled.status).toBe(200);
    expect(disabled.body.enabled).toBe(false);
    expect((await session.api('GET', '/api/v1/remotes')).status).toBe(401);
    expect((await m.api('GET', '/api/v1/remotes', undefined, { token })).status).toBe(401);
    const [user] = await query<{ sessions_valid_after: Date | null }>(
      'SELECT sessions_valid_after FROM users WHERE id = $1',
      ['erin@local'],
    );
    expect(user.sessions_valid_after).not.toBeNull();
    expect(await query('SELECT id FROM sessions WHERE user_id = $1', ['erin@local'])).toEqual([]);
    expect(
      (
        await m.api(
          'POST',
          '/api/v1/auth/login',
          { username: 'erin', password: STRONG },
          { token: null },
        )
      ).status,
    ).toBe(401);
  });

  it('refuses to let the administrator disable or remove their own user', async () => {
    const disable = await m.api('PUT', `/api/v1/access/users/${enc('admin@local')}`, {
      enabled: false,
    });
    expect(disable.status).toBe(403);
    expect(disable.body.error.message).toContain('your own user');
    expect((await m.api('DELETE', `/api/v1/access/users/${enc('admin@local')}`)).status).toBe(403);
    const admin = await m.api('GET', `/api/v1/access/users/${enc('admin@local')}`);
    expect(admin.body.enabled).toBe(true);
    expect((await m.api('GET', '/api/v1/remotes')).status).toBe(200);
  });

  it('removes a user with its ACL entries and tokens', async () => {
    await createUser('frank');
    await grant('/remotes/x', 'user', 'frank@local', 'Manage');
    const token = await m.api('POST', '/api/v1/access/tokens', {
      ownerType: 'user',
      owner: 'frank@local',
      name: 'ci',
    });
    expect(token.status).toBe(201);
    expect((await m.api('DELETE', `/api/v1/access/users/${enc('frank@local')}`)).status).toBe(204);
    expect((await m.api('GET', `/api/v1/access/users/${enc('frank@local')}`)).status).toBe(404);
    expect(
      (await m.api('GET', '/api/v1/remotes', undefined, { token: token.body.token })).status,
    ).toBe(401);
    expect(await query(`SELECT id FROM acl_entries WHERE principal = 'frank@local'`)).toEqual([]);
    expect(await query(`SELECT id FROM api_tokens WHERE principal = 'frank@local'`)).toEqual([]);
  });
});

describe('groups, memberships and the ACL', () => {
  it('a group’s Audit grant on /remotes/x lets its members see remote x only, and not change anything', async () => {
    await createUser('gina');
    const session = await login('gina', STRONG);
    expect(
      (await m.api('POST', '/api/v1/access/groups', { id: 'viewers', comment: 'read only' }))
        .status,
    ).toBe(201);
    await grant('/remotes/x', 'group', 'viewers', 'Audit');
    expect((await session.api('GET', '/api/v1/remotes')).status).toBe(403);

    const members = await m.api('PUT', '/api/v1/access/groups/viewers/members', {
      users: ['gina@local'],
    });
    expect(members.status).toBe(200);
    expect(members.body.members).toEqual([{ user: 'gina@local', source: 'local' }]);
    const visible = await session.api('GET', '/api/v1/remotes');
    expect(visible.status).toBe(200);
    expect(visible.body.items.map((r: { id: string }) => r.id)).toEqual(['x']);
    expect((await session.api('GET', '/api/v1/remotes/x')).status).toBe(200);
    expect((await session.api('GET', '/api/v1/remotes/y')).status).toBe(403);
    expect(
      (await session.api('POST', '/api/v1/remotes', await unreachableRemote('z'))).status,
    ).toBe(403);
    expect(
      (await session.api('PATCH', '/api/v1/remotes/x', { description: 'mine now' })).status,
    ).toBe(403);
    expect((await session.api('POST', `/api/v1/remotes/x/vms/${VM}/start`)).status).toBe(403);

    const list = await m.api('GET', '/api/v1/access/groups');
    expect(list.body.items).toContainEqual(
      expect.objectContaining({ id: 'viewers', memberCount: 1, tenant: false }),
    );
    const user = await m.api('GET', `/api/v1/access/users/${enc('gina@local')}`);
    expect(user.body.groups).toEqual([{ id: 'viewers', source: 'local' }]);
  });

  it('deleting a group removes what its grants allowed, and a new group of the same name inherits nothing', async () => {
    await createUser('hank');
    const session = await login('hank', STRONG);
    expect((await m.api('POST', '/api/v1/access/groups', { id: 'ops' })).status).toBe(201);
    await grant('/remotes/y', 'group', 'ops', 'Audit');
    await m.api('PUT', '/api/v1/access/groups/ops/members', { users: ['hank@local'] });
    expect((await session.api('GET', '/api/v1/remotes/y')).status).toBe(200);

    expect((await m.api('DELETE', '/api/v1/access/groups/ops')).status).toBe(204);
    expect((await session.api('GET', '/api/v1/remotes/y')).status).toBe(403);
    expect((await m.api('GET', '/api/v1/access/acl?principal=ops')).body.items).toEqual([]);
    expect((await m.api('GET', '/api/v1/access/groups/ops')).status).toBe(404);

    expect((await m.api('POST', '/api/v1/access/groups', { id: 'ops' })).status).toBe(201);
    await m.api('PUT', '/api/v1/access/groups/ops/members', { users: ['hank@local'] });
    expect((await session.api('GET', '/api/v1/remotes/y')).status).toBe(403);
  });

  it('replacing members keeps the memberships a realm manages and shows their source', async () => {
    await createUser('ivy');
    await createUser('jack');
    expect((await m.api('POST', '/api/v1/access/groups', { id: 'mixed' })).status).toBe(201);
    await query(
      `INSERT INTO group_members (group_id, user_id, source) VALUES ('mixed', 'ivy@local', 'corp')`,
    );
    const replaced = await m.api('PUT', '/api/v1/access/groups/mixed/members', {
      users: ['jack@local'],
    });
    expect(replaced.body.members).toEqual([
      { user: 'ivy@local', source: 'corp' },
      { user: 'jack@local', source: 'local' },
    ]);
    const emptied = await m.api('PUT', '/api/v1/access/groups/mixed/members', { users: [] });
    expect(emptied.body.members).toEqual([{ user: 'ivy@local', source: 'corp' }]);
    const unknown = await m.api('PUT', '/api/v1/access/groups/mixed/members', {
      users: ['nobody@local'],
    });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.message).toContain('nobody@local');
  });

  it('validates ACL paths strictly and names the accepted forms', async () => {
    for (const path of [
      '/foo',
      '/remotes/../x',
      '/remotes/x/',
      '//remotes',
      '/remotes/X',
      '/remotes/x/vms/not-a-uuid',
      '/remotes/x/nodes',
      '/groups/a/b',
      'remotes',
      '/system/x',
      '/remotes/%2e%2e',
    ]) {
      const answer = await m.api('PUT', '/api/v1/access/acl', {
        path,
        principalType: 'user',
        principal: 'admin@local',
        role: 'Audit',
      });
      expect(answer.status, path).toBe(400);
      expect(answer.body.error.code).toBe('validation_failed');
      expect(answer.body.error.message).toMatch(
        /path: .*(not an ACL path|not a valid remote id|not a VM uuid)/,
      );
    }
    await createUser('kim');
    for (const path of [
      '/',
      '/remotes',
      '/remotes/x',
      '/remotes/x/vms',
      `/remotes/x/vms/${VM.toUpperCase()}`,
      '/groups',
      '/groups/rg',
      '/access',
      '/system',
    ]) {
      const answer = await m.api('PUT', '/api/v1/access/acl', {
        path,
        principalType: 'user',
        principal: 'kim@local',
        role: 'Audit',
        propagate: false,
      });
      expect(answer.status, path).toBe(200);
    }
    const entries = await m.api('GET', `/api/v1/access/acl?principal=${enc('kim@local')}`);
    expect(entries.body.items.map((e: { path: string }) => e.path)).toContain(
      `/remotes/x/vms/${VM}`,
    );
    expect(entries.body.items).toHaveLength(9);
  });

  it('upserts on path and principal, needs an existing principal, and deletes by body or query', async () => {
    await createUser('lea');
    await grant('/remotes/x', 'user', 'lea@local', 'Audit');
    await grant('/remotes/x', 'user', 'lea@local', 'Manage');
    const entries = await m.api(
      'GET',
      `/api/v1/access/acl?path=${enc('/remotes/x')}&principal=${enc('lea@local')}`,
    );
    expect(entries.body.items).toEqual([
      expect.objectContaining({
        path: '/remotes/x',
        principalType: 'user',
        principal: 'lea@local',
        role: 'Manage',
        propagate: true,
      }),
    ]);

    const missing = await m.api('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'group',
      principal: 'no-such-group',
      role: 'Admin',
    });
    expect(missing.status).toBe(404);
    expect(
      (
        await m.api('PUT', '/api/v1/access/acl', {
          path: '/',
          principalType: 'token',
          principal: '0123456789abcdef',
          role: 'Admin',
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await m.api('PUT', '/api/v1/access/acl', {
          path: '/',
          principalType: 'token',
          principal: 'lea@local',
          role: 'Admin',
        })
      ).status,
    ).toBe(400);

    expect(
      (
        await m.api('DELETE', '/api/v1/access/acl', {
          path: '/remotes/x',
          principalType: 'user',
          principal: 'lea@local',
        })
      ).status,
    ).toBe(204);
    expect(
      (
        await m.api('DELETE', '/api/v1/access/acl', {
          path: '/remotes/x',
          principalType: 'user',
          principal: 'lea@local',
        })
      ).status,
    ).toBe(404);
    await grant('/remotes/y', 'user', 'lea@local', 'Audit');
    expect(
      (
        await m.api(
          'DELETE',
          `/api/v1/access/acl?path=${enc('/remotes/y')}&principalType=user&principal=${enc('lea@local')}`,
        )
      ).status,
    ).toBe(204);
    expect(
      (await m.api('GET', `/api/v1/access/acl?principal=${enc('lea@local')}`)).body.items,
    ).toEqual([]);
    const incomplete = await m.api('DELETE', '/api/v1/access/acl', { path: '/remotes/y' });
    expect(incomplete.status).toBe(400);
  });
});

describe('VM ownership and remote groups', () => {
  it('gives VMs to tenant groups only', async () => {
    expect((await m.api('POST', '/api/v1/access/groups', { id: 'plain' })).status).toBe(201);
    expect(
      (await m.api('POST', '/api/v1/access/groups', { id: 'tenant-acme', tenant: true })).status,
    ).toBe(201);
    const notTenant = await m.api('PUT', `/api/v1/access/vm-owners/${VM}`, {
      tenantGroup: 'plain',
    });
    expect(notTenant.status).toBe(400);
    expect(notTenant.body.error.message).toContain('not a tenant group');
    expect(
      (await m.api('PUT', `/api/v1/access/vm-owners/${VM}`, { tenantGroup: 'nobody' })).status,
    ).toBe(404);
    const set = await m.api('PUT', `/api/v1/access/vm-owners/${VM.toUpperCase()}`, {
      tenantGroup: 'tenant-acme',
    });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ vm: VM, tenantGroup: 'tenant-acme' });
    expect((await m.api('GET', '/api/v1/access/vm-owners?group=tenant-acme')).body.items).toEqual([
      expect.objectContaining({ vm: VM }),
    ]);
    const untenant = await m.api('PUT', '/api/v1/access/groups/tenant-acme', { tenant: false });
    expect(untenant.status).toBe(409);
    expect((await m.api('DELETE', `/api/v1/access/vm-owners/${VM}`)).status).toBe(204);
    expect((await m.api('DELETE', `/api/v1/access/vm-owners/${VM}`)).status).toBe(404);
    expect(
      (await m.api('PUT', '/api/v1/access/groups/tenant-acme', { tenant: false })).status,
    ).toBe(200);
  });

  it('keeps remote groups of existing remotes and their own credentials, and drops their grants with them', async () => {
    const unknownCredential = await m.api('POST', '/api/v1/remote-groups', {
      id: 'rg',
      entries: [{ remote: 'x', credential: 'nope' }],
    });
    expect(unknownCredential.status).toBe(404);
    expect(unknownCredential.body.error.message).toContain('credential nope of remote x');
    expect(
      (
        await m.api('POST', '/api/v1/remote-groups', {
          id: 'rg',
          entries: [{ remote: 'gone', credential: 'admin' }],
        })
      ).status,
    ).toBe(404);
    const repeated = await m.api('POST', '/api/v1/remote-groups', {
      id: 'rg',
      entries: [
        { remote: 'x', credential: 'admin' },
        { remote: 'x', credential: 'reader' },
      ],
    });
    expect(repeated.status).toBe(400);

    const created = await m.api('POST', '/api/v1/remote-groups', {
      id: 'rg',
      comment: 'readers',
      entries: [{ remote: 'x', credential: 'reader' }],
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      id: 'rg',
      comment: 'readers',
      entries: [{ remote: 'x', credential: 'reader' }],
    });
    expect((await m.api('POST', '/api/v1/remote-groups', { id: 'rg', entries: [] })).status).toBe(
      409,
    );
    const replaced = await m.api('PUT', '/api/v1/remote-groups/rg', {
      entries: [
        { remote: 'x', credential: 'admin' },
        { remote: 'y', credential: 'reader' },
      ],
    });
    expect(replaced.body.entries).toEqual([
      { remote: 'x', credential: 'admin' },
      { remote: 'y', credential: 'reader' },
    ]);
    expect(replaced.body.comment).toBe('readers');

    await createUser('mia');
    const session = await login('mia', STRONG);
    await grant('/groups/rg', 'user', 'mia@local', 'Audit');
    expect(
      (await session.api('GET', '/api/v1/remotes')).body.items.map((r: { id: string }) => r.id),
    ).toEqual(['x', 'y']);
    expect((await m.api('DELETE', '/api/v1/remote-groups/rg')).status).toBe(204);
    expect((await m.api('GET', '/api/v1/remote-groups/rg')).status).toBe(404);
    expect((await m.api('GET', `/api/v1/access/acl?path=${enc('/groups/rg')}`)).body.items).toEqual(
      [],
    );
    expect((await session.api('GET', '/api/v1/remotes')).status).toBe(403);
  });
});

describe('privileges of the administration routes', () => {
  it('answers 403 to an Audit-only principal on every access write, while it can read everything', async () => {
    await createUser('nora');
    await grant('/', 'user', 'nora@local', 'Audit');
    const token = (
      await m.api('POST', '/api/v1/access/tokens', {
        ownerType: 'user',
        owner: 'nora@local',
        name: 'audit',
      })
    ).body.token as string;
    const session = await login('nora', STRONG);
    const routes = registeredRoutes(m.manager.app).filter((r) =>
      /^\/api\/v1\/(access\/(users|groups|acl|tokens|vm-owners)|remote-groups)/.test(r.path),
    );
    const writes = routes.filter((r) => r.method !== 'GET' && r.requirement);
    expect(writes.length).toBeGreaterThanOrEqual(18);
    const before = await query(
      `SELECT (SELECT count(*) FROM users) u, (SELECT count(*) FROM groups) g, (SELECT count(*) FROM acl_entries) a, (SELECT count(*) FROM api_tokens) t`,
    );
    for (const route of writes) {
      const path = samplePath(route.path);
      for (const [who, answer] of [
        ['token', await m.api(route.method, path, {}, { token })],
        ['session', await session.api(route.method, path, {})],
      ] as const) {
        expect(answer.status, `${who}: ${route.method} ${route.path}`).toBe(403);
        expect(answer.body.error.message).toContain(route.requirement!.privilege);
      }
    }
    expect(
      await query(
        `SELECT (SELECT count(*) FROM users) u, (SELECT count(*) FROM groups) g, (SELECT count(*) FROM acl_entries) a, (SELECT count(*) FROM api_tokens) t`,
      ),
    ).toEqual(before);
    for (const path of [
      '/api/v1/access/users',
      '/api/v1/access/groups',
      '/api/v1/access/acl',
      '/api/v1/access/tokens',
      '/api/v1/access/vm-owners',
      '/api/v1/remote-groups',
    ]) {
      expect((await m.api('GET', path, undefined, { token })).status, path).toBe(200);
    }
  });

  it('documents every administration route with its privilege in the OpenAPI document', async () => {
    const answer = await m.api('GET', '/api/v1/openapi.json');
    const paths = answer.body.paths as Record<
      string,
      Record<string, { 'x-debvisor-privilege'?: Record<string, unknown> }>
    >;
    expect(paths['/api/v1/access/users']?.post?.['x-debvisor-privilege']).toMatchObject({
      privilege: 'access.modify',
      path: '/',
    });
    expect(paths['/api/v1/access/tokens/mine']?.post?.['x-debvisor-privilege']).toMatchObject({
      self: true,
    });
    expect(paths['/api/v1/remote-groups/{group}']?.put?.['x-debvisor-privilege']).toMatchObject({
      privilege: 'remote.modify',
      path: '/',
    });
  });
});
