import { cleanupTempDirs } from '@debvisor/testing';
import { execFileSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PasswordHasherRepository } from '../src/users/password-hasher.repository';
import { totpCode } from '../src/sessions/tfa/totp';
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
 * Second factors end to end, through the real manager and PostgreSQL: enrolment, the two-step login
 * (with codes from our TOTP and from oathtool, as a real authenticator app computes them), replays,
 * races, recovery codes, locks, administration, and the per-group/realm/user requirement.
 */

const PASSWORD = 'correct horse battery staple';
const STEP_MS = 30_000;

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

/** A local user with PASSWORD and the Audit role on / (so that GET /api/v1/remotes is allowed to it). */
async function createUser(m: TestManager, name: string): Promise<string> {
  const id = `${name}@local`;
  await query(
    m,
    `INSERT INTO users (id, realm_id, username, password_hash, created_at) VALUES ($1, 'local', $2, $3, now())`,
    [id, name, await hasher.hash(PASSWORD)],
  );
  await query(
    m,
    `INSERT INTO acl_entries (id, path, principal_type, principal, role, propagate, created_at) VALUES (gen_random_uuid(), '/', 'user', $1, 'Audit', true, now())`,
    [id],
  );
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

function sessionOf(answer: ApiAnswer): Session {
  expect(answer.status, answer.text).toBe(200);
  return { cookie: sessionCookie(answer)!, csrf: answer.body.csrfToken };
}

function login(m: TestManager, username: string, password = PASSWORD): Promise<ApiAnswer> {
  return m.api('POST', '/api/v1/auth/login', { username, password }, { token: null });
}

/** A login whose answer is `stage`; its session (pending for `tfa`). */
async function loginAt(
  m: TestManager,
  username: string,
  stage: 'tfa' | 'setup' | 'active',
  password = PASSWORD,
): Promise<Session> {
  const answer = await login(m, username, password);
  expect(answer.status, answer.text).toBe(200);
  expect(answer.body.stage).toBe(stage);
  return sessionOf(answer);
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

function secondStep(
  m: TestManager,
  pending: Session,
  answer: { code?: string; recoveryCode?: string },
  options: { csrf?: string | false } = {},
) {
  return withSession(m, pending, 'POST', '/api/v1/auth/tfa', answer, options);
}

/** The current code as an authenticator app computes it (OATH Toolkit). */
function oathtool(secret: string): string {
  return execFileSync('oathtool', ['--totp', '-b', '--', secret], {
    timeout: 10_000,
    encoding: 'utf8',
  }).trim();
}

/** The code `steps` steps from now, from our implementation. */
function code(secret: string, steps = 0): string {
  return totpCode(secret, new Date(Date.now() + steps * STEP_MS));
}

/** A well-formed code that is valid in none of the steps around now. */
function wrongCode(secret: string, n = 0): string {
  const valid = new Set([-1, 0, 1].map((s) => code(secret, s)));
  for (let i = n; ; i++) {
    const candidate = String((123_457 + i * 7_919) % 1_000_000).padStart(6, '0');
    if (!valid.has(candidate)) return candidate;
  }
}

/**
 * Waits until at least `marginSeconds` of the current 30-second step remain, so that a test using
 * the codes of the previous, current and next step does not cross a step boundary meanwhile.
 */
async function awayFromStepEnd(marginSeconds = 10): Promise<void> {
  const left = STEP_MS - (Date.now() % STEP_MS);
  if (left < marginSeconds * 1000) await new Promise((r) => setTimeout(r, left + 200));
}

interface Enrolled {
  readonly id: string;
  readonly secret: string;
  readonly recoveryCodes: string[];
}

/** Enrols and confirms a device with the code of the previous step (leaving the current one unused). */
async function enrolConfirmed(m: TestManager, session: Session, name = 'phone'): Promise<Enrolled> {
  const enrolled = await withSession(m, session, 'POST', '/api/v1/access/tfa/totp', {
    name,
    password: PASSWORD,
  });
  expect(enrolled.status, enrolled.text).toBe(201);
  const { id, secret } = enrolled.body;
  const confirmed = await withSession(m, session, 'POST', `/api/v1/access/tfa/totp/${id}/confirm`, {
    code: code(secret, -1),
  });
  expect(confirmed.status, confirmed.text).toBe(200);
  return { id, secret, recoveryCodes: confirmed.body.recoveryCodes ?? [] };
}

/** A user with a confirmed device, logged out again. */
async function userWithDevice(m: TestManager, name: string): Promise<Enrolled & { user: string }> {
  const user = await createUser(m, name);
  await awayFromStepEnd();
  const session = await loginAt(m, name, 'active');
  const enrolled = await enrolConfirmed(m, session);
  expect((await withSession(m, session, 'POST', '/api/v1/auth/logout')).status).toBe(204);
  return { ...enrolled, user };
}

async function userRow(m: TestManager, id: string) {
  const [row] = await query<{
    failed_logins: number;
    locked: boolean;
    totp_locked: boolean;
    tfa_failures: number;
    tfa_locked_minutes: string | null;
  }>(
    m,
    `SELECT failed_logins, locked_until > now() AS locked, totp_locked, tfa_failures,
            round(extract(epoch FROM tfa_locked_until - now()) / 60) AS tfa_locked_minutes
     FROM users WHERE id = $1`,
    [id],
  );
  return row;
}

describe('enrolling TOTP and logging in with it', () => {
  it('enrols a device, confirms it, and then logs in in two steps with a code from oathtool', async () => {
    const m = await manager();
    await createUser(m, 'alice');
    await awayFromStepEnd();
    const session = await loginAt(m, 'alice', 'active');

    const enrolled = await withSession(m, session, 'POST', '/api/v1/access/tfa/totp', {
      name: 'phone',
      password: PASSWORD,
    });
    expect(enrolled.status, enrolled.text).toBe(201);
    const { id, secret, uri, qrCode } = enrolled.body;
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(uri).toBe(
      `otpauth://totp/DebVisor:alice%40local?secret=${secret}&issuer=DebVisor&algorithm=SHA1&digits=6&period=30`,
    );
    expect(qrCode).toMatch(/^data:image\/png;base64,iVBORw0KGgo/);
    const [stored] = await query<{ sealed_secret: string; confirmed: boolean }>(
      m,
      'SELECT sealed_secret, confirmed FROM tfa_totp_devices WHERE id = $1',
      [id],
    );
    expect(stored.confirmed).toBe(false);
    expect(stored.sealed_secret).toMatch(/^v1\./);
    expect(stored.sealed_secret).not.toContain(secret);

    const before = await withSession(m, session, 'GET', '/api/v1/access/tfa');
    expect(before.body).toEqual({
      devices: [{ id, name: 'phone', confirmed: false, createdAt: expect.any(String) }],
      webauthn: [],
      recoveryCodesLeft: 0,
      totpLocked: false,
      lockedUntil: null,
    });

    // Our code and the authenticator app's agree.
    expect(oathtool(secret)).toBe(code(secret));
    const confirmed = await withSession(
      m,
      session,
      'POST',
      `/api/v1/access/tfa/totp/${id}/confirm`,
      { code: code(secret, -1) },
    );
    expect(confirmed.status, confirmed.text).toBe(200);
    expect(confirmed.body).toMatchObject({ id, confirmed: true, stage: 'active' });
    const recoveryCodes: string[] = confirmed.body.recoveryCodes;
    expect(recoveryCodes).toHaveLength(10);
    expect(new Set(recoveryCodes).size).toBe(10);
    const hashes = await query<{ code_hash: string }>(
      m,
      `SELECT code_hash FROM tfa_recovery_codes WHERE user_id = 'alice@local'`,
    );
    expect(hashes).toHaveLength(10);
    expect(JSON.stringify(hashes)).not.toContain(recoveryCodes[0].replaceAll('-', ''));
    expect((await withSession(m, session, 'GET', '/api/v1/access/tfa')).body).toMatchObject({
      devices: [{ id, confirmed: true }],
      recoveryCodesLeft: 10,
    });
    expect((await withSession(m, session, 'POST', '/api/v1/auth/logout')).status).toBe(204);

    const first = await login(m, 'alice');
    expect(first.body).toMatchObject({
      stage: 'tfa',
      user: 'alice@local',
      methods: ['totp', 'recovery'],
    });
    const pending = sessionOf(first);
    // The half-authenticated session is no session for the API.
    // The pending login may learn its stage and methods (after a reload or SSO), nothing else.
    const waiting = await withSession(m, pending, 'GET', '/api/v1/auth/session');
    expect(waiting.status).toBe(200);
    expect(waiting.body).toMatchObject({
      stage: 'tfa',
      methods: ['totp', 'recovery'],
      privileges: [],
      groups: [],
    });
    expect((await withSession(m, pending, 'GET', '/api/v1/remotes')).status).toBe(401);

    const second = await secondStep(m, pending, { code: oathtool(secret) });
    expect(second.status, second.text).toBe(200);
    expect(second.body).toMatchObject({ stage: 'active', user: 'alice@local', methods: [] });
    const active = sessionOf(second);
    expect(active.cookie).not.toBe(pending.cookie);
    expect((await withSession(m, active, 'GET', '/api/v1/auth/session')).body).toMatchObject({
      stage: 'active',
      user: 'alice@local',
    });
    expect((await withSession(m, active, 'GET', '/api/v1/remotes')).status).toBe(200);
    // The pending session is gone: it cannot complete a second time.
    expect((await secondStep(m, pending, { code: code(secret, 1) })).status).toBe(401);
    const audit = await eventually(async () => {
      const rows = await query<{ action: string; outcome: string; target: string }>(
        m,
        `SELECT action, outcome, target FROM audit_log WHERE action LIKE 'access.tfa.%' AND outcome <> 'attempt' ORDER BY seq`,
      );
      return rows.length === 2 ? rows : undefined;
    });
    expect(audit).toEqual([
      { action: 'access.tfa.enrol', outcome: 'success', target: '/access/tfa/totp' },
      { action: 'access.tfa.confirm', outcome: 'success', target: `/access/tfa/totp/${id}` },
    ]);
  });

  it('refuses a code in a new login that was already used in its step (replay)', async () => {
    const m = await manager();
    const { secret } = await userWithDevice(m, 'alice');
    const used = oathtool(secret);
    expect((await secondStep(m, await loginAt(m, 'alice', 'tfa'), { code: used })).status).toBe(
      200,
    );
    const replay = await secondStep(m, await loginAt(m, 'alice', 'tfa'), { code: used });
    expect(replay.status).toBe(401);
    expect(replay.body.error.message).toBe('invalid or already used code');
    expect(sessionCookie(replay)).toBeUndefined();
    // The code of the next step is still good.
    expect(
      (await secondStep(m, await loginAt(m, 'alice', 'tfa'), { code: code(secret, 1) })).status,
    ).toBe(200);
  });

  it('accepts exactly one of two parallel second steps with one code', async () => {
    const m = await manager();
    const { secret } = await userWithDevice(m, 'alice');
    // The same pending login twice at once.
    const pending = await loginAt(m, 'alice', 'tfa');
    const current = code(secret);
    const same = await Promise.all([
      secondStep(m, pending, { code: current }),
      secondStep(m, pending, { code: current }),
    ]);
    expect(same.map((a) => a.status).sort()).toEqual([200, 401]);
    // Two pending logins at once, with the code of the next step.
    const [a, b] = [await loginAt(m, 'alice', 'tfa'), await loginAt(m, 'alice', 'tfa')];
    const next = code(secret, 1);
    const two = await Promise.all([
      secondStep(m, a, { code: next }),
      secondStep(m, b, { code: next }),
    ]);
    expect(two.map((x) => x.status).sort()).toEqual([200, 401]);
    expect((await query(m, `SELECT 1 FROM sessions WHERE stage = 'active'`)).length).toBe(2);
  });

  it('accepts a recovery code once (in any case, with or without dashes), not twice', async () => {
    const m = await manager();
    const { recoveryCodes } = await userWithDevice(m, 'alice');
    const [recovery] = recoveryCodes;
    const first = await secondStep(m, await loginAt(m, 'alice', 'tfa'), {
      recoveryCode: recovery.replaceAll('-', '').toUpperCase(),
    });
    expect(first.status, first.text).toBe(200);
    const active = sessionOf(first);
    expect((await withSession(m, active, 'GET', '/api/v1/access/tfa')).body.recoveryCodesLeft).toBe(
      9,
    );
    const again = await secondStep(m, await loginAt(m, 'alice', 'tfa'), { recoveryCode: recovery });
    expect(again.status).toBe(401);
    expect(again.body.error.message).toBe('invalid or already used code');
    expect(
      (await secondStep(m, await loginAt(m, 'alice', 'tfa'), { recoveryCode: recoveryCodes[1] }))
        .status,
    ).toBe(200);
  });

  it('logs in without a second step while the only device is unconfirmed', async () => {
    const m = await manager();
    await createUser(m, 'alice');
    const session = await loginAt(m, 'alice', 'active');
    expect(
      (
        await withSession(m, session, 'POST', '/api/v1/access/tfa/totp', {
          name: 'phone',
          password: PASSWORD,
        })
      ).status,
    ).toBe(201);
    await loginAt(m, 'alice', 'active');
  });
});

describe('second-factor locks', () => {
  it('locks TOTP after 5 wrong codes, refusing even a correct one, until a recovery code unlocks it', async () => {
    const m = await manager();
    const { secret, recoveryCodes, user } = await userWithDevice(m, 'alice');
    const pending = await loginAt(m, 'alice', 'tfa');
    for (let i = 0; i < 5; i++)
      expect((await secondStep(m, pending, { code: wrongCode(secret, i) })).status).toBe(401);
    expect(await userRow(m, user)).toMatchObject({
      totp_locked: true,
      tfa_failures: 5,
      tfa_locked_minutes: null,
    });
    const refused = await secondStep(m, pending, { code: oathtool(secret) });
    expect(refused.status).toBe(401);
    expect(refused.body.error.message).toBe('invalid or already used code');
    expect(
      (await secondStep(m, await loginAt(m, 'alice', 'tfa'), { code: code(secret) })).status,
    ).toBe(401);

    expect((await secondStep(m, pending, { recoveryCode: recoveryCodes[0] })).status).toBe(200);
    expect(await userRow(m, user)).toMatchObject({ totp_locked: false, tfa_failures: 0 });
    expect(
      (await secondStep(m, await loginAt(m, 'alice', 'tfa'), { code: code(secret) })).status,
    ).toBe(200);
  });

  it('counts parallel wrong codes before checking them: of 20 at once at most 5 are evaluated (issue 14 item 3)', async () => {
    const m = await manager();
    const { secret, user } = await userWithDevice(m, 'alice');
    const pending = await loginAt(m, 'alice', 'tfa');
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => secondStep(m, pending, { code: wrongCode(secret, i) })),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(401));
    const evaluated = await eventually(async () => {
      const rows = await query<{ reason: string }>(
        m,
        `SELECT details->>'reason' AS reason FROM audit_log WHERE action = 'auth.login' AND details->>'method' = 'tfa' AND outcome = 'failure'`,
      );
      return rows.length === 20
        ? rows.filter((r) => r.reason === 'wrong or replayed TOTP code')
        : undefined;
    });
    expect(evaluated.length).toBeGreaterThan(0);
    expect(evaluated.length).toBeLessThanOrEqual(5);
    expect(await userRow(m, user)).toMatchObject({ totp_locked: true });
  });

  it('refuses both methods for a while after 10 wrong answers', async () => {
    const m = await manager();
    const { secret, recoveryCodes, user } = await userWithDevice(m, 'alice');
    const pending = await loginAt(m, 'alice', 'tfa');
    for (let i = 0; i < 5; i++)
      expect((await secondStep(m, pending, { code: wrongCode(secret, i) })).status).toBe(401);
    for (let i = 0; i < 5; i++)
      expect(
        (await secondStep(m, pending, { recoveryCode: `aaaa-aaaa-aaaa-aaaa-aaa${'23456'[i]}` }))
          .status,
      ).toBe(401);
    expect(await userRow(m, user)).toMatchObject({ tfa_failures: 10, tfa_locked_minutes: '15' });

    const byRecovery = await secondStep(m, pending, { recoveryCode: recoveryCodes[0] });
    expect(byRecovery.status).toBe(401);
    expect(byRecovery.body.error.message).toMatch(
      /^too many failed attempts: the second factor is locked until /,
    );
    expect(
      (await secondStep(m, await loginAt(m, 'alice', 'tfa'), { code: oathtool(secret) })).status,
    ).toBe(401);
    // The refused recovery code was not used up.
    expect((await query(m, 'SELECT 1 FROM tfa_recovery_codes WHERE used_at IS NULL')).length).toBe(
      10,
    );

    // Once the time has run out, the recovery code works (and unlocks TOTP).
    await query(
      m,
      `UPDATE users SET tfa_locked_until = now() - interval '1 second' WHERE id = $1`,
      [user],
    );
    expect(
      (await secondStep(m, await loginAt(m, 'alice', 'tfa'), { recoveryCode: recoveryCodes[0] }))
        .status,
    ).toBe(200);
    expect(await userRow(m, user)).toMatchObject({
      totp_locked: false,
      tfa_failures: 0,
      tfa_locked_minutes: null,
    });
  });

  it('refuses the second step without the pending cookie, with an active session, or without the CSRF token', async () => {
    const m = await manager();
    const { secret, user } = await userWithDevice(m, 'alice');
    await createUser(m, 'bob');
    const pending = await loginAt(m, 'alice', 'tfa');
    const other = await loginAt(m, 'alice', 'tfa');
    const current = code(secret);

    const noCookie = await m.api(
      'POST',
      '/api/v1/auth/tfa',
      { code: current },
      { token: null, headers: { 'x-csrf-token': pending.csrf } },
    );
    expect(noCookie.status).toBe(401);
    expect(noCookie.body.error.message).toMatch(/^no login is waiting for a second factor/);
    const active = await secondStep(m, await loginAt(m, 'bob', 'active'), { code: current });
    expect(active.status).toBe(401);
    expect(active.body.error.message).toMatch(/^no login is waiting for a second factor/);
    const withToken = await m.api('POST', '/api/v1/auth/tfa', { code: current });
    expect(withToken.status).toBe(401);
    const noCsrf = await secondStep(m, pending, { code: current }, { csrf: false });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.body.error.message).toContain('X-CSRF-Token');
    expect((await secondStep(m, pending, { code: current }, { csrf: other.csrf })).status).toBe(
      403,
    );
    // None of these used the code or counted as a wrong answer.
    expect(await userRow(m, user)).toMatchObject({ tfa_failures: 0 });
    expect((await secondStep(m, pending, { code: current })).status).toBe(200);
  });
  it('refuses the second step of a login voided meanwhile (sessions ended, user disabled)', async () => {
    const m = await manager();
    const { secret, user } = await userWithDevice(m, 'alice');
    const voided = await loginAt(m, 'alice', 'tfa');
    // What ending every session does, as seen by a login racing it: its row survives, dated before the end.
    await query(
      m,
      `UPDATE users SET sessions_valid_after = now() + interval '1 second' WHERE id = $1`,
      [user],
    );
    const refused = await secondStep(m, voided, { code: code(secret) });
    expect(refused.status).toBe(401);
    expect(refused.body.error.message).toMatch(/^no login is waiting for a second factor/);
    await query(
      m,
      `UPDATE users SET sessions_valid_after = now() - interval '1 second' WHERE id = $1`,
      [user],
    );
    const disabled = await loginAt(m, 'alice', 'tfa');
    await query(m, 'UPDATE users SET enabled = false WHERE id = $1', [user]);
    expect((await secondStep(m, disabled, { code: code(secret) })).status).toBe(401);
    // Neither used the code.
    await query(m, 'UPDATE users SET enabled = true WHERE id = $1', [user]);
    expect((await secondStep(m, disabled, { code: code(secret) })).status).toBe(200);
  });
});

describe('managing own second factors', () => {
  it('needs the current password to enrol, counting a wrong one towards the account lock, and a login session', async () => {
    const m = await manager();
    const user = await createUser(m, 'alice');
    const session = await loginAt(m, 'alice', 'active');
    const missing = await withSession(m, session, 'POST', '/api/v1/access/tfa/totp', {
      name: 'phone',
    });
    expect(missing.status).toBe(400);
    expect(missing.body.error.message).toMatch(/^password: /);
    const wrong = await withSession(m, session, 'POST', '/api/v1/access/tfa/totp', {
      name: 'phone',
      password: 'guess',
    });
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.message).toBe(
      'wrong password: this change needs your current password',
    );
    expect(wrong.text).not.toContain('guess');
    expect(await userRow(m, user)).toMatchObject({ failed_logins: 1 });
    // An API token cannot act on its owner's second factors (admin@local's bootstrap token here).
    const byToken = await m.api('POST', '/api/v1/access/tfa/totp', {
      name: 'phone',
      password: PASSWORD,
    });
    expect(byToken.status).toBe(403);
    expect(await query(m, 'SELECT 1 FROM tfa_totp_devices')).toEqual([]);
    const audit = await eventually(async () => {
      const rows = await query<{
        outcome: string;
        principal: string;
        details: Record<string, unknown>;
      }>(
        m,
        `SELECT outcome, principal, details FROM audit_log WHERE action = 'access.tfa.enrol' AND outcome = 'failure'`,
      );
      return rows.length === 2 ? rows : undefined;
    });
    expect(JSON.stringify(audit)).not.toContain('guess');
    expect(JSON.stringify(audit)).not.toContain(PASSWORD);
  });

  it('refuses a second device of the same name (409), a wrong confirmation code, and confirming twice', async () => {
    const m = await manager();
    await createUser(m, 'alice');
    await awayFromStepEnd();
    const session = await loginAt(m, 'alice', 'active');
    const phone = await enrolConfirmed(m, session, 'phone');
    expect(phone.recoveryCodes).toHaveLength(10);
    const clash = await withSession(m, session, 'POST', '/api/v1/access/tfa/totp', {
      name: 'phone',
      password: PASSWORD,
    });
    expect(clash.status).toBe(409);

    const tablet = await withSession(m, session, 'POST', '/api/v1/access/tfa/totp', {
      name: 'tablet',
      password: PASSWORD,
    });
    expect(tablet.status).toBe(201);
    const path = `/api/v1/access/tfa/totp/${tablet.body.id}/confirm`;
    const wrong = await withSession(m, session, 'POST', path, {
      code: wrongCode(tablet.body.secret),
    });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.message).toMatch(/^code: wrong code/);
    // Another device's code does not confirm this one.
    expect((await withSession(m, session, 'POST', path, { code: code(phone.secret) })).status).toBe(
      400,
    );
    const ok = await withSession(m, session, 'POST', path, { code: code(tablet.body.secret) });
    expect(ok.status, ok.text).toBe(200);
    // Not the first factor: no new recovery codes.
    expect(ok.body).toEqual({
      id: tablet.body.id,
      confirmed: true,
      recoveryCodes: null,
      stage: 'active',
    });
    expect(
      (await withSession(m, session, 'POST', path, { code: code(tablet.body.secret, 1) })).status,
    ).toBe(409);
    expect(
      (
        await withSession(
          m,
          session,
          'POST',
          '/api/v1/access/tfa/totp/0b7e6c2a-1d3f-4e5a-9b8c-7d6e5f4a3b2c/confirm',
          { code: '123456' },
        )
      ).status,
    ).toBe(404);
    expect((await withSession(m, session, 'GET', '/api/v1/access/tfa')).body).toMatchObject({
      devices: [
        { name: 'phone', confirmed: true },
        { name: 'tablet', confirmed: true },
      ],
      recoveryCodesLeft: 10,
    });
    // Either device logs in, and the recovery codes of the first one still work.
    const pending = await loginAt(m, 'alice', 'tfa');
    expect((await secondStep(m, pending, { code: code(tablet.body.secret, 1) })).status).toBe(200);
    expect(
      (
        await secondStep(m, await loginAt(m, 'alice', 'tfa'), {
          recoveryCode: phone.recoveryCodes[0],
        })
      ).status,
    ).toBe(200);
  });

  it('removes a device only with the password; without a confirmed device left, logins need no second step', async () => {
    const m = await manager();
    const { id, recoveryCodes, user } = await userWithDevice(m, 'alice');
    await createUser(m, 'bob');
    const session = sessionOf(
      await secondStep(m, await loginAt(m, 'alice', 'tfa'), { recoveryCode: recoveryCodes[0] }),
    );
    // An unconfirmed device does not keep the second factor on.
    expect(
      (
        await withSession(m, session, 'POST', '/api/v1/access/tfa/totp', {
          name: 'spare',
          password: PASSWORD,
        })
      ).status,
    ).toBe(201);
    const path = `/api/v1/access/tfa/totp/${id}`;
    expect((await withSession(m, session, 'DELETE', path, { password: 'guess' })).status).toBe(403);
    expect((await withSession(m, session, 'DELETE', path)).status).toBe(400);
    expect(
      (await withSession(m, session, 'DELETE', path, { password: PASSWORD }, { csrf: false }))
        .status,
    ).toBe(403);
    // Another user cannot remove it, even knowing its id.
    expect(
      (
        await withSession(m, await loginAt(m, 'bob', 'active'), 'DELETE', path, {
          password: PASSWORD,
        })
      ).status,
    ).toBe(404);
    expect((await query(m, 'SELECT 1 FROM tfa_totp_devices WHERE id = $1', [id])).length).toBe(1);

    expect((await withSession(m, session, 'DELETE', path, { password: PASSWORD })).status).toBe(
      204,
    );
    expect((await withSession(m, session, 'DELETE', path, { password: PASSWORD })).status).toBe(
      404,
    );
    expect((await withSession(m, session, 'GET', '/api/v1/access/tfa')).body).toMatchObject({
      devices: [{ name: 'spare', confirmed: false }],
      recoveryCodesLeft: 0,
    });
    expect(await query(m, 'SELECT 1 FROM tfa_recovery_codes WHERE user_id = $1', [user])).toEqual(
      [],
    );
    await loginAt(m, 'alice', 'active');
  });

  it('replaces the recovery codes on request: the old ones stop working, and none without a device', async () => {
    const m = await manager();
    const { recoveryCodes } = await userWithDevice(m, 'alice');
    const session = sessionOf(
      await secondStep(m, await loginAt(m, 'alice', 'tfa'), { recoveryCode: recoveryCodes[0] }),
    );
    expect(
      (await withSession(m, session, 'POST', '/api/v1/access/tfa/recovery', { password: 'guess' }))
        .status,
    ).toBe(403);
    const fresh = await withSession(m, session, 'POST', '/api/v1/access/tfa/recovery', {
      password: PASSWORD,
    });
    expect(fresh.status, fresh.text).toBe(200);
    expect(fresh.body.recoveryCodes).toHaveLength(10);
    expect(fresh.body.recoveryCodes).not.toContain(recoveryCodes[1]);
    expect(
      (await withSession(m, session, 'GET', '/api/v1/access/tfa')).body.recoveryCodesLeft,
    ).toBe(10);
    expect(
      (await secondStep(m, await loginAt(m, 'alice', 'tfa'), { recoveryCode: recoveryCodes[1] }))
        .status,
    ).toBe(401);
    expect(
      (
        await secondStep(m, await loginAt(m, 'alice', 'tfa'), {
          recoveryCode: fresh.body.recoveryCodes[0],
        })
      ).status,
    ).toBe(200);

    await createUser(m, 'bob');
    const bob = await loginAt(m, 'bob', 'active');
    const none = await withSession(m, bob, 'POST', '/api/v1/access/tfa/recovery', {
      password: PASSWORD,
    });
    expect(none.status).toBe(409);
    expect(await query(m, `SELECT 1 FROM tfa_recovery_codes WHERE user_id = 'bob@local'`)).toEqual(
      [],
    );
  });
});

describe('administration', () => {
  it('unlocks a user’s password and second-factor locks with access.modify, audited', async () => {
    const m = await manager();
    const { secret, user } = await userWithDevice(m, 'alice');
    await createUser(m, 'bob');
    await query(
      m,
      `UPDATE users SET failed_logins = 5, locked_until = now() + interval '1 hour', totp_locked = true, tfa_failures = 10,
         tfa_locked_until = now() + interval '1 hour' WHERE id = $1`,
      [user],
    );
    // A source made to wait by wrong passwords waits no more after the unlock either.
    await query(
      m,
      `INSERT INTO login_throttles (account, source, failures, blocked_until, updated_at)
       VALUES ('local:alice', '127.0.0.1', 9, now() + interval '1 hour', now())`,
    );
    expect((await login(m, 'alice')).status).toBe(401);
    // admin@local with the password the first start printed.
    const adminPassword = /administrator: admin@local password: (\S+)/.exec(m.operatorOutput())![1];
    const admin = await loginAt(m, 'admin', 'active', adminPassword);
    const path = '/api/v1/access/users/alice@local/tfa/unlock';

    // Bob (Audit on /) may not; unknown and malformed users are refused.
    expect((await withSession(m, await loginAt(m, 'bob', 'active'), 'POST', path)).status).toBe(
      403,
    );
    expect(
      (await withSession(m, admin, 'POST', '/api/v1/access/users/nobody@local/tfa/unlock')).status,
    ).toBe(404);
    expect(
      (await withSession(m, admin, 'POST', '/api/v1/access/users/alice/tfa/unlock')).status,
    ).toBe(400);
    expect((await withSession(m, admin, 'POST', path, undefined, { csrf: false })).status).toBe(
      403,
    );
    expect(await userRow(m, user)).toMatchObject({ locked: true, totp_locked: true });

    expect((await withSession(m, admin, 'POST', path)).status).toBe(204);
    expect(await query(m, 'SELECT 1 FROM login_throttles')).toEqual([]);
    expect(await userRow(m, user)).toEqual({
      failed_logins: 0,
      locked: null,
      totp_locked: false,
      tfa_failures: 0,
      tfa_locked_minutes: null,
    });
    expect(
      (await secondStep(m, await loginAt(m, 'alice', 'tfa'), { code: oathtool(secret) })).status,
    ).toBe(200);
    const audit = await eventually(async () => {
      const rows = await query<{ principal: string; outcome: string; target: string }>(
        m,
        `SELECT principal, outcome, target FROM audit_log WHERE action = 'access.user.unlock' AND outcome <> 'attempt' ORDER BY seq`,
      );
      return rows.some((r) => r.outcome === 'success') ? rows : undefined;
    });
    expect(audit).toContainEqual({
      principal: 'admin@local',
      outcome: 'success',
      target: '/access/users/alice%40local',
    });
    expect(audit).toContainEqual({
      principal: 'admin@local',
      outcome: 'failure',
      target: '/access/users/nobody%40local',
    });
  });

  it('removes every second factor of a user (a lost phone), so that the next login needs none', async () => {
    const m = await manager();
    const { user } = await userWithDevice(m, 'alice');
    await query(m, 'UPDATE users SET totp_locked = true WHERE id = $1', [user]);
    expect((await m.api('DELETE', '/api/v1/access/users/nobody@local/tfa')).status).toBe(404);
    expect((await m.api('DELETE', `/api/v1/access/users/${user}/tfa`)).status).toBe(204);
    expect(await query(m, 'SELECT 1 FROM tfa_totp_devices WHERE user_id = $1', [user])).toEqual([]);
    expect(await query(m, 'SELECT 1 FROM tfa_recovery_codes WHERE user_id = $1', [user])).toEqual(
      [],
    );
    expect(await userRow(m, user)).toMatchObject({ totp_locked: false });
    await loginAt(m, 'alice', 'active');
    const audit = await eventually(async () => {
      const rows = await query<{ target: string }>(
        m,
        `SELECT target FROM audit_log WHERE action = 'access.tfa.remove' AND outcome = 'success'`,
      );
      return rows.length > 0 ? rows : undefined;
    });
    expect(audit).toEqual([{ target: '/access/users/alice%40local' }]);
  });
});

describe('requiring a second factor', () => {
  const rules = {
    'a group': async (m: TestManager, user: string) => {
      await query(
        m,
        `INSERT INTO groups (id, require_tfa, created_at) VALUES ('operators', true, now())`,
      );
      await query(
        m,
        `INSERT INTO group_members (group_id, user_id, source) VALUES ('operators', $1, 'local')`,
        [user],
      );
    },
    'the realm': async (m: TestManager) => {
      await query(m, `UPDATE realms SET require_tfa = true WHERE id = 'local'`);
    },
    'the user': async (m: TestManager, user: string) => {
      await query(m, 'UPDATE users SET require_tfa = true WHERE id = $1', [user]);
    },
  };

  it.each(Object.keys(rules) as (keyof typeof rules)[])(
    'lets a user whom %s requires a second factor only enrol one until it is confirmed',
    async (rule) => {
      const m = await manager();
      const user = await createUser(m, 'alice');
      await createUser(m, 'bob');
      await rules[rule](m, user);
      await awayFromStepEnd();
      const setup = await loginAt(m, 'alice', 'setup');
      expect((await withSession(m, setup, 'GET', '/api/v1/remotes')).status).toBe(403);
      expect((await withSession(m, setup, 'GET', '/api/v1/auth/session')).body).toMatchObject({
        stage: 'setup',
      });
      expect(
        (await withSession(m, setup, 'POST', '/api/v1/access/tfa/recovery', { password: PASSWORD }))
          .status,
      ).toBe(403);
      expect((await withSession(m, setup, 'GET', '/api/v1/access/tfa')).status).toBe(200);

      // A password alone does not enrol the first factor of such a user: an administrator's
      // one-time enrolment code does (issue 14 item 11).
      const alone = await withSession(m, setup, 'POST', '/api/v1/access/tfa/totp', {
        name: 'phone',
        password: PASSWORD,
      });
      expect(alone.status).toBe(403);
      expect(alone.body.error.message).toMatch(/enrolment code/);
      const issued = await m.api('POST', `/api/v1/access/users/${user}/tfa/enrolment-code`);
      expect(issued.status, issued.text).toBe(201);
      expect(issued.headers['cache-control']).toBe('no-store');
      expect(
        await query(m, 'SELECT 1 FROM tfa_enrolment_codes WHERE code_hash = $1', [
          issued.body.code,
        ]),
      ).toEqual([]);
      const guessed = await withSession(m, setup, 'POST', '/api/v1/access/tfa/totp', {
        name: 'phone',
        password: PASSWORD,
        enrolmentCode: 'x'.repeat(issued.body.code.length),
      });
      expect(guessed.status).toBe(403);
      const enrolled = await withSession(m, setup, 'POST', '/api/v1/access/tfa/totp', {
        name: 'phone',
        password: PASSWORD,
        enrolmentCode: issued.body.code,
      });
      expect(enrolled.status, enrolled.text).toBe(201);
      // Used once.
      expect(
        (
          await withSession(m, setup, 'POST', '/api/v1/access/tfa/totp', {
            name: 'tablet',
            password: PASSWORD,
            enrolmentCode: issued.body.code,
          })
        ).status,
      ).toBe(403);
      // Still only enrolment until the device is confirmed.
      expect((await withSession(m, setup, 'GET', '/api/v1/remotes')).status).toBe(403);
      const confirmed = await withSession(
        m,
        setup,
        'POST',
        `/api/v1/access/tfa/totp/${enrolled.body.id}/confirm`,
        { code: code(enrolled.body.secret, -1) },
      );
      expect(confirmed.status, confirmed.text).toBe(200);
      expect(confirmed.body).toMatchObject({ confirmed: true, stage: 'active' });
      expect(confirmed.body.recoveryCodes).toHaveLength(10);
      expect((await withSession(m, setup, 'GET', '/api/v1/remotes')).status).toBe(200);
      expect((await withSession(m, setup, 'GET', '/api/v1/auth/session')).body).toMatchObject({
        stage: 'active',
      });

      // From now on a login takes the second step; someone the rule does not cover logs in directly.
      const pending = await loginAt(m, 'alice', 'tfa');
      expect((await secondStep(m, pending, { code: oathtool(enrolled.body.secret) })).status).toBe(
        200,
      );
      if (rule !== 'the realm') await loginAt(m, 'bob', 'active');
    },
  );

  it('lets the password alone enrol it with DEBVISOR_TFA_ENROLMENT=password (issue 14 item 11)', async () => {
    const m = await manager({ DEBVISOR_TFA_ENROLMENT: 'password' });
    const user = await createUser(m, 'alice');
    await query(m, 'UPDATE users SET require_tfa = true WHERE id = $1', [user]);
    const setup = await loginAt(m, 'alice', 'setup');
    const enrolled = await withSession(m, setup, 'POST', '/api/v1/access/tfa/totp', {
      name: 'phone',
      password: PASSWORD,
    });
    expect(enrolled.status, enrolled.text).toBe(201);
  });

  it('issues enrolment codes only to holders of access.modify, for existing users', async () => {
    const m = await manager();
    const user = await createUser(m, 'alice');
    const session = await loginAt(m, 'alice', 'active');
    expect(
      (await withSession(m, session, 'POST', `/api/v1/access/users/${user}/tfa/enrolment-code`))
        .status,
    ).toBe(403);
    expect(
      (await m.api('POST', '/api/v1/access/users/nobody@local/tfa/enrolment-code')).status,
    ).toBe(404);
  });
});
