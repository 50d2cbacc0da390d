import { cleanupTempDirs, startSlapd, type SlapdInstance } from '@debvisor/testing';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  startTestDatabases,
  startTestManager,
  type ApiAnswer,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

const REALMS = '/api/v1/access/realms';
const PASSWORDS: Record<string, string> = {};

let dbs: TestDatabases;
let ldap: SlapdInstance;
let m: TestManager;
let databaseUrl: string;

async function query<T = Record<string, unknown>>(
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

async function directoryUser(uid: string, groups: string[] = []): Promise<void> {
  PASSWORDS[uid] = `${uid}-${randomBytes(6).toString('hex')}`;
  await ldap.addUser({
    uid,
    password: PASSWORDS[uid],
    cn: `${uid} Example`,
    mail: `${uid}@example.test`,
  });
  for (const group of groups) await ldap.addGroup(group, [uid]);
}

async function grant(group: string, path = '/', role = 'Audit'): Promise<void> {
  await query(
    `INSERT INTO acl_entries (id, path, principal_type, principal, role, propagate, created_at) VALUES ($1, $2, 'group', $3, $4, true, now())`,
    [randomUUID(), path, group, role],
  );
}

function ldapSettings(overrides: Record<string, unknown> = {}) {
  return {
    url: ldap.url,
    // Plain ldap:// is refused without StartTLS (issue 14 item 7): over it, with the directory's CA.
    ...(String(overrides.url ?? ldap.url).startsWith('ldap:')
      ? { startTls: true, caPem: ldap.caPem }
      : {}),
    bindDn: ldap.bindDn,
    userBaseDn: ldap.usersDn,
    groupBaseDn: ldap.groupsDn,
    ...overrides,
  };
}

function realmBody(id: string, overrides: Record<string, unknown> = {}) {
  return {
    id,
    type: 'ldap',
    comment: 'the company directory',
    settings: ldapSettings(),
    secret: ldap.bindPassword,
    // First match wins: tenant groups before the general pattern.
    groupMappings: [{ pattern: 'debvisor-tenant-*', tenant: true }, { pattern: 'debvisor-*' }],
    ...overrides,
  };
}

async function createRealm(
  id: string,
  overrides: Record<string, unknown> = {},
): Promise<ApiAnswer> {
  const answer = await m.api('POST', REALMS, realmBody(id, overrides));
  expect(answer.status, answer.text).toBe(201);
  return answer;
}

async function sync(id: string): Promise<ApiAnswer> {
  const answer = await m.api('POST', `${REALMS}/${id}/sync`);
  expect(answer.status, answer.text).toBe(200);
  return answer;
}

interface Login {
  answer: ApiAnswer;
  cookie: string;
  csrf: string;
}

async function login(username: string, password: string, realm: string): Promise<Login> {
  const answer = await m.api(
    'POST',
    '/api/v1/auth/login',
    { username, password, realm },
    { token: null },
  );
  const setCookie = [answer.headers['set-cookie'] ?? []].flat();
  const cookie =
    setCookie.map((c) => c.split(';')[0]).find((c) => c.startsWith('debvisor_session=')) ?? '';
  return { answer, cookie, csrf: answer.body?.csrfToken };
}

/** A request made with a login session (cookie, and the CSRF token for writes). */
function asSession(
  session: Login,
  method: string,
  path: string,
  body?: unknown,
): Promise<ApiAnswer> {
  return m.api(method, path, body, {
    token: null,
    headers: { cookie: session.cookie, 'x-csrf-token': session.csrf },
  });
}

/** An API token of `owner`, inserted as the token routes would store it. */
async function insertToken(owner: string): Promise<string> {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  await query(
    `INSERT INTO api_tokens (id, owner_type, principal, name, secret_hash, created_at) VALUES ($1, 'user', $2, 'ci', $3, now())`,
    [id, owner, createHash('sha256').update(secret, 'utf8').digest('hex')],
  );
  return `dvdm_${id}_${secret}`;
}

beforeAll(async () => {
  [dbs, ldap] = await Promise.all([startTestDatabases(), startSlapd()]);
  databaseUrl = await dbs.fresh();
  m = await startTestManager({ databaseUrl, env: { DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE: '10000' } });
  PASSWORDS.ann = 'ann-directory-password';
  await ldap.addUser({
    uid: 'ann',
    password: PASSWORDS.ann,
    cn: 'Ann Example',
    mail: 'ann@example.test',
  });
  await directoryUser('bob');
  await ldap.addGroup('debvisor-operator', ['ann']);
  await ldap.addGroup('debvisor-tenant-acme', ['bob']);
  await ldap.addGroup('staff', ['ann', 'bob']);
  await grant('debvisor-operator');
});

afterAll(async () => {
  await m?.stop();
  await Promise.all([ldap?.stop(), dbs?.stop()]);
  cleanupTempDirs();
});

describe('LDAP realms against a real slapd', () => {
  it('lets a directory user log in after a sync, with the access its mapped group was granted', async () => {
    const created = await createRealm('corp');
    expect(created.body).toMatchObject({
      id: 'corp',
      type: 'ldap',
      hasSecret: true,
      connection: { ok: true },
      lastSyncAt: null,
    });

    const summary = await sync('corp');
    expect(summary.body).toEqual({
      users: { created: 2, updated: 0, disabled: 0, skipped: 0 },
      groups: { created: 2 },
      memberships: { added: 2, removed: 0 },
    });
    expect(
      await query('SELECT id, tenant FROM groups WHERE id LIKE $1 ORDER BY id', ['debvisor-%']),
    ).toEqual([
      { id: 'debvisor-operator', tenant: false },
      { id: 'debvisor-tenant-acme', tenant: true },
    ]);
    expect(
      await query(
        `SELECT id, display_name, email, external_id FROM users WHERE realm_id = 'corp' ORDER BY id`,
      ),
    ).toEqual([
      {
        id: 'ann@corp',
        display_name: 'Ann Example',
        email: 'ann@example.test',
        external_id: ldap.userDn('ann'),
      },
      {
        id: 'bob@corp',
        display_name: 'bob Example',
        email: 'bob@example.test',
        external_id: ldap.userDn('bob'),
      },
    ]);
    expect((await m.api('GET', `${REALMS}/corp`)).body.lastSyncAt).not.toBeNull();

    const session = await login('ann', PASSWORDS.ann, 'corp');
    expect(session.answer.status, session.answer.text).toBe(200);
    expect(session.answer.body).toMatchObject({ stage: 'active', user: 'ann@corp' });
    expect(session.cookie).toMatch(/^debvisor_session=[A-Za-z0-9_-]{43}$/);
    expect((await asSession(session, 'GET', '/api/v1/remotes')).status).toBe(200);
    const me = await asSession(session, 'GET', '/api/v1/auth/session');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ user: 'ann@corp', kind: 'session' });
    expect(me.body.groups).toEqual(['debvisor-operator']);
  });

  it('never answers the bind password, and stores it sealed', async () => {
    const created = await createRealm('corp-secret');
    const updated = await m.api('PUT', `${REALMS}/corp-secret`, {
      comment: 'changed',
      secret: ldap.bindPassword,
    });
    expect(updated.status, updated.text).toBe(200);
    expect(updated.body).toMatchObject({
      comment: 'changed',
      hasSecret: true,
      connection: { ok: true },
    });
    const answers = [
      created,
      updated,
      await m.api('GET', `${REALMS}/corp-secret`),
      await m.api('GET', REALMS),
    ];
    for (const answer of answers) {
      expect(answer.status).toBeLessThan(300);
      expect(answer.text).not.toContain(ldap.bindPassword);
      expect(answer.text).not.toContain('"secret"');
    }
    const [row] = await query<{ sealed_secret: string }>(
      `SELECT sealed_secret FROM realms WHERE id = 'corp-secret'`,
    );
    expect(row.sealed_secret).toMatch(/^v1\./);
    expect(row.sealed_secret).not.toContain(ldap.bindPassword);
  });

  it('refuses a wrong password with the same answer as an unknown user, and lets a user in before any sync', async () => {
    await createRealm('corp-pw');
    const wrong = await login('ann', 'not-her-password', 'corp-pw');
    const unknown = await login('nobody', 'whatever', 'corp-pw');
    expect(wrong.answer.status).toBe(401);
    expect(unknown.answer.status).toBe(401);
    expect(wrong.answer.body.error.code).toBe('unauthenticated');
    expect(wrong.answer.body.error.message).toBe(unknown.answer.body.error.message);
    expect(wrong.cookie).toBe('');

    const first = await login('ann', PASSWORDS.ann, 'corp-pw');
    expect(first.answer.status, first.answer.text).toBe(200);
    expect((await asSession(first, 'GET', '/api/v1/auth/session')).body.groups).toEqual([
      'debvisor-operator',
    ]);
  });

  it('disables a user removed from the directory at the next sync: its session and its API tokens stop working', async () => {
    await directoryUser('gone', ['debvisor-gone-team']);
    await grant('debvisor-gone-team');
    await createRealm('corp-gone');
    await sync('corp-gone');
    const session = await login('gone', PASSWORDS.gone, 'corp-gone');
    expect(session.answer.status, session.answer.text).toBe(200);
    const token = await insertToken('gone@corp-gone');
    expect((await asSession(session, 'GET', '/api/v1/remotes')).status).toBe(200);
    expect((await m.api('GET', '/api/v1/remotes', undefined, { token })).status).toBe(200);

    await ldap.deleteUser('gone');
    const summary = await sync('corp-gone');
    expect(summary.body.users).toMatchObject({ disabled: 1 });
    expect(summary.body.memberships).toMatchObject({ removed: 1 });

    expect((await asSession(session, 'GET', '/api/v1/auth/session')).status).toBe(401);
    expect((await asSession(session, 'GET', '/api/v1/remotes')).status).toBe(401);
    expect((await m.api('GET', '/api/v1/remotes', undefined, { token })).status).toBe(401);
    expect((await login('gone', PASSWORDS.gone, 'corp-gone')).answer.status).toBe(401);
    expect(await query(`SELECT enabled FROM users WHERE id = 'gone@corp-gone'`)).toEqual([
      { enabled: false },
    ]);
    expect(
      await query(`SELECT count(*)::int AS n FROM sessions WHERE user_id = 'gone@corp-gone'`),
    ).toEqual([{ n: 0 }]);

    // Listed again, the user the sync disabled comes back; one an administrator disabled would not.
    await ldap.addUser({ uid: 'gone', password: PASSWORDS.gone });
    await ldap.setGroupMembers('debvisor-gone-team', ['gone']);
    await sync('corp-gone');
    const again = await login('gone', PASSWORDS.gone, 'corp-gone');
    expect(again.answer.status, again.answer.text).toBe(200);
    expect((await asSession(again, 'GET', '/api/v1/auth/session')).body.groups).toEqual([
      'debvisor-gone-team',
    ]);
  });

  it('keeps a user an administrator disabled disabled, however the directory lists it', async () => {
    await directoryUser('held', ['debvisor-operator-held']);
    await createRealm('corp-held');
    await sync('corp-held');
    await query(`UPDATE users SET enabled = false WHERE id = 'held@corp-held'`);
    await sync('corp-held');
    expect(await query(`SELECT enabled FROM users WHERE id = 'held@corp-held'`)).toEqual([
      { enabled: false },
    ]);
    expect((await login('held', PASSWORDS.held, 'corp-held')).answer.status).toBe(401);
    expect(await query(`SELECT enabled FROM users WHERE id = 'held@corp-held'`)).toEqual([
      { enabled: false },
    ]);
  });

  it('takes a group’s access from a user removed from that directory group at the next sync, keeping memberships an admin added', async () => {
    await directoryUser('mover', ['debvisor-movers']);
    await grant('debvisor-movers');
    await createRealm('corp-move');
    await sync('corp-move');
    await query(
      `INSERT INTO groups (id, comment, tenant, require_tfa, created_at) VALUES ('hand-made', '', false, false, now())`,
    );
    await query(
      `INSERT INTO group_members (group_id, user_id, source) VALUES ('hand-made', 'mover@corp-move', 'local')`,
    );
    const session = await login('mover', PASSWORDS.mover, 'corp-move');
    expect(session.answer.status, session.answer.text).toBe(200);
    expect((await asSession(session, 'GET', '/api/v1/remotes')).status).toBe(200);

    await ldap.setGroupMembers('debvisor-movers', []);
    expect((await sync('corp-move')).body.memberships).toEqual({ added: 0, removed: 1 });
    expect((await asSession(session, 'GET', '/api/v1/remotes')).status).toBe(403);
    const me = await asSession(session, 'GET', '/api/v1/auth/session');
    expect(me.status).toBe(200);
    expect(me.body.groups).toEqual(['hand-made']);
  });

  it('refreshes a user’s groups at login, without a sync', async () => {
    await directoryUser('late');
    await createRealm('corp-late');
    await sync('corp-late');
    await ldap.addGroup('debvisor-late', ['late']);
    await grant('debvisor-late');
    const session = await login('late', PASSWORDS.late, 'corp-late');
    expect(session.answer.status, session.answer.text).toBe(200);
    expect((await asSession(session, 'GET', '/api/v1/auth/session')).body.groups).toEqual([
      'debvisor-late',
    ]);
    expect((await asSession(session, 'GET', '/api/v1/remotes')).status).toBe(200);
  });

  it('works over LDAPS with the directory’s CA certificate, and refuses LDAPS without it', async () => {
    const created = await createRealm('corp-tls', {
      settings: ldapSettings({ url: ldap.ldapsUrl, caPem: ldap.caPem }),
    });
    expect(created.body.connection).toEqual({ ok: true });
    const session = await login('ann', PASSWORDS.ann, 'corp-tls');
    expect(session.answer.status, session.answer.text).toBe(200);

    const untrusted = await m.api(
      'POST',
      REALMS,
      realmBody('corp-untrusted', { settings: ldapSettings({ url: ldap.ldapsUrl }) }),
    );
    expect(untrusted.status).toBe(503);
    expect(untrusted.body.error.code).toBe('realm_unavailable');
  });

  it('refuses a realm whose bind password the directory rejects, unless addAnyway; its syncs then fail and say why', async () => {
    const refused = await m.api(
      'POST',
      REALMS,
      realmBody('corp-bad', { secret: 'not-the-bind-password' }),
    );
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('realm_unavailable');
    expect(refused.text).not.toContain('not-the-bind-password');
    expect((await m.api('GET', `${REALMS}/corp-bad`)).status).toBe(404);

    const stored = await m.api(
      'POST',
      REALMS,
      realmBody('corp-bad', { secret: 'not-the-bind-password', addAnyway: true }),
    );
    expect(stored.status, stored.text).toBe(201);
    expect(stored.body.connection).toMatchObject({
      ok: false,
      error: { code: 'realm_unavailable' },
    });

    const failed = await m.api('POST', `${REALMS}/corp-bad/sync`);
    expect(failed.status).toBe(503);
    const after = await m.api('GET', `${REALMS}/corp-bad`);
    expect(after.body.lastSyncError).toMatch(/rejected the service account/);
    expect(after.body.lastSyncAt).toBeNull();

    // A directory that cannot be used refuses logins with 503, not as a wrong password — and tells
    // the anonymous caller nothing of the directory; the details go to the log (issue 14 item 9).
    const login503 = await login('ann', PASSWORDS.ann, 'corp-bad');
    expect(login503.answer.status).toBe(503);
    expect(login503.answer.text).not.toContain(ldap.bindDn);
    expect(login503.answer.text).not.toContain(new URL(ldap.url).host);
    expect(login503.answer.text).not.toMatch(/ldaps?:|rejected the service account/);
    const traceId = login503.answer.body.error.traceId as string;
    expect(m.logs()).toMatch(
      new RegExp(`"traceId":"${traceId}"[^\\n]*rejected the service account`),
    );

    const fixed = await m.api('PUT', `${REALMS}/corp-bad`, { secret: ldap.bindPassword });
    expect(fixed.status, fixed.text).toBe(200);
    expect((await sync('corp-bad')).status).toBe(200);
    expect((await m.api('GET', `${REALMS}/corp-bad`)).body.lastSyncError).toBeNull();
  });

  it('refuses ldap:// without StartTLS: the bind password and users’ passwords would travel in clear (issue 14 item 7)', async () => {
    const plain = await m.api(
      'POST',
      REALMS,
      realmBody('corp-plain', { settings: ldapSettings({ startTls: false, caPem: undefined }) }),
    );
    expect(plain.status).toBe(400);
    expect(plain.body.error.message).toMatch(/StartTLS/);
    expect((await m.api('GET', `${REALMS}/corp-plain`)).status).toBe(404);
  });

  it('counts wrong passwords against the directory user whatever the case of the name given (issue 14 item 4)', async () => {
    await directoryUser('cas');
    await createRealm('corp-case');
    expect((await login('cas', PASSWORDS.cas, 'corp-case')).answer.status).toBe(200);
    for (const variant of ['CAS', 'Cas', 'cAs', 'caS', 'CAs'])
      expect((await login(variant, 'wrong-password', 'corp-case')).answer.status).toBe(401);
    const refused = await login('cAS', PASSWORDS.cas, 'corp-case');
    expect(refused.answer.status).toBe(401);
    expect(refused.answer.body.error.message).toBe('invalid username or password');
  });

  it('deletes a realm with its users, their tokens and ACL entries', async () => {
    await createRealm('corp-del');
    await sync('corp-del');
    const token = await insertToken('ann@corp-del');
    await query(
      `INSERT INTO acl_entries (id, path, principal_type, principal, role, propagate, created_at) VALUES ($1, '/', 'user', 'ann@corp-del', 'Admin', true, now())`,
      [randomUUID()],
    );
    expect((await m.api('DELETE', `${REALMS}/corp-del`)).status).toBe(204);
    expect(await query(`SELECT id FROM users WHERE realm_id = 'corp-del'`)).toEqual([]);
    expect(await query(`SELECT id FROM api_tokens WHERE principal = 'ann@corp-del'`)).toEqual([]);
    expect(await query(`SELECT id FROM acl_entries WHERE principal = 'ann@corp-del'`)).toEqual([]);
    expect((await m.api('GET', '/api/v1/remotes', undefined, { token })).status).toBe(401);
    expect((await login('ann', PASSWORDS.ann, 'corp-del')).answer.status).toBe(401);
    expect((await m.api('DELETE', `${REALMS}/corp-del`)).status).toBe(404);
  });

  it('keeps the local realm: it cannot be deleted or become LDAP, but may require a second factor', async () => {
    expect((await m.api('DELETE', `${REALMS}/local`)).status).toBe(400);
    const toLdap = await m.api('PUT', `${REALMS}/local`, {
      type: 'ldap',
      settings: ldapSettings(),
    });
    expect(toLdap.status).toBe(400);
    const tfa = await m.api('PUT', `${REALMS}/local`, { requireTfa: true });
    expect(tfa.status, tfa.text).toBe(200);
    expect(tfa.body).toMatchObject({
      id: 'local',
      type: 'local',
      requireTfa: true,
      hasSecret: false,
    });
    expect((await m.api('PUT', `${REALMS}/local`, { requireTfa: false })).body.requireTfa).toBe(
      false,
    );
    expect((await m.api('POST', REALMS, realmBody('local'))).status).toBe(409);
  });

  it('lets a holder of access.audit read realms but not change them', async () => {
    await createRealm('corp-audit');
    const session = await login('ann', PASSWORDS.ann, 'corp-audit');
    expect(session.answer.status, session.answer.text).toBe(200);
    const list = await asSession(session, 'GET', REALMS);
    expect(list.status).toBe(200);
    expect(list.body.items.map((r: { id: string }) => r.id)).toContain('local');
    expect((await asSession(session, 'POST', REALMS, realmBody('corp-mine'))).status).toBe(403);
    expect((await asSession(session, 'POST', `${REALMS}/corp-audit/sync`)).status).toBe(403);
    expect(
      (await asSession(session, 'PUT', `${REALMS}/corp-audit`, { comment: 'mine' })).status,
    ).toBe(403);
    expect((await asSession(session, 'DELETE', `${REALMS}/corp-audit`)).status).toBe(403);
    expect((await m.api('GET', `${REALMS}/corp-audit`)).body.comment).toBe('the company directory');
  });

  it('records realm changes and syncs in the audit log without the bind password', async () => {
    await createRealm('corp-log');
    const summary = await sync('corp-log');
    // Outcome entries are written after the answer: wait for all four (attempt and outcome of each call).
    const rows = await eventually(async () => {
      const found = await query<{ action: string; outcome: string; details: unknown }>(
        `SELECT action, outcome, details FROM audit_log WHERE action IN ('access.realm.create', 'access.realm.sync') AND target LIKE '%corp-log%' ORDER BY seq`,
      );
      return found.length >= 4 ? found : undefined;
    });
    expect(rows.map((r) => `${r.action} ${r.outcome}`)).toEqual([
      'access.realm.create attempt',
      'access.realm.create success',
      'access.realm.sync attempt',
      'access.realm.sync success',
    ]);
    expect(rows[3].details).toMatchObject(summary.body);
    expect(JSON.stringify(rows)).not.toContain(ldap.bindPassword);
  });
});
