import { createCa } from '@debvisor/pki';
import { cleanupTempDirs, freePort } from '@debvisor/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PasswordHasherRepository } from '../src/users/password-hasher.repository';
import {
  eventually,
  startTestDatabases,
  startTestManager,
  type ApiAnswer,
  type TestDatabases,
  type TestManager,
  sqlQuery,
} from './manager-harness';

/**
 * Login sessions through the real manager and PostgreSQL: the cookie, CSRF, logout, timeouts,
 * uniform failures, account lock, the per-address login limit and equal work for unknown users.
 */

const PASSWORD = 'correct horse battery staple';

let dbs: TestDatabases;
const started: TestManager[] = [];
const hasher = new PasswordHasherRepository();

beforeAll(async () => {
  dbs = await startTestDatabases();
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((m) => m.stop()));
});
afterAll(async () => {
  await dbs?.stop();
  cleanupTempDirs();
});

async function manager(env: Record<string, string> = {}): Promise<TestManager> {
  const m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    env: { DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE: '1000', ...env },
  });
  started.push(m);
  return m;
}

function query<T = Record<string, unknown>>(
  m: TestManager,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  return sqlQuery<T>(m.databaseUrl!, sql, params);
}

/** A local user with PASSWORD (and, when given, a role on /). */
async function createUser(
  m: TestManager,
  name: string,
  role?: 'Audit' | 'Manage' | 'Admin',
): Promise<string> {
  const id = `${name}@local`;
  await query(
    m,
    `INSERT INTO users (id, realm_id, username, password_hash, created_at) VALUES ($1, 'local', $2, $3, now())`,
    [id, name, await hasher.hash(PASSWORD)],
  );
  if (role) {
    await query(
      m,
      `INSERT INTO acl_entries (id, path, principal_type, principal, role, propagate, created_at) VALUES (gen_random_uuid(), '/', 'user', $1, $2, true, now())`,
      [id, role],
    );
  }
  return id;
}

interface Session {
  readonly cookie: string;
  readonly csrf: string;
}

function sessionCookie(answer: ApiAnswer): string | undefined {
  const header = answer.headers['set-cookie'];
  const lines = Array.isArray(header) ? header : header ? [header] : [];
  return lines.find((l) => l.startsWith('debvisor_session='))?.split(';')[0];
}

async function login(
  m: TestManager,
  username: string,
  password = PASSWORD,
): Promise<ApiAnswer & { session?: Session }> {
  const answer = await m.api('POST', '/api/v1/auth/login', { username, password }, { token: null });
  const cookie = sessionCookie(answer);
  return {
    ...answer,
    session: cookie && answer.status === 200 ? { cookie, csrf: answer.body.csrfToken } : undefined,
  };
}

async function loggedIn(m: TestManager, username: string): Promise<Session> {
  const answer = await login(m, username);
  expect(answer.status, answer.text).toBe(200);
  expect(answer.body.stage).toBe('active');
  return answer.session!;
}

/** A request with the session cookie (no bearer token); `csrf: false` leaves the CSRF header out. */
function withSession(
  m: TestManager,
  session: Session,
  method: string,
  path: string,
  body?: unknown,
  options: { csrf?: string | false } = {},
) {
  const headers: Record<string, string> = { cookie: session.cookie };
  if (options.csrf !== false) headers['x-csrf-token'] = options.csrf ?? session.csrf;
  return m.api(method, path, body, { token: null, headers });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

describe('the session cookie and CSRF', () => {
  it('sets the session cookie HttpOnly, Secure and SameSite=Strict, and answers a CSRF token', async () => {
    const m = await manager();
    await createUser(m, 'alice');
    const answer = await login(m, 'alice');
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ stage: 'active', user: 'alice@local', methods: [] });
    expect(answer.body.csrfToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(answer.headers['cache-control']).toBe('no-store');
    const header = [answer.headers['set-cookie']]
      .flat()
      .find((l) => l?.startsWith('debvisor_session='))!;
    const attributes = header.split(';').map((a) => a.trim().toLowerCase());
    expect(attributes).toEqual(
      expect.arrayContaining(['httponly', 'secure', 'samesite=strict', 'path=/']),
    );
    expect(header).toMatch(/^debvisor_session=[A-Za-z0-9_-]{43};/);
    // Only the SHA-256 of the cookie secret is stored.
    const secret = answer.session!.cookie.split('=')[1];
    const rows = await query<{ id: string }>(m, 'SELECT id FROM sessions');
    expect(rows).toHaveLength(1);
    expect(rows[0].id).toMatch(/^[0-9a-f]{64}$/);
    expect(rows[0].id).not.toContain(secret);
  });

  it('sets a readable signed-in marker without any secret beside the session cookie, and clears both at logout', async () => {
    const m = await manager();
    await createUser(m, 'mark');
    const answer = await login(m, 'mark');
    const marker = [answer.headers['set-cookie']]
      .flat()
      .find((l) => l?.startsWith('debvisor_signed_in='))!;
    expect(marker).toMatch(/^debvisor_signed_in=1;/);
    const attributes = marker.split(';').map((a) => a.trim().toLowerCase());
    expect(attributes).toEqual(expect.arrayContaining(['secure', 'samesite=strict', 'path=/']));
    expect(attributes).not.toContain('httponly');
    const out = await withSession(m, answer.session!, 'POST', '/api/v1/auth/logout');
    expect(out.status).toBe(204);
    const cleared = [out.headers['set-cookie']]
      .flat()
      .filter(Boolean)
      .map((l) => l!.split(';')[0]);
    expect(cleared).toEqual(expect.arrayContaining(['debvisor_session=', 'debvisor_signed_in=']));
  });

  it('refuses a cookie-authenticated write without the CSRF token or with another session’s, and changes nothing', async () => {
    const m = await manager();
    await createUser(m, 'alice');
    const session = await loggedIn(m, 'alice');
    const other = await loggedIn(m, 'alice');

    const without = await withSession(m, session, 'POST', '/api/v1/auth/logout', undefined, {
      csrf: false,
    });
    expect(without.status).toBe(403);
    expect(without.body.error.message).toContain('X-CSRF-Token');
    const foreign = await withSession(m, session, 'POST', '/api/v1/auth/logout', undefined, {
      csrf: other.csrf,
    });
    expect(foreign.status).toBe(403);
    expect((await query(m, 'SELECT 1 FROM sessions')).length).toBe(2);
    expect((await withSession(m, session, 'GET', '/api/v1/auth/session')).status).toBe(200);

    const withToken = await withSession(m, session, 'POST', '/api/v1/auth/logout');
    expect(withToken.status).toBe(204);
    expect((await query(m, 'SELECT 1 FROM sessions')).length).toBe(1);
  });

  it('creates a remote with the session cookie only when the CSRF token comes along', async () => {
    const m = await manager();
    await createUser(m, 'root', 'Admin');
    const session = await loggedIn(m, 'root');
    const body = {
      id: 'r1',
      endpoints: [`127.0.0.1:${await freePort()}`],
      caCertPem: (await createCa('test cluster CA')).certPem,
      credentials: [{ name: 'admin', key: `dvk_0123456789abcdef_${'A'.repeat(43)}` }],
      addAnyway: true,
    };
    const refused = await withSession(m, session, 'POST', '/api/v1/remotes', body, { csrf: false });
    expect(refused.status).toBe(403);
    expect(await query(m, 'SELECT id FROM remotes')).toEqual([]);
    const created = await withSession(m, session, 'POST', '/api/v1/remotes', body);
    expect(created.status, created.text).toBe(201);
    expect(await query(m, 'SELECT id FROM remotes')).toEqual([{ id: 'r1' }]);
  });

  it('answers the CSRF token of the session again on GET /api/v1/auth/session', async () => {
    const m = await manager();
    await createUser(m, 'alice', 'Audit');
    const answer = await login(m, 'alice');
    const again = await withSession(m, answer.session!, 'GET', '/api/v1/auth/session', undefined, {
      csrf: false,
    });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({
      user: 'alice@local',
      kind: 'session',
      stage: 'active',
      csrfToken: answer.body.csrfToken,
    });
    expect(again.body.privileges).toContain('remote.audit');
    expect(again.body.privileges).not.toContain('remote.modify');
  });
});

describe('logging out', () => {
  it('makes the cookie useless after logout', async () => {
    const m = await manager();
    await createUser(m, 'alice', 'Audit');
    const session = await loggedIn(m, 'alice');
    expect((await withSession(m, session, 'GET', '/api/v1/remotes')).status).toBe(200);
    const logout = await withSession(m, session, 'POST', '/api/v1/auth/logout');
    expect(logout.status).toBe(204);
    expect([logout.headers['set-cookie']].flat().join()).toMatch(/debvisor_session=;/);
    expect((await withSession(m, session, 'GET', '/api/v1/remotes')).status).toBe(401);
    expect((await withSession(m, session, 'GET', '/api/v1/auth/session')).status).toBe(401);
  });

  it('ends every session of the user with logout-everywhere, and only theirs', async () => {
    const m = await manager();
    await createUser(m, 'alice', 'Audit');
    await createUser(m, 'bob', 'Audit');
    const first = await loggedIn(m, 'alice');
    const second = await loggedIn(m, 'alice');
    const bob = await loggedIn(m, 'bob');
    expect((await withSession(m, second, 'GET', '/api/v1/remotes')).status).toBe(200);
    expect((await withSession(m, first, 'POST', '/api/v1/auth/logout-everywhere')).status).toBe(
      204,
    );
    expect((await withSession(m, first, 'GET', '/api/v1/remotes')).status).toBe(401);
    expect((await withSession(m, second, 'GET', '/api/v1/remotes')).status).toBe(401);
    expect((await withSession(m, bob, 'GET', '/api/v1/remotes')).status).toBe(200);
    // A new login works again afterwards.
    expect(
      (await withSession(m, await loggedIn(m, 'alice'), 'GET', '/api/v1/remotes')).status,
    ).toBe(200);
  });
});

describe('session timeouts', () => {
  it('ends a session idle for longer than DEBVISOR_SESSION_IDLE_MINUTES', async () => {
    const m = await manager({ DEBVISOR_SESSION_IDLE_MINUTES: '1' });
    await createUser(m, 'alice', 'Audit');
    const idle = await loggedIn(m, 'alice');
    const busy = await loggedIn(m, 'alice');
    // Moved back before either was used, so that no cached authentication hides the change.
    await query(
      m,
      `UPDATE sessions SET last_seen_at = now() - interval '61 seconds' WHERE id = encode(sha256($1::bytea), 'hex')`,
      [idle.cookie.split('=')[1]],
    );
    expect((await withSession(m, idle, 'GET', '/api/v1/remotes')).status).toBe(401);
    expect((await withSession(m, busy, 'GET', '/api/v1/remotes')).status).toBe(200);
  });

  it('ends a session at its absolute end whatever the activity', async () => {
    const m = await manager();
    await createUser(m, 'alice', 'Audit');
    const ended = await loggedIn(m, 'alice');
    const running = await loggedIn(m, 'alice');
    const [row] = await query<{ hours: number }>(
      m,
      `SELECT round(extract(epoch FROM expires_at - created_at) / 3600) AS hours FROM sessions LIMIT 1`,
    );
    expect(Number(row.hours)).toBe(12);
    await query(
      m,
      `UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = encode(sha256($1::bytea), 'hex')`,
      [ended.cookie.split('=')[1]],
    );
    const answer = await withSession(m, ended, 'GET', '/api/v1/remotes');
    expect(answer.status).toBe(401);
    expect(answer.body.error.message).toContain('log in again');
    expect((await withSession(m, running, 'GET', '/api/v1/remotes')).status).toBe(200);
  });
});

describe('failed logins', () => {
  it('answers a wrong password, an unknown user, an unknown realm, a disabled and a locked account alike', async () => {
    const m = await manager();
    await createUser(m, 'alice');
    await createUser(m, 'carol');
    await createUser(m, 'dave');
    await query(
      m,
      `UPDATE users SET locked_until = now() + interval '1 hour' WHERE id = 'carol@local'`,
    );
    await query(m, `UPDATE users SET enabled = false WHERE id = 'dave@local'`);
    const answers = [
      await login(m, 'alice', 'wrong password'),
      await login(m, 'nobody', PASSWORD),
      await login(m, 'alice@nowhere', PASSWORD),
      await login(m, 'carol', PASSWORD),
      await login(m, 'dave', PASSWORD),
    ];
    for (const answer of answers) {
      expect(answer.status).toBe(401);
      expect(answer.body.error).toMatchObject({
        code: 'unauthenticated',
        message: 'invalid username or password',
      });
      expect(sessionCookie(answer)).toBeUndefined();
    }
    expect(await query(m, 'SELECT 1 FROM sessions')).toEqual([]);
  });

  it('throttles an account from one address with back-off after DEBVISOR_LOGIN_FAILURES_BEFORE_LOCK wrong passwords, and nobody else (issue 14 item 5)', async () => {
    const m = await manager({
      DEBVISOR_LOGIN_FAILURES_BEFORE_LOCK: '3',
      DEBVISOR_LOGIN_LOCK_MINUTES: '10',
      DEBVISOR_TRUSTED_PROXIES: '127.0.0.1',
    });
    await createUser(m, 'alice');
    await createUser(m, 'bob');
    const from = (address: string, username: string, password = PASSWORD) =>
      m.api(
        'POST',
        '/api/v1/auth/login',
        { username, password },
        { token: null, headers: { 'x-forwarded-for': address } },
      );
    for (let i = 0; i < 2; i++)
      expect((await from('203.0.113.7', 'alice', `wrong ${i}`)).status).toBe(401);
    // Below the threshold the right password still works, and resets the count.
    expect((await from('203.0.113.7', 'alice')).status).toBe(200);
    for (let i = 0; i < 3; i++)
      expect((await from('203.0.113.7', 'alice', `wrong ${i}`)).status).toBe(401);
    const refused = await from('203.0.113.7', 'alice');
    expect(refused.status).toBe(401);
    expect(refused.body.error.message).toBe('invalid username or password');
    // Whoever guesses from there cannot lock the owner out: elsewhere the right password works.
    expect((await from('198.51.100.9', 'alice')).status).toBe(200);
    expect((await from('203.0.113.7', 'bob')).status).toBe(200);
    const [row] = await query<{ failures: number; seconds: string }>(
      m,
      `SELECT failures, extract(epoch FROM blocked_until - now()) AS seconds FROM login_throttles WHERE source = '203.0.113.7'`,
    );
    // The refused attempt while it waits was not even counted.
    expect(row.failures).toBe(3);
    expect(Number(row.seconds)).toBeGreaterThan(0);
    expect(Number(row.seconds)).toBeLessThanOrEqual(600);
    // Each further failure doubles the wait, up to DEBVISOR_LOGIN_LOCK_MINUTES.
    await query(m, `UPDATE login_throttles SET blocked_until = now() - interval '1 second'`);
    expect((await from('203.0.113.7', 'alice', 'wrong again')).status).toBe(401);
    const [later] = await query<{ failures: number; seconds: string }>(
      m,
      `SELECT failures, extract(epoch FROM blocked_until - now()) AS seconds FROM login_throttles WHERE source = '203.0.113.7'`,
    );
    expect(later.failures).toBe(4);
    expect(Number(later.seconds)).toBeGreaterThan(Number(row.seconds));
    // Once the wait has run out, the right password works again from there too.
    await query(m, `UPDATE login_throttles SET blocked_until = now() - interval '1 second'`);
    expect((await from('203.0.113.7', 'alice')).status).toBe(200);
    expect(await query(m, 'SELECT 1 FROM login_throttles')).toEqual([]);
    expect(await query(m, 'SELECT 1 FROM users WHERE locked_until IS NOT NULL')).toEqual([]);
  });

  it('takes the client address from X-Forwarded-For only from a listed proxy (issue 14 item 5)', async () => {
    const sources = async (env: Record<string, string>) => {
      const m = await manager(env);
      await login(m, 'nobody', 'wrong');
      await m.api(
        'POST',
        '/api/v1/auth/login',
        { username: 'nobody', password: 'wrong' },
        { token: null, headers: { 'x-forwarded-for': '203.0.113.7' } },
      );
      const rows = await eventually(async () => {
        const found = await query<{ source: string }>(
          m,
          `SELECT source FROM audit_log WHERE action = 'auth.login' ORDER BY seq`,
        );
        return found.length === 2 ? found : undefined;
      });
      return rows.map((r) => r.source);
    };
    expect(await sources({})).toEqual(['127.0.0.1', '127.0.0.1']);
    expect(await sources({ DEBVISOR_TRUSTED_PROXIES: '10.0.0.0/8' })).toEqual([
      '127.0.0.1',
      '127.0.0.1',
    ]);
    expect(await sources({ DEBVISOR_TRUSTED_PROXIES: '127.0.0.1, ::1' })).toEqual([
      '127.0.0.1',
      '203.0.113.7',
    ]);
  });

  it('counts parallel wrong passwords before verifying them: of 20 at once at most DEBVISOR_LOGIN_FAILURES_BEFORE_LOCK are evaluated (issue 14 item 3)', async () => {
    const m = await manager({ DEBVISOR_LOGIN_FAILURES_BEFORE_LOCK: '5' });
    await createUser(m, 'alice');
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => login(m, 'alice', `wrong ${i}`)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(401));
    const evaluated = await eventually(async () => {
      const rows = await query<{ reason: string }>(
        m,
        `SELECT details->>'reason' AS reason FROM audit_log WHERE action = 'auth.login' AND outcome = 'failure'`,
      );
      return rows.length === 20 ? rows.filter((r) => r.reason === 'wrong password') : undefined;
    });
    expect(evaluated.length).toBeGreaterThan(0);
    expect(evaluated.length).toBeLessThanOrEqual(5);
  });

  it('answers 429 with Retry-After after DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE attempts from one address, and records the hit', async () => {
    const m = await manager({ DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE: '3' });
    await createUser(m, 'alice');
    expect((await login(m, 'alice', 'wrong')).status).toBe(401);
    expect((await login(m, 'nobody')).status).toBe(401);
    expect((await login(m, 'alice')).status).toBe(200);
    const limited = await login(m, 'alice');
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(sessionCookie(limited)).toBeUndefined();
    const rows = await eventually(async () => {
      const found = await query<{
        outcome: string;
        source: string;
        details: { limit: string; request: string };
      }>(m, `SELECT outcome, source, details FROM audit_log WHERE action = 'ratelimit.hit'`);
      return found.length > 0 ? found : undefined;
    });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      outcome: 'denied',
      source: '127.0.0.1',
      details: { limit: 'login', request: 'POST /api/v1/auth/login' },
    });
  });

  it('spends a password hash on an unknown user as on a wrong password', async () => {
    const m = await manager();
    await createUser(m, 'alice');
    const timed = async (username: string, password: string) => {
      const start = process.hrtime.bigint();
      const answer = await login(m, username, password);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      return { status: answer.status, ms };
    };
    const baseline: number[] = [];
    const unknown: number[] = [];
    const wrong: number[] = [];
    for (let i = 0; i < 10; i++) {
      // A login refused by validation (empty password): the round trip without any hashing.
      const base = await timed('alice', '');
      expect(base.status).toBe(400);
      baseline.push(base.ms);
      const a = await timed('nobody', `wrong ${i}`);
      const b = await timed('alice', `wrong ${i}`);
      expect([a.status, b.status]).toEqual([401, 401]);
      unknown.push(a.ms);
      wrong.push(b.ms);
    }
    // argon2id with 19 MiB and 2 passes takes well over 5 ms anywhere; no tight bounds on shared machines.
    expect(median(unknown)).toBeGreaterThan(median(baseline) + 5);
    expect(median(wrong)).toBeGreaterThan(median(baseline) + 5);
  });
});
