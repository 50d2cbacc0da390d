import { cleanupTempDirs, startOidcProvider, type OidcProviderInstance } from '@debvisor/testing';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startTestDatabases,
  startTestManager,
  type ApiAnswer,
  type Json,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

/**
 * Logging in through an OpenID Connect realm: the real manager and a real OpenID provider
 * (node-oidc-provider over HTTPS with its own CA), driven like a browser — the attempt cookie, the
 * provider's login and consent pages, the callback, the session and the groups from the claims.
 */

const CLIENT_ID = 'debvisor-manager';
const CLIENT_SECRET = 'oidc-client-secret-for-the-manager';
const CALLBACK_PATH = '/api/v1/auth/oidc/callback';

let dbs: TestDatabases;
let m: TestManager;
let provider: OidcProviderInstance;

beforeAll(async () => {
  dbs = await startTestDatabases();
  // The manager's callback URL is known once it listens; the provider starts after it with that URL registered.
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    env: { DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE: '1000' },
  });
  provider = await startOidcProvider({
    clients: [
      {
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        redirectUris: [`${m.url}${CALLBACK_PATH}`],
      },
    ],
    accounts: {
      alice: {
        sub: 'sub-alice',
        claims: {
          preferred_username: 'alice',
          name: 'Alice Liddell',
          email: 'alice@example.test',
          email_verified: true,
          groups: ['debvisor-operator', 'staff'],
        },
      },
      bob: { sub: 'sub-bob', claims: { preferred_username: 'bob', groups: ['debvisor-auditor'] } },
      carol: { sub: 'sub-carol', claims: { preferred_username: 'carol', groups: [] } },
      dave: { sub: 'sub-dave', claims: { preferred_username: 'dave', groups: [] } },
    },
  });
  await createRealm(m, 'sso');
}, 120_000);

afterAll(async () => {
  await provider?.stop();
  await m?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

async function createRealm(
  target: TestManager,
  id: string,
  extra: Record<string, unknown> = {},
): Promise<void> {
  const created = await target.api('POST', '/api/v1/access/realms', {
    id,
    type: 'openid',
    settings: {
      issuerUrl: provider.issuer,
      clientId: CLIENT_ID,
      caPem: provider.caPem,
      scopes: ['openid', 'profile', 'email', 'groups'],
    },
    secret: CLIENT_SECRET,
    groupMappings: [{ pattern: 'debvisor-*' }],
    ...extra,
  });
  expect(created.status, created.text).toBe(201);
}

async function query<T = Json>(sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: m.databaseUrl });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

function setCookies(answer: ApiAnswer): string[] {
  const header = answer.headers['set-cookie'];
  return Array.isArray(header) ? header : header ? [header] : [];
}

/** The Set-Cookie line of `name`, and its `name=value` pair. */
function cookieOf(answer: ApiAnswer, name: string): { line: string; pair: string } | undefined {
  const line = setCookies(answer).find((l) => l.startsWith(`${name}=`));
  return line ? { line, pair: line.split(';')[0]! } : undefined;
}

interface Started {
  authorizationUrl: URL;
  /** `debvisor_oidc=<sealed attempt>` */
  attempt: string;
  answer: ApiAnswer;
}

async function beginLogin(realm = 'sso', target = m): Promise<Started> {
  const answer = await target.api('GET', `/api/v1/auth/oidc/${realm}/login`, undefined, {
    token: null,
  });
  expect(answer.status, answer.text).toBe(302);
  const attempt = cookieOf(answer, 'debvisor_oidc');
  expect(attempt).toBeDefined();
  return {
    authorizationUrl: new URL(answer.headers.location as string),
    attempt: attempt!.pair,
    answer,
  };
}

/** GET of the callback URL the provider redirected to, with the attempt cookie (or other cookies). */
function callback(url: string, cookie: string | undefined): Promise<ApiAnswer> {
  const target = new URL(url);
  return m.api('GET', `${target.pathname}${target.search}`, undefined, {
    token: null,
    headers: cookie ? { cookie } : {},
  });
}

/** A whole browser login of `login` at the provider; answers the callback's answer. */
async function browserLogin(login: string, realm = 'sso'): Promise<ApiAnswer> {
  const start = await beginLogin(realm);
  return callback(await provider.login(start.authorizationUrl.href, login), start.attempt);
}

async function loggedIn(login: string): Promise<{ answer: ApiAnswer; session: string }> {
  const answer = await browserLogin(login);
  expect(answer.status, answer.text).toBe(302);
  const session = cookieOf(answer, 'debvisor_session');
  expect(session).toBeDefined();
  return { answer, session: session!.pair };
}

function whoIs(session: string): Promise<ApiAnswer> {
  return m.api('GET', '/api/v1/auth/session', undefined, {
    token: null,
    headers: { cookie: session },
  });
}

/** The newest audit entry of an OpenID login attempt (API token authentications are entries of auth.login too). */
async function lastOidcEntry(): Promise<Json> {
  const page = await m.api('GET', '/api/v1/audit?action=auth.login&limit=50');
  expect(page.status, page.text).toBe(200);
  return (page.body.items as Json[]).find((entry) => entry.details.method === 'oidc');
}

describe('logging in through an OpenID Connect realm', () => {
  it('lists the realms for a login page without a login: ids, types and comments, nothing of their settings', async () => {
    const answer = await m.api('GET', '/api/v1/auth/realms', undefined, { token: null });
    expect(answer.status, answer.text).toBe(200);
    expect(answer.body.items).toEqual([
      { id: 'local', type: 'local', comment: expect.any(String) },
      { id: 'sso', type: 'openid', comment: '' },
    ]);
    expect(answer.text).not.toContain(provider.issuer);
    expect(answer.text).not.toContain(CLIENT_ID);
  });

  it('sends the browser to the provider with the manager callback as redirect URI and the attempt in a sealed Lax cookie', async () => {
    const { authorizationUrl, attempt, answer } = await beginLogin();
    expect(authorizationUrl.origin).toBe(provider.issuer);
    expect(authorizationUrl.searchParams.get('redirect_uri')).toBe(`${m.url}${CALLBACK_PATH}`);
    expect(authorizationUrl.searchParams.get('client_id')).toBe(CLIENT_ID);
    expect(authorizationUrl.searchParams.get('scope')).toBe('openid profile email groups');
    expect(authorizationUrl.searchParams.get('code_challenge_method')).toBe('S256');
    const line = cookieOf(answer, 'debvisor_oidc')!.line;
    expect(line).toMatch(/; HttpOnly/);
    expect(line).toMatch(/; Secure/);
    expect(line).toMatch(/; SameSite=Lax/);
    expect(line).toMatch(/; Path=\/api\/v1\/auth\/oidc(;|$)/);
    const expires = Date.parse(/; Expires=([^;]+)/.exec(line)![1]!);
    expect(expires - Date.now()).toBeGreaterThan(9 * 60_000);
    expect(expires - Date.now()).toBeLessThanOrEqual(10 * 60_000);
    // Sealed: neither the state nor anything else readable rides in it.
    expect(attempt).not.toContain(authorizationUrl.searchParams.get('state')!);
    expect(attempt).toMatch(/^debvisor_oidc=v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(answer.headers['cache-control']).toBe('no-store');
  });

  it('logs alice in as alice@sso with the manager groups her groups claim maps to, and clears the attempt cookie', async () => {
    const start = await beginLogin();
    const redirect = await provider.login(start.authorizationUrl.href, 'alice');
    expect(redirect.startsWith(`${m.url}${CALLBACK_PATH}?`)).toBe(true);
    const answer = await callback(redirect, start.attempt);
    expect(answer.status, answer.text).toBe(302);
    expect(answer.headers.location).toBe('/');
    const session = cookieOf(answer, 'debvisor_session')!;
    expect(session.line).toMatch(/; HttpOnly/);
    expect(session.line).toMatch(/; SameSite=Strict/);
    expect(cookieOf(answer, 'debvisor_oidc')!.line).toMatch(
      /^debvisor_oidc=;.*Expires=Thu, 01 Jan 1970/,
    );

    const me = await whoIs(session.pair);
    expect(me.status, me.text).toBe(200);
    expect(me.body).toMatchObject({ user: 'alice@sso', kind: 'session', stage: 'active' });
    expect(me.body.groups).toEqual(['debvisor-operator']);
    const [user] = await query('SELECT display_name, email, external_id FROM users WHERE id = $1', [
      'alice@sso',
    ]);
    expect(user).toEqual({
      display_name: 'Alice Liddell',
      email: 'alice@example.test',
      external_id: 'sub-alice',
    });
    expect(await lastOidcEntry()).toMatchObject({
      principal: 'alice@sso',
      outcome: 'success',
      details: { method: 'oidc', realm: 'sso' },
    });
  });

  it('follows the groups claim at every login: a changed claim changes the membership', async () => {
    provider.accounts.bob!.claims.groups = ['debvisor-auditor'];
    expect((await whoIs((await loggedIn('bob')).session)).body.groups).toEqual([
      'debvisor-auditor',
    ]);

    provider.accounts.bob!.claims.groups = ['debvisor-admin', 'marketing'];
    const again = await whoIs((await loggedIn('bob')).session);
    expect(again.body.user).toBe('bob@sso');
    expect(again.body.groups).toEqual(['debvisor-admin']);
    const members = await query<{ group_id: string }>(
      'SELECT group_id FROM group_members WHERE user_id = $1 ORDER BY group_id',
      ['bob@sso'],
    );
    expect(members.map((r) => r.group_id)).toEqual(['debvisor-admin']);
  });

  it('refuses a callback without the attempt cookie with 401', async () => {
    const start = await beginLogin();
    const answer = await callback(
      await provider.login(start.authorizationUrl.href, 'carol'),
      undefined,
    );
    expect(answer.status).toBe(401);
    expect(answer.body.error.code).toBe('unauthenticated');
    expect(answer.body.error.message).toContain('no OpenID login is in progress in this browser');
    expect(cookieOf(answer, 'debvisor_session')).toBeUndefined();
    expect(await lastOidcEntry()).toMatchObject({
      outcome: 'failure',
      details: { method: 'oidc' },
    });
  });

  it('refuses a callback whose state was altered, and an altered attempt cookie, with 401', async () => {
    const start = await beginLogin();
    const redirect = new URL(await provider.login(start.authorizationUrl.href, 'carol'));
    const forged = new URL(redirect);
    forged.searchParams.set('state', `${redirect.searchParams.get('state')}x`);
    const altered = await callback(forged.href, start.attempt);
    expect(altered.status).toBe(401);
    expect(altered.body.error.message).toContain('state mismatch');
    expect(await lastOidcEntry()).toMatchObject({
      outcome: 'failure',
      details: { method: 'oidc', realm: 'sso' },
    });

    const [, iv, tag, ciphertext] = start.attempt.slice('debvisor_oidc='.length).split('.');
    const tampered = `debvisor_oidc=v1.${iv}.${tag}.${ciphertext!.startsWith('A') ? 'B' : 'A'}${ciphertext!.slice(1)}`;
    const badCookie = await callback(redirect.href, tampered);
    expect(badCookie.status).toBe(401);
    expect(badCookie.body.error.message).toContain('the OpenID login cookie is invalid');
    expect(cookieOf(badCookie, 'debvisor_session')).toBeUndefined();
  });

  it('refuses to redeem the same callback twice', async () => {
    const start = await beginLogin();
    const redirect = await provider.login(start.authorizationUrl.href, 'carol');
    expect((await callback(redirect, start.attempt)).status).toBe(302);
    const replay = await callback(redirect, start.attempt);
    expect(replay.status).toBe(401);
    expect(replay.body.error.message).toContain('invalid, expired or already used');
  });

  it("answers the provider's refusal (error=access_denied) with a 401 JSON error", async () => {
    const start = await beginLogin();
    const state = start.authorizationUrl.searchParams.get('state')!;
    const answer = await callback(
      `${m.url}${CALLBACK_PATH}?error=access_denied&error_description=denied&state=${state}`,
      start.attempt,
    );
    expect(answer.status).toBe(401);
    expect(answer.headers['content-type']).toContain('application/json');
    expect(answer.body.error).toMatchObject({
      code: 'unauthenticated',
      message: 'OpenID login failed: the identity provider refused the login (access_denied)',
    });
    expect(await lastOidcEntry()).toMatchObject({
      outcome: 'failure',
      details: {
        method: 'oidc',
        realm: 'sso',
        reason: 'OpenID login failed: the identity provider refused the login (access_denied)',
      },
    });
    // /metrics needs system.audit on /: the bootstrap admin token.
    const metrics = await m.api('GET', '/metrics');
    expect(metrics.text).toMatch(/auth_attempts_total\{method="oidc",result="failure"\} [1-9]/);
    expect(metrics.text).toMatch(/auth_attempts_total\{method="oidc",result="success"\} [1-9]/);
  });

  it('refuses a user an administrator disabled, even with a valid identity', async () => {
    await loggedIn('dave');
    await query('UPDATE users SET enabled = false WHERE id = $1', ['dave@sso']);
    const answer = await browserLogin('dave');
    expect(answer.status).toBe(401);
    expect(answer.body.error.message).toBe('OpenID login failed: the account is disabled');
    expect(cookieOf(answer, 'debvisor_session')).toBeUndefined();
    expect(await lastOidcEntry()).toMatchObject({ principal: 'dave@sso', outcome: 'failure' });
  });

  it('sends a user of a realm that requires a second factor to enrolment first', async () => {
    await createRealm(m, 'sso-tfa', { requireTfa: true });
    const answer = await browserLogin('carol', 'sso-tfa');
    expect(answer.status, answer.text).toBe(302);
    expect(answer.headers.location).toBe('/?login=setup');
    const me = await whoIs(cookieOf(answer, 'debvisor_session')!.pair);
    expect(me.body).toMatchObject({ user: 'carol@sso-tfa', stage: 'setup' });
  });

  it('answers 404 for an unknown realm and for realms that do not log in through OpenID Connect', async () => {
    for (const realm of ['nowhere', 'local']) {
      const answer = await m.api('GET', `/api/v1/auth/oidc/${realm}/login`, undefined, {
        token: null,
      });
      expect(answer.status, realm).toBe(404);
      expect(answer.body.error.code).toBe('not_found');
      expect(cookieOf(answer, 'debvisor_oidc')).toBeUndefined();
    }
  });

  it('refuses a Host header that is not a host and port (no public URL configured)', async () => {
    for (const host of [
      'evil.example.test/phish',
      'user@evil.example.test',
      'evil.example.test:99999',
    ]) {
      const answer = await m.api('GET', '/api/v1/auth/oidc/sso/login', undefined, {
        token: null,
        headers: { host },
      });
      expect(answer.status, host).toBe(400);
      expect(answer.body.error.message).toContain('DEBVISOR_PUBLIC_URL');
    }
  });
});

describe('with DEBVISOR_PUBLIC_URL', () => {
  let behindProxy: TestManager;
  beforeAll(async () => {
    behindProxy = await startTestManager({
      databaseUrl: await dbs.fresh(),
      env: { DEBVISOR_PUBLIC_URL: 'https://dcm.example.test:9443' },
    });
    await createRealm(behindProxy, 'sso');
  }, 60_000);
  afterAll(() => behindProxy?.stop());

  it('uses the public URL for the redirect URI whatever the Host header says', async () => {
    for (const host of [undefined, 'elsewhere.example.test']) {
      const answer = await behindProxy.api('GET', '/api/v1/auth/oidc/sso/login', undefined, {
        token: null,
        headers: host ? { host } : {},
      });
      expect(answer.status, answer.text).toBe(302);
      expect(new URL(answer.headers.location as string).searchParams.get('redirect_uri')).toBe(
        'https://dcm.example.test:9443/api/v1/auth/oidc/callback',
      );
    }
  });
});
