import { cleanupTempDirs, freePort } from '@debvisor/testing';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  grantToken,
  sqlQuery,
  startTestDatabases,
  startTestManager,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

/**
 * The HTTP boundary (issue 14): security headers, control characters, bodies of routes that take
 * none, deep nesting, what the request log and the error log may hold, /metrics behind a token or
 * a listener of its own, and what anonymous callers learn from errors.
 */
let dbs: TestDatabases;
let m: TestManager;
const VM = '3f1d2c4b-5a6e-4f70-8a9b-0c1d2e3f4a5b';

beforeAll(async () => {
  dbs = await startTestDatabases();
  m = await startTestManager({ databaseUrl: await dbs.fresh() });
});
afterAll(async () => {
  await m?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

describe('security headers', () => {
  it('sends HSTS, a strict CSP, nosniff and a Referrer-Policy on API answers and errors', async () => {
    for (const path of ['/api/v1/remotes', '/api/v1/nope', '/healthz']) {
      const answer = await m.api('GET', path);
      expect(answer.headers['strict-transport-security'], path).toMatch(/max-age=\d{7,}/);
      expect(answer.headers['x-content-type-options'], path).toBe('nosniff');
      expect(answer.headers['referrer-policy'], path).toBe('no-referrer');
      const csp = String(answer.headers['content-security-policy']);
      expect(csp, path).toContain("default-src 'self'");
      expect(csp, path).toContain("frame-ancestors 'none'");
      expect(csp, path).toContain("object-src 'none'");
      expect(csp, path).not.toContain('unsafe-inline');
      expect(csp, path).not.toContain('unsafe-eval');
      expect(answer.headers['x-powered-by'], path).toBeUndefined();
    }
  });
});

describe('control characters and hostile bodies', () => {
  it('refuses a NUL byte in the unauthenticated login with 400, and logs neither SQL nor hashes', async () => {
    const answer = await m.api(
      'POST',
      '/api/v1/auth/login',
      { username: 'admin\u0000', password: 'x\u0000y' },
      { token: null },
    );
    expect(answer.status).toBe(400);
    expect(answer.body.error.code).toBe('validation_failed');
    expect(answer.body.error.message).toContain('control character');
    expect(m.logs()).not.toContain('$argon2');
    expect(m.logs()).not.toMatch(/"parameters"|SELECT |INSERT /);
  });

  it('refuses control characters in query strings, path parameters and nested body fields with 400', async () => {
    const cases: [string, string, unknown?][] = [
      ['GET', '/api/v1/resources?type=vm%00'],
      ['GET', '/api/v1/tasks?remote=a%01b'],
      ['GET', '/api/v1/remotes/dc%00east'],
      ['POST', '/api/v1/access/users', { username: 'eve', realm: 'local\u0007', password: 'p' }],
      ['POST', '/api/v1/remotes', { id: 'r1', description: 'a\u001bb', endpoints: [] }],
    ];
    for (const [method, path, body] of cases) {
      const answer = await m.api(method, path, body);
      expect(answer.status, `${method} ${path}`).toBe(400);
      expect(answer.body.error.code, `${method} ${path}`).toBe('validation_failed');
    }
    // Tabs and line ends are text, not control characters out of place.
    const ok = await m.api('GET', `/api/v1/resources?type=vm`);
    expect(ok.status).toBe(200);
  });

  it('refuses a body on a route that takes none, and a deeply nested body, with 400', async () => {
    const path = `/api/v1/remotes/r1/vms/${VM}/start`;
    const extra = await m.api('POST', path, { force: true });
    expect(extra.status).toBe(400);
    expect(extra.body.error.code).toBe('validation_failed');
    let deep = '1';
    for (let i = 0; i < 10_000; i += 1) deep = `{"a":${deep}}`;
    const nested = await m.api('POST', path, undefined, { raw: deep });
    expect(nested.status).toBe(400);
    expect(nested.body.error.code).toBe('malformed_json');
    const array = await m.api('POST', path, [1, 2]);
    expect(array.status).toBe(400);
    // No body, or an empty object, is what such a route takes: on to the next check (no such remote).
    expect((await m.api('POST', path)).status).toBe(404);
    expect((await m.api('POST', path, {})).status).toBe(404);
    expect(await sqlQuery(m.databaseUrl!, 'SELECT id FROM tasks')).toEqual([]);
  });

  it('declares every request body schema closed (no unknown fields accepted)', async () => {
    const document = (await m.api('GET', '/api/v1/openapi.json')).body;
    const open: string[] = [];
    const visit = (schema: Record<string, unknown> | undefined, where: string, depth = 0) => {
      if (!schema || depth > 8) return;
      if (typeof schema.$ref === 'string') {
        const name = schema.$ref.split('/').pop()!;
        return visit(document.components.schemas[name], `${where}→${name}`, depth + 1);
      }
      for (const key of ['oneOf', 'anyOf', 'allOf'] as const)
        for (const part of (schema[key] as Record<string, unknown>[] | undefined) ?? [])
          visit(part, where, depth + 1);
      if (schema.type === 'object' && schema.properties) {
        if (schema.additionalProperties !== false) open.push(where);
        for (const [name, property] of Object.entries(
          schema.properties as Record<string, Record<string, unknown>>,
        ))
          visit(property, `${where}.${name}`, depth + 1);
      }
      if (schema.type === 'array') visit(schema.items as Record<string, unknown>, where, depth + 1);
    };
    for (const [path, operations] of Object.entries(
      document.paths as Record<string, Record<string, Record<string, never>>>,
    ))
      for (const [method, operation] of Object.entries(operations)) {
        const body = (operation as { requestBody?: { content: Record<string, { schema: never }> } })
          .requestBody;
        if (body)
          visit(body.content['application/json']?.schema, `${method.toUpperCase()} ${path}`);
      }
    expect(open).toEqual([]);
  });
});

describe('requests Node refuses before the manager reads them', () => {
  /** Raw bytes over TLS: what a broken or hostile client sends. */
  function raw(request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: Number(new URL(m.url).port),
        ca: readFileSync(`${m.stateDir}/pki/server-ca.crt`, 'utf8'),
        servername: 'localhost',
      });
      let answer = '';
      socket.setEncoding('utf8');
      socket.on('secureConnect', () => socket.write(request));
      socket.on('data', (chunk: string) => (answer += chunk));
      socket.on('end', () => resolve(answer));
      socket.on('error', reject);
      socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')));
    });
  }

  it('answers an oversized request line and a malformed request with the JSON error shape', async () => {
    const long = await raw(`GET /api/v1/tasks?q=${'x'.repeat(40_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(long).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(long.split('\r\n\r\n')[1]).error).toMatchObject({
      code: 'headers_too_large',
      traceId: expect.stringMatching(/^[0-9a-f]{32}$/),
    });
    const garbage = await raw('NOT HTTP AT ALL\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    expect(garbage).toContain('content-type: application/json');
    expect(JSON.parse(garbage.split('\r\n\r\n')[1]).error.code).toBe('bad_request');
  });
});

describe('what the log holds', () => {
  it('logs the path of a request, never its query string (the OIDC callback code and state)', async () => {
    await m.api(
      'GET',
      '/api/v1/auth/oidc/callback?code=SECRETCODE123&state=SECRETSTATE456',
      undefined,
      { token: null },
    );
    await m.api('GET', '/api/v1/tasks?limit=5&remote=QUERYVALUE789');
    expect(m.logs()).toContain('"url":"/api/v1/auth/oidc/callback"');
    for (const secret of ['SECRETCODE123', 'SECRETSTATE456', 'QUERYVALUE789'])
      expect(m.logs()).not.toContain(secret);
  });

  it('logs a failed query without its parameters', async () => {
    const other = await startTestManager({ databaseUrl: await dbs.fresh() });
    try {
      await sqlQuery(other.databaseUrl!, 'ALTER TABLE api_tokens RENAME COLUMN name TO nom');
      const answer = await other.api('POST', '/api/v1/access/tokens', {
        name: 'PARAMVALUE-4242',
        comment: 'c',
      });
      expect(answer.status).toBe(500);
      const traceId = answer.body.error.traceId as string;
      expect(other.logs()).toContain(`"traceId":"${traceId}"`);
      expect(other.logs()).not.toContain('PARAMVALUE-4242');
      expect(other.logs()).not.toMatch(/"parameters"/);
    } finally {
      await other.stop();
    }
  });
});

describe('the bootstrap token', () => {
  it('expires, and the banner says when', async () => {
    const fresh = await startTestManager({ databaseUrl: await dbs.fresh() });
    try {
      expect(fresh.operatorOutput()).toMatch(
        /bootstrap admin token: dvdm_\S+\nIt expires at \d{4}-/,
      );
      const rows = await sqlQuery<{ hours: number }>(
        fresh.databaseUrl!,
        "SELECT extract(epoch FROM expires_at - created_at) / 3600 AS hours FROM api_tokens WHERE name = 'bootstrap'",
      );
      expect(rows.map((r) => Number(r.hours))).toEqual([24]);
    } finally {
      await fresh.stop();
    }
  });
});

describe('/metrics', () => {
  it('answers 401 without a token, and the exposition to a token with system.audit on /', async () => {
    const anonymous = await m.api('GET', '/metrics', undefined, { token: null });
    expect(anonymous.status).toBe(401);
    expect(anonymous.text).not.toContain('debvisor_');
    const tenant = await grantToken(m.databaseUrl!, 'tenant@local', 'Audit', '/remotes/r1');
    expect((await m.api('GET', '/metrics', undefined, { token: tenant })).status).toBe(403);
    const scraper = await grantToken(m.databaseUrl!, 'prometheus@local', 'Audit', '/');
    const scraped = await m.api('GET', '/metrics', undefined, { token: scraper });
    expect(scraped.status).toBe(200);
    expect(scraped.text).toContain('debvisor_remotes{status="online"}');
  });

  it('serves it without a token on a listener of its own when DEBVISOR_METRICS_LISTEN is set', async () => {
    const port = await freePort();
    const own = await startTestManager({
      databaseUrl: await dbs.fresh(),
      env: { DEBVISOR_METRICS_LISTEN: `127.0.0.1:${port}` },
    });
    try {
      const ca = readFileSync(`${own.stateDir}/pki/server-ca.crt`, 'utf8');
      const get = (path: string) =>
        new Promise<{ status: number; text: string }>((resolve, reject) => {
          const req = httpsRequest(
            `https://127.0.0.1:${port}${path}`,
            { ca, servername: 'localhost', timeout: 10_000 },
            (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (c: string) => (text += c));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
            },
          );
          req.on('error', reject);
          req.end();
        });
      const metrics = await get('/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.text).toContain('debvisor_remotes{status="online"}');
      expect((await get('/api/v1/remotes')).status).toBe(404);
      // The main port still wants a token.
      expect((await own.api('GET', '/metrics', undefined, { token: null })).status).toBe(401);
    } finally {
      await own.stop();
    }
  });
});

describe('errors for anonymous callers', () => {
  it('answers a server-side failure on a public route with a generic message and logs the details', async () => {
    // An OpenID realm without its client secret: the login cannot start, for reasons that are the
    // operator's business, not an anonymous caller's.
    await sqlQuery(
      m.databaseUrl!,
      "INSERT INTO realms (id, type, comment, settings, created_at) VALUES ('broken-sso', 'openid', '', $1, now())",
      [JSON.stringify({ issuerUrl: 'https://idp.internal.example:8444', clientId: 'dm' })],
    );
    const answer = await m.api('GET', '/api/v1/auth/oidc/broken-sso/login', undefined, {
      token: null,
    });
    expect(answer.status).toBeGreaterThanOrEqual(500);
    const traceId = answer.body.error.traceId as string;
    expect(answer.body.error.message).toContain(traceId);
    expect(answer.text).not.toMatch(/secret|broken-sso|idp\.internal|cannot be used/);
    expect(m.logs()).toMatch(new RegExp(`"traceId":"${traceId}"[^\\n]*cannot be used`));
  });
});
