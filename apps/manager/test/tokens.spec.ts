import { createCa } from '@debvisor/pki';
import { cleanupTempDirs, freePort } from '@debvisor/testing';
import { createHash } from 'node:crypto';
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

const KEY = `dvk_0123456789abcdef_${'A'.repeat(43)}`;
const VM = '3f1d2c4b-5a6e-4f70-8a9b-0c1d2e3f4a5b';
const PASSWORD = 'correct-Horse-7-battery';
const TOKEN = /^dvdm_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

let dbs: TestDatabases;
let m: TestManager;
/** uma@local: Manage on /remotes/a, nothing else. */
let uma: Session;

beforeAll(async () => {
  let caPem: string;
  [dbs, caPem] = await Promise.all([
    startTestDatabases(),
    createCa('test cluster CA').then((ca) => ca.certPem),
  ]);
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    env: { DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE: '1000' },
  });
  for (const id of ['a', 'b']) {
    const remote = {
      id,
      endpoints: [`127.0.0.1:${await freePort()}`],
      caCertPem: caPem,
      credentials: [{ name: 'admin', key: KEY }],
      addAnyway: true,
    };
    expect((await m.api('POST', '/api/v1/remotes', remote)).status).toBe(201);
  }
  expect(
    (
      await m.api('POST', '/api/v1/access/users', {
        username: 'uma',
        realm: 'local',
        password: PASSWORD,
      })
    ).status,
  ).toBe(201);
  await grant('/remotes/a', 'user', 'uma@local', 'Manage');
  uma = await login('uma', PASSWORD);
});
afterAll(async () => {
  await m?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

interface Session {
  readonly options: RequestOptions;
  api(method: string, path: string, body?: unknown): Promise<ApiAnswer>;
}

async function login(username: string, password: string): Promise<Session> {
  const answer = await m.api('POST', '/api/v1/auth/login', { username, password }, { token: null });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  const cookie = ([] as string[])
    .concat(answer.headers['set-cookie'] ?? [])
    .map((c) => c.split(';')[0])
    .find((c) => c.startsWith('debvisor_session='));
  const options: RequestOptions = {
    token: null,
    headers: { cookie: cookie!, 'x-csrf-token': answer.body.csrfToken },
  };
  return { options, api: (method, path, body) => m.api(method, path, body, options) };
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

async function grant(path: string, principalType: string, principal: string, role: string) {
  const answer = await m.api('PUT', '/api/v1/access/acl', { path, principalType, principal, role });
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
}

/** uma creates a token of her own through her session. */
async function umaToken(
  name: string,
  extra: Record<string, unknown> = {},
): Promise<{ id: string; token: string }> {
  const answer = await uma.api('POST', '/api/v1/access/tokens/mine', { name, ...extra });
  expect(answer.status, JSON.stringify(answer.body)).toBe(201);
  return { id: answer.body.id, token: answer.body.token };
}

function as(token: string, method: string, path: string, body?: unknown) {
  return m.api(method, path, body, { token });
}

async function remoteIds(token: string): Promise<string[] | number> {
  const answer = await as(token, 'GET', '/api/v1/remotes');
  return answer.status === 200 ? answer.body.items.map((r: { id: string }) => r.id) : answer.status;
}

const CREATE_REMOTE = {
  id: 'c',
  endpoints: ['127.0.0.1:1'],
  caFingerprint: 'AB'.repeat(32),
  credentials: [{ name: 'admin', key: KEY }],
  addAnyway: true,
};

describe('own tokens', () => {
  it('shows the secret once, at creation; lists and the database hold only its id and SHA-256', async () => {
    const created = await uma.api('POST', '/api/v1/access/tokens/mine', {
      name: 'ci',
      comment: 'pipeline',
    });
    expect(created.status).toBe(201);
    expect(created.headers['cache-control']).toBe('no-store');
    const [, id, secret] = TOKEN.exec(created.body.token)!;
    expect(created.body).toMatchObject({
      id,
      name: 'ci',
      owner: 'uma@local',
      ownerType: 'user',
      display: 'uma@local!ci',
      comment: 'pipeline',
      limited: false,
      revokedAt: null,
    });

    const mine = await uma.api('GET', '/api/v1/access/tokens/mine');
    expect(mine.body.items).toEqual([
      expect.objectContaining({
        id,
        name: 'ci',
        owner: 'uma@local',
        comment: 'pipeline',
        limited: false,
        lastUsedAt: null,
        expiresAt: null,
      }),
    ]);
    const all = await m.api('GET', '/api/v1/access/tokens?owner=uma%40local');
    expect(all.body.items.map((t: { id: string }) => t.id)).toEqual([id]);
    for (const answer of [mine, all]) {
      expect(answer.text).not.toContain(secret);
      expect(answer.body.items[0]).not.toHaveProperty('token');
      expect(answer.body.items[0]).not.toHaveProperty('secretHash');
    }
    const rows = await query<{ secret_hash: string; row: string }>(
      'SELECT secret_hash, row_to_json(t)::text AS row FROM api_tokens t WHERE id = $1',
      [id],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].secret_hash).toBe(createHash('sha256').update(secret).digest('hex'));
    expect(rows[0].row).not.toContain(secret);
  });

  it('answers 409 for a second token of one name, through the session and through the admin API', async () => {
    await umaToken('twice');
    const again = await uma.api('POST', '/api/v1/access/tokens/mine', { name: 'twice' });
    expect(again.status).toBe(409);
    expect(again.body.error.message).toContain('uma@local!twice already exists');
    expect(
      (
        await m.api('POST', '/api/v1/access/tokens', {
          ownerType: 'user',
          owner: 'uma@local',
          name: 'twice',
        })
      ).status,
    ).toBe(409);
    expect(
      (await query(`SELECT id FROM api_tokens WHERE principal = 'uma@local' AND name = 'twice'`))
        .length,
    ).toBe(1);
  });

  it('refuses a token to mint, change or revoke tokens of its own (a session is needed)', async () => {
    const { id, token } = await umaToken('no-minting');
    const mint = await as(token, 'POST', '/api/v1/access/tokens/mine', { name: 'child' });
    expect(mint.status).toBe(403);
    expect(mint.body.error.message).toContain('login session');
    expect((await as(token, 'DELETE', `/api/v1/access/tokens/mine/${id}`)).status).toBe(403);
    expect(
      (await as(token, 'PUT', `/api/v1/access/tokens/mine/${id}`, { limited: false })).status,
    ).toBe(403);
  });

  it('sets lastUsedAt when the token is used', async () => {
    const { id, token } = await umaToken('used');
    const before = (await uma.api('GET', '/api/v1/access/tokens/mine')).body.items.find(
      (t: { id: string }) => t.id === id,
    );
    expect(before.lastUsedAt).toBeNull();
    expect((await as(token, 'GET', '/api/v1/remotes/a')).status).toBe(200);
    const after = (await uma.api('GET', '/api/v1/access/tokens/mine')).body.items.find(
      (t: { id: string }) => t.id === id,
    );
    expect(Date.parse(after.lastUsedAt)).toBeGreaterThan(Date.parse(after.createdAt) - 1000);
  });
});

describe('privilege separation', () => {
  it('an unlimited token can do what its owner can and nothing more', async () => {
    const { token } = await umaToken('full');
    expect(await remoteIds(token)).toEqual(['a']);
    expect((await as(token, 'GET', '/api/v1/remotes/a')).status).toBe(200);
    expect((await as(token, 'GET', '/api/v1/remotes/b')).status).toBe(403);
    expect((await as(token, 'POST', '/api/v1/remotes', CREATE_REMOTE)).status).toBe(403);
    expect((await as(token, 'GET', '/api/v1/access/users')).status).toBe(403);
    expect((await as(token, 'POST', `/api/v1/remotes/b/vms/${VM}/start`)).status).toBe(404);
    expect((await as(token, 'POST', `/api/v1/remotes/a/vms/${VM}/start`)).status).toBe(202);
  });

  it('a limited token holds only its own entries: Audit on /remotes/a reads but cannot act, though the owner could', async () => {
    const { id, token } = await umaToken('read-only', { limited: true });
    expect(await remoteIds(token)).toBe(403);

    await grant('/remotes/a', 'token', id, 'Audit');
    expect(await remoteIds(token)).toEqual(['a']);
    expect((await as(token, 'GET', '/api/v1/remotes/a')).status).toBe(200);
    const act = await as(token, 'POST', `/api/v1/remotes/a/vms/${VM}/start`);
    expect(act.status).toBe(403);
    expect(act.body.error.message).toContain('vm.power');
    expect((await as(token, 'POST', `/api/v1/remotes/a/vms/${VM}/stop`)).status).toBe(403);
    // The owner may: the request is accepted as a task (which then fails: the remote is unreachable).
    expect((await uma.api('POST', `/api/v1/remotes/a/vms/${VM}/start`)).status).toBe(202);
  });

  it('a limited token given Admin on / still cannot exceed its owner', async () => {
    const { id, token } = await umaToken('wide', { limited: true });
    await grant('/', 'token', id, 'Admin');
    expect((await as(token, 'POST', '/api/v1/remotes', CREATE_REMOTE)).status).toBe(403);
    expect((await as(token, 'GET', '/api/v1/remotes/b')).status).toBe(403);
    expect((await as(token, 'GET', '/api/v1/access/users')).status).toBe(403);
    expect(await remoteIds(token)).toEqual(['a']);
    expect((await as(token, 'POST', `/api/v1/remotes/a/vms/${VM}/start`)).status).toBe(202);
    expect(await query(`SELECT id FROM remotes WHERE id = 'c'`)).toEqual([]);
  });

  it('lets the owner grant entries to its own limited token, which still never exceed the owner', async () => {
    const { id, token } = await umaToken('self-granted', { limited: true });
    const granted = await uma.api('PUT', `/api/v1/access/tokens/mine/${id}/acl`, {
      path: '/remotes/a',
      role: 'Audit',
    });
    expect(granted.status).toBe(200);
    expect(granted.body).toMatchObject({
      path: '/remotes/a',
      principalType: 'token',
      principal: id,
      role: 'Audit',
      propagate: true,
    });
    expect(
      (await uma.api('PUT', `/api/v1/access/tokens/mine/${id}/acl`, { path: '/', role: 'Admin' }))
        .status,
    ).toBe(200);
    expect(
      (await uma.api('GET', `/api/v1/access/tokens/mine/${id}/acl`)).body.items.map(
        (e: { path: string }) => e.path,
      ),
    ).toEqual(['/', '/remotes/a']);
    expect((await as(token, 'GET', '/api/v1/remotes/b')).status).toBe(403);
    expect((await as(token, 'POST', '/api/v1/remotes', CREATE_REMOTE)).status).toBe(403);
    expect(
      (
        await uma.api(
          'DELETE',
          `/api/v1/access/tokens/mine/${id}/acl?path=${encodeURIComponent('/')}`,
        )
      ).status,
    ).toBe(204);
    expect((await as(token, 'POST', `/api/v1/remotes/a/vms/${VM}/start`)).status).toBe(403);

    const unlimited = await umaToken('unlimited-for-acl');
    expect(
      (
        await uma.api('PUT', `/api/v1/access/tokens/mine/${unlimited.id}/acl`, {
          path: '/remotes/a',
          role: 'Audit',
        })
      ).status,
    ).toBe(409);
    const admins = await m.api('GET', '/api/v1/access/tokens?owner=admin%40local');
    const adminToken = admins.body.items[0].id as string;
    expect(
      (
        await uma.api('PUT', `/api/v1/access/tokens/mine/${adminToken}/acl`, {
          path: '/remotes/a',
          role: 'Audit',
        })
      ).status,
    ).toBe(404);
  });
});

describe('ending tokens', () => {
  it('a revoked token answers 401, whether its owner or an administrator revoked it', async () => {
    const own = await umaToken('revoked-by-owner');
    const other = await umaToken('revoked-by-admin');
    for (const t of [own, other])
      expect((await as(t.token, 'GET', '/api/v1/remotes/a')).status).toBe(200);
    expect((await uma.api('DELETE', `/api/v1/access/tokens/mine/${own.id}`)).status).toBe(204);
    expect((await m.api('DELETE', `/api/v1/access/tokens/${other.id}`)).status).toBe(204);
    for (const t of [own, other]) {
      const answer = await as(t.token, 'GET', '/api/v1/remotes/a');
      expect(answer.status).toBe(401);
      expect(answer.body.error.code).toBe('unauthenticated');
    }
    const listed = (await uma.api('GET', '/api/v1/access/tokens/mine')).body.items.filter(
      (t: { id: string }) => t.id === own.id || t.id === other.id,
    );
    expect(listed.map((t: { revokedAt: string | null }) => typeof t.revokedAt)).toEqual([
      'string',
      'string',
    ]);
    expect(
      (await uma.api('PUT', `/api/v1/access/tokens/mine/${own.id}`, { comment: 'revive?' })).status,
    ).toBe(409);
  });

  it('an expired token answers 401; an expiry in the past cannot be set', async () => {
    const inAnHour = new Date(Date.now() + 3_600_000).toISOString();
    const { id, token } = await umaToken('expiring', { expiresAt: inAnHour });
    expect(
      (await uma.api('GET', '/api/v1/access/tokens/mine')).body.items.find(
        (t: { id: string }) => t.id === id,
      ).expiresAt,
    ).toBe(inAnHour);
    await query(`UPDATE api_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1`, [
      id,
    ]);
    expect((await as(token, 'GET', '/api/v1/remotes/a')).status).toBe(401);
    const past = await uma.api('POST', '/api/v1/access/tokens/mine', {
      name: 'born-expired',
      expiresAt: '2020-01-01T00:00:00Z',
    });
    expect(past.status).toBe(400);
    expect(past.body.error.message).toContain('expiresAt: must be in the future');
  });
});

describe('group tokens', () => {
  it('a group’s token acts with the group’s rights, and stops working when the group is deleted', async () => {
    expect((await m.api('POST', '/api/v1/access/groups', { id: 'auditors' })).status).toBe(201);
    await grant('/', 'group', 'auditors', 'Audit');
    const created = await m.api('POST', '/api/v1/access/tokens', {
      ownerType: 'group',
      owner: 'auditors',
      name: 'bot',
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      ownerType: 'group',
      owner: 'auditors',
      display: '@auditors!bot',
    });
    const token = created.body.token as string;
    expect(await remoteIds(token)).toEqual(['a', 'b']);
    expect((await as(token, 'GET', '/api/v1/access/users')).status).toBe(200);
    expect((await as(token, 'POST', '/api/v1/remotes', CREATE_REMOTE)).status).toBe(403);
    expect((await as(token, 'POST', `/api/v1/remotes/a/vms/${VM}/start`)).status).toBe(403);

    expect(
      (
        await m.api('POST', '/api/v1/access/tokens', {
          ownerType: 'group',
          owner: 'nobody',
          name: 'bot',
        })
      ).status,
    ).toBe(404);
    expect((await m.api('DELETE', '/api/v1/access/groups/auditors')).status).toBe(204);
    expect((await as(token, 'GET', '/api/v1/remotes')).status).toBe(401);
    expect(
      await query(
        `SELECT id FROM api_tokens WHERE owner_type = 'group' AND principal = 'auditors'`,
      ),
    ).toEqual([]);
  });
});
