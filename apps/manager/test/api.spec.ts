import { createCa } from '@debvisor/pki';
import { cleanupTempDirs, freePort, tempDir } from '@debvisor/testing';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RemotesRepository } from '../src/remotes/remotes.repository';
import {
  grantToken,
  startTestDatabases,
  startTestManager,
  type TestDatabases,
  type TestManager,
} from './manager-harness';
import { registeredRoutes, samplePath } from './routes';

const KEY_A = `dvk_0123456789abcdef_${'A'.repeat(20)}secretpartA${'a'.repeat(12)}`;
const KEY_B = `dvk_fedcba9876543210_${'B'.repeat(20)}secretpartB${'b'.repeat(12)}`;

let dbs: TestDatabases;
let caPem: string;
const started: TestManager[] = [];

beforeAll(async () => {
  [dbs, caPem] = await Promise.all([
    startTestDatabases(),
    createCa('test cluster CA').then((ca) => ca.certPem),
  ]);
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((m) => m.stop()));
});
afterAll(async () => {
  await dbs?.stop();
  cleanupTempDirs();
});

async function manager(options: Parameters<typeof startTestManager>[0] = {}): Promise<TestManager> {
  const m = await startTestManager({
    databaseUrl: options.databaseUrl ?? (await dbs.fresh()),
    ...options,
  });
  started.push(m);
  return m;
}

/** Routes anyone may call: health, and the first steps of a login. */
const PUBLIC_ROUTES = [
  'GET /api/v1/auth/oidc/:realm/login',
  'GET /api/v1/auth/oidc/callback',
  'GET /api/v1/auth/realms',
  'GET /healthz',
  'GET /readyz',
  'POST /api/v1/auth/login',
  'POST /api/v1/auth/tfa',
  'POST /api/v1/auth/tfa/webauthn/options',
];

/** Every table's content except the audit log (which records the refusals) and tokens' last use. */
async function databaseSnapshot(databaseUrl: string): Promise<Record<string, string>> {
  const tables = await query<{ table_name: string }>(
    databaseUrl,
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name NOT IN ('audit_log', 'migrations') ORDER BY table_name",
  );
  const snapshot: Record<string, string> = {};
  for (const { table_name: table } of tables) {
    const select =
      table === 'api_tokens'
        ? 'SELECT id, owner_type, principal, name, comment, limited, secret_hash, expires_at, revoked_at FROM api_tokens'
        : `SELECT * FROM "${table}"`;
    const rows = await query(
      databaseUrl,
      `SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') AS content FROM (${select}) t`,
    );
    snapshot[table] = String(rows[0].content);
  }
  return snapshot;
}

async function query<T = Record<string, unknown>>(
  databaseUrl: string,
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

/** A remote body whose endpoint refuses connections (nothing listens there). */
async function unreachableRemote(id: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    description: `remote ${id}`,
    endpoints: [`127.0.0.1:${await freePort()}`],
    caCertPem: caPem,
    credentials: [
      { name: 'admin', key: KEY_A },
      { name: 'reader', key: KEY_B },
    ],
    ...extra,
  };
}

describe('first start and the bootstrap token', () => {
  it('prints the bootstrap admin token once in a banner, never in the JSON log, and not again on a restart', async () => {
    const first = await manager();
    expect(first.token).toMatch(/^dvdm_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(first.operatorOutput()).toContain(`bootstrap admin token: ${first.token}`);
    expect(first.logs()).toContain('"msg":"manager listening"');
    expect(first.logs()).not.toContain(first.token!.split('_').slice(2).join('_'));
    expect((await first.api('GET', '/api/v1/remotes')).status).toBe(200);
    await first.stop();
    started.splice(started.indexOf(first), 1);

    const again = await manager({
      databaseUrl: first.databaseUrl,
      stateDir: first.stateDir,
      token: first.token,
    });
    expect(again.token).toBeUndefined();
    expect(again.operatorOutput()).toBe('');
    expect((await again.api('GET', '/api/v1/remotes')).status).toBe(200);
    // Stored only as a hash: the secret appears nowhere in the tokens table.
    const rows = await query(
      first.databaseUrl!,
      'SELECT row_to_json(t)::text AS row FROM api_tokens t',
    );
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(first.token!.split('_').slice(2).join('_'));
  });

  it('keeps its secrets in the state directory readable only by its owner', async () => {
    const m = await manager();
    for (const file of [
      'secret.key',
      'pki/server.key',
      'pki/server-ca.key',
      'pki/client.key',
      'pki/client-ca.key',
    ]) {
      expect(statSync(join(m.stateDir, file)).mode & 0o777, file).toBe(0o600);
    }
    const identity = await m.api('GET', '/api/v1/manager/identity');
    expect(identity.status).toBe(200);
    expect(identity.body.clientCa.pem).toContain('BEGIN CERTIFICATE');
    expect(identity.body.clientCa.path).toBe(join(m.stateDir, 'pki/client-ca.crt'));
    expect(identity.body.clientCa.fingerprintSha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(m.logs()).toContain(join(m.stateDir, 'pki/client-ca.crt'));
  });
});

describe('routes and privileges', () => {
  let m: TestManager;
  beforeAll(async () => {
    m = await startTestManager({ databaseUrl: await dbs.fresh() });
  });
  afterAll(async () => {
    await m?.stop();
  });

  it('declares a privilege or @Public() on every registered route', () => {
    const routes = registeredRoutes(m.manager.app);
    expect(routes.length).toBeGreaterThan(15);
    const undeclared = routes
      .filter((r) => !r.isPublic && !r.selfService && !r.requirement)
      .map((r) => `${r.method} ${r.path} (${r.controller}.${r.handler})`);
    expect(undeclared).toEqual([]);
    const publicRoutes = routes
      .filter((r) => r.isPublic)
      .map((r) => `${r.method} ${r.path}`)
      .sort();
    expect(publicRoutes).toEqual(PUBLIC_ROUTES);
  });

  it('answers 401 with the JSON error shape on every non-public route without a token or with a wrong one', async () => {
    const wrong = `dvdm_${'0'.repeat(16)}_${'x'.repeat(43)}`;
    for (const route of registeredRoutes(m.manager.app).filter((r) => !r.isPublic)) {
      for (const token of [null, wrong, 'not-a-token']) {
        const answer = await m.api(
          route.method,
          samplePath(route.path),
          route.method === 'GET' ? undefined : {},
          { token },
        );
        expect(answer.status, `${route.method} ${route.path} with ${token}`).toBe(401);
        expect(answer.body.error.code).toBe('unauthenticated');
        expect(answer.body.error.traceId).toMatch(/^[0-9a-f]{32}$/);
        expect(answer.headers['www-authenticate']).toContain('Bearer');
      }
    }
  });

  it('shows the privilege of every documented route in the OpenAPI document', async () => {
    const answer = await m.api('GET', '/api/v1/openapi.json');
    expect(answer.status).toBe(200);
    const paths = answer.body.paths as Record<
      string,
      Record<string, { 'x-debvisor-privilege'?: Record<string, unknown> }>
    >;
    let documented = 0;
    for (const route of registeredRoutes(m.manager.app)) {
      if (route.path === '/api/v1/openapi.json') continue;
      const operation =
        paths[route.path.replace(/:([A-Za-z]+)/g, '{$1}')]?.[route.method.toLowerCase()];
      expect(operation, `${route.method} ${route.path} is documented`).toBeDefined();
      const extension = operation!['x-debvisor-privilege'];
      if (route.isPublic) expect(extension).toEqual({ public: true });
      else if (route.selfService) expect(extension).toMatchObject({ self: true });
      else
        expect(extension).toMatchObject({
          privilege: route.requirement!.privilege,
          path: route.requirement!.path,
        });
      documented += 1;
    }
    expect(documented).toBeGreaterThan(15);
    expect(JSON.stringify(answer.body.components.schemas)).toContain('caFingerprint');
  });

  it('refuses every non-GET route to a principal with only Audit on /, and nothing changes', async () => {
    const auditor = await grantToken(m.databaseUrl!, 'auditor@local', 'Audit', '/');
    expect((await m.api('GET', '/api/v1/remotes', undefined, { token: auditor })).status).toBe(200);
    const before = await databaseSnapshot(m.databaseUrl!);
    const writes = registeredRoutes(m.manager.app).filter((r) => !r.isPublic && r.method !== 'GET');
    expect(writes.length).toBeGreaterThan(20);
    for (const route of writes) {
      const answer = await m.api(route.method, samplePath(route.path), {}, { token: auditor });
      expect(answer.status, `${route.method} ${route.path}`).toBe(403);
      expect(answer.body.error.code).toBe('forbidden');
    }
    expect(await databaseSnapshot(m.databaseUrl!)).toEqual(before);
  });

  it('serves /healthz and /readyz without a token, /metrics with one', async () => {
    expect((await m.api('GET', '/healthz', undefined, { token: null })).body).toEqual({
      status: 'ok',
    });
    const ready = await m.api('GET', '/readyz', undefined, { token: null });
    expect(ready.status).toBe(200);
    expect(ready.body.checks).toEqual({ database: 'ok', poller: 'ok', remotes: 'none configured' });
    await m.api('GET', '/api/v1/remotes/sample-remote');
    expect((await m.api('GET', '/metrics', undefined, { token: null })).status).toBe(401);
    const metrics = await m.api('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('debvisor_remotes{status="online"}');
    expect(metrics.text).toContain('debvisor_resource_refresh_duration_seconds');
    expect(metrics.text).toContain('process_cpu_user_seconds_total');
    // Route templates, not raw paths, as labels.
    expect(metrics.text).toContain('route="/api/v1/remotes/:remote",status="404"');
    expect(metrics.text).not.toContain('sample-remote');
  });

  it('answers unknown routes with a JSON 404', async () => {
    for (const path of ['/api/v1/nope', '/nope', '/api/v2/remotes']) {
      const answer = await m.api('GET', path);
      expect(answer.status, path).toBe(404);
      expect(answer.body.error).toMatchObject({ code: 'not_found' });
    }
  });

  it("uses the caller's trace id when it is sane and a new one otherwise", async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const withParent = await m.api('GET', '/api/v1/remotes/unknown-remote', undefined, {
      headers: { traceparent },
    });
    expect(withParent.body.error.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(withParent.headers['x-trace-id']).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    const plain = await m.api('GET', '/api/v1/remotes/unknown-remote', undefined, {
      headers: { 'x-trace-id': 'deploy-42-abcdef' },
    });
    expect(plain.body.error.traceId).toBe('deploy-42-abcdef');
    const insane = await m.api('GET', '/api/v1/remotes/unknown-remote', undefined, {
      headers: { 'x-trace-id': 'a b"c' },
    });
    expect(insane.body.error.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(m.logs()).toContain('"traceId":"deploy-42-abcdef"');
  });
});

describe('malformed input', () => {
  let m: TestManager;
  beforeAll(async () => {
    m = await startTestManager({ databaseUrl: await dbs.fresh() });
  });
  afterAll(async () => {
    await m?.stop();
  });

  const cases: {
    name: string;
    method: string;
    path: string;
    body?: () => Promise<unknown>;
    raw?: () => string;
    status: number;
    code: string;
    mentions: string;
  }[] = [
    {
      name: 'a remote id with upper case and underscores',
      method: 'POST',
      path: '/api/v1/remotes',
      body: () => unreachableRemote('Bad_Id'),
      status: 400,
      code: 'validation_failed',
      mentions: 'id:',
    },
    {
      name: 'an endpoint without a port',
      method: 'POST',
      path: '/api/v1/remotes',
      body: async () => ({ ...(await unreachableRemote('r1')), endpoints: ['node1.example'] }),
      status: 400,
      code: 'validation_failed',
      mentions: 'endpoints.0',
    },
    {
      name: 'a credential key of the wrong shape',
      method: 'POST',
      path: '/api/v1/remotes',
      body: async () => ({
        ...(await unreachableRemote('r2')),
        credentials: [{ name: 'admin', key: 'secret' }],
      }),
      status: 400,
      code: 'validation_failed',
      mentions: 'credentials.0.key',
    },
    {
      name: 'both a CA and a fingerprint',
      method: 'POST',
      path: '/api/v1/remotes',
      body: async () => ({ ...(await unreachableRemote('r3')), caFingerprint: 'AB'.repeat(32) }),
      status: 400,
      code: 'validation_failed',
      mentions: 'caCertPem',
    },
    {
      name: 'an unknown field',
      method: 'POST',
      path: '/api/v1/remotes',
      body: async () => ({ ...(await unreachableRemote('r4')), colour: 'blue' }),
      status: 400,
      code: 'validation_failed',
      mentions: 'colour',
    },
    {
      name: 'malformed JSON',
      method: 'POST',
      path: '/api/v1/remotes',
      raw: () => '{"id": "r5",',
      status: 400,
      code: 'malformed_json',
      mentions: 'not valid JSON',
    },
    {
      name: 'a body over 1 MB',
      method: 'POST',
      path: '/api/v1/remotes',
      raw: () => JSON.stringify({ id: 'r6', description: 'x'.repeat(1_100_000) }),
      status: 413,
      code: 'payload_too_large',
      mentions: '1 MB',
    },
    {
      name: 'a VM id that is no uuid',
      method: 'GET',
      path: '/api/v1/remotes/r7/vms/not-a-uuid',
      status: 400,
      code: 'validation_failed',
      mentions: 'vmid',
    },
    {
      name: 'a task id that is no uuid',
      method: 'GET',
      path: '/api/v1/tasks/1234',
      status: 400,
      code: 'validation_failed',
      mentions: 'id',
    },
    {
      name: 'a power action on a VM id that is no uuid',
      method: 'POST',
      path: '/api/v1/remotes/r8/vms/xyz/start',
      status: 400,
      code: 'validation_failed',
      mentions: 'vmid',
    },
    {
      name: 'a bad remote id in the path',
      method: 'GET',
      path: '/api/v1/remotes/-bad-/nodes',
      status: 400,
      code: 'validation_failed',
      mentions: 'remote',
    },
    {
      name: 'an unknown resource type',
      method: 'GET',
      path: '/api/v1/resources?type=disk',
      status: 400,
      code: 'validation_failed',
      mentions: 'type',
    },
    {
      name: 'a page size of zero',
      method: 'GET',
      path: '/api/v1/tasks?limit=0',
      status: 400,
      code: 'validation_failed',
      mentions: 'limit',
    },
    {
      name: 'a probe of a bad endpoint',
      method: 'POST',
      path: '/api/v1/remotes/probe',
      body: async () => ({ endpoint: 'host:99999' }),
      status: 400,
      code: 'validation_failed',
      mentions: 'endpoint',
    },
  ];

  for (const c of cases) {
    it(`refuses ${c.name} with ${c.status} ${c.code}`, async () => {
      const answer = await m.api(
        c.method,
        c.path,
        c.body ? await c.body() : undefined,
        c.raw ? { raw: c.raw() } : {},
      );
      expect(answer.status).toBe(c.status);
      expect(Object.keys(answer.body)).toEqual(['error']);
      expect(answer.body.error.code).toBe(c.code);
      expect(answer.body.error.message).toContain(c.mentions);
      expect(answer.body.error.traceId).toMatch(/^[0-9a-f]{32}$/);
    });
  }

  it('stored nothing for any of the refused requests', async () => {
    expect((await m.api('GET', '/api/v1/remotes')).body.items).toEqual([]);
    expect(await query(m.databaseUrl!, 'SELECT id FROM remotes')).toEqual([]);
    expect(await query(m.databaseUrl!, 'SELECT id FROM remote_credentials')).toEqual([]);
    expect(await query(m.databaseUrl!, 'SELECT id FROM tasks')).toEqual([]);
  });
});

describe('remotes without reachable agents', () => {
  it('refuses a remote it cannot reach, naming the endpoint, and stores it with addAnyway', async () => {
    const m = await manager();
    const body = await unreachableRemote('dc-dead');
    const refused = await m.api('POST', '/api/v1/remotes', body);
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('remote_unreachable');
    expect(refused.body.error.message).toContain(body.endpoints[0]);
    expect((await m.api('GET', '/api/v1/remotes/dc-dead')).status).toBe(404);

    const added = await m.api('POST', '/api/v1/remotes', { ...body, addAnyway: true });
    expect(added.status).toBe(201);
    expect(added.body.connection).toMatchObject({
      ok: false,
      error: { code: 'remote_unreachable' },
    });
    expect(added.body.credentials.map((c: { name: string }) => c.name)).toEqual([
      'admin',
      'reader',
    ]);
    expect(added.text).not.toContain(KEY_A);

    const duplicate = await m.api('POST', '/api/v1/remotes', { ...body, addAnyway: true });
    expect(duplicate.status).toBe(409);
    expect(duplicate.body.error.code).toBe('conflict');

    await m.api('GET', '/api/v1/resources/refresh?remote=dc-dead');
    const resources = await m.api('GET', '/api/v1/resources');
    expect(resources.body.remotes).toEqual([
      expect.objectContaining({
        remote: 'dc-dead',
        status: 'unreachable',
        since: expect.any(String),
        error: expect.objectContaining({ code: 'remote_unreachable' }),
      }),
    ]);
    expect(m.logs()).not.toContain(KEY_A.slice(21));
  });

  it('keeps remotes and credentials across a restart, with the keys sealed in the database', async () => {
    const first = await manager();
    expect(
      (
        await first.api('POST', '/api/v1/remotes', {
          ...(await unreachableRemote('dc-keep')),
          addAnyway: true,
        })
      ).status,
    ).toBe(201);
    const rows = await query(
      first.databaseUrl!,
      'SELECT row_to_json(c)::text AS row FROM remote_credentials c',
    );
    expect(rows).toHaveLength(2);
    const dump = JSON.stringify(rows);
    for (const key of [KEY_A, KEY_B]) {
      expect(dump).not.toContain(key);
      expect(dump).not.toContain(key.split('_').slice(2).join('_'));
    }
    await first.stop();
    started.splice(started.indexOf(first), 1);

    const second = await manager({
      databaseUrl: first.databaseUrl,
      stateDir: first.stateDir,
      token: first.token,
    });
    const remote = await second.api('GET', '/api/v1/remotes/dc-keep');
    expect(remote.status).toBe(200);
    expect(remote.body).toMatchObject({
      id: 'dc-keep',
      description: 'remote dc-keep',
      trust: { resolved: true },
    });
    expect(remote.body.credentials).toEqual([
      { name: 'admin', keyId: '0123456789abcdef', createdAt: expect.any(String) },
      { name: 'reader', keyId: 'fedcba9876543210', createdAt: expect.any(String) },
    ]);
    // The new process opens the sealed key with the secret key from the state directory.
    expect((await second.manager.app.get(RemotesRepository).credential('dc-keep', null))?.key).toBe(
      KEY_A,
    );
  });

  it('changes and removes credentials and remotes', async () => {
    const m = await manager();
    await m.api('POST', '/api/v1/remotes', {
      ...(await unreachableRemote('dc-edit')),
      addAnyway: true,
    });
    const removed = await m.api('DELETE', '/api/v1/remotes/dc-edit/credentials/admin');
    expect(removed.status).toBe(200);
    expect(removed.body.credentials.map((c: { name: string }) => c.name)).toEqual(['reader']);
    expect((await m.api('DELETE', '/api/v1/remotes/dc-edit/credentials/admin')).status).toBe(404);
    const refused = await m.api('POST', '/api/v1/remotes/dc-edit/credentials', {
      name: 'ops',
      key: KEY_A,
    });
    expect(refused.status).toBe(422);
    const added = await m.api('POST', '/api/v1/remotes/dc-edit/credentials', {
      name: 'ops',
      key: KEY_A,
      addAnyway: true,
    });
    expect(added.status).toBe(201);
    expect(added.body.credentials.map((c: { name: string }) => c.name)).toEqual(['reader', 'ops']);
    const patched = await m.api('PATCH', '/api/v1/remotes/dc-edit', {
      description: 'edited',
      endpoints: ['10.0.0.1:9443', 'agent.example:9443'],
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      description: 'edited',
      endpoints: ['10.0.0.1:9443', 'agent.example:9443'],
    });
    expect((await m.api('DELETE', '/api/v1/remotes/dc-edit')).status).toBe(204);
    expect((await m.api('GET', '/api/v1/remotes/dc-edit')).status).toBe(404);
    expect(await query(m.databaseUrl!, 'SELECT id FROM remote_credentials')).toEqual([]);
  });
});

describe('unexpected failures', () => {
  it('answers 500 internal without internals and logs the error with the trace id', async () => {
    const m = await manager();
    await query(m.databaseUrl!, 'DROP TABLE remote_credentials CASCADE');
    const answer = await m.api('GET', '/api/v1/remotes');
    expect(answer.status).toBe(500);
    expect(answer.body.error.code).toBe('internal');
    expect(answer.text).not.toMatch(/relation|remote_credentials|QueryFailed|at /);
    const traceId = answer.body.error.traceId as string;
    expect(m.logs()).toMatch(
      new RegExp(
        `"traceId":"${traceId}"[^\\n]*remote_credentials|remote_credentials[^\\n]*"traceId":"${traceId}"`,
      ),
    );
  });
});

describe('web UI', () => {
  it('serves the web UI directory with index.html for client routes, and JSON 404s under /api', async () => {
    const webDir = tempDir('debvisor-web-');
    mkdirSync(join(webDir, 'assets'));
    writeFileSync(join(webDir, 'index.html'), '<!doctype html><title>DebVisor</title>');
    writeFileSync(join(webDir, 'assets/app.js'), 'console.log("ui")');
    const m = await manager({ env: { DEBVISOR_WEB_DIR: webDir } });
    for (const path of ['/', '/remotes/dc-east', '/tasks']) {
      const page = await m.api('GET', path, undefined, { token: null });
      expect(page.status, path).toBe(200);
      expect(page.text).toContain('<title>DebVisor</title>');
    }
    const script = await m.api('GET', '/assets/app.js', undefined, { token: null });
    expect(script.status).toBe(200);
    expect(script.headers['content-type']).toContain('javascript');
    const missing = await m.api('GET', '/assets/missing.js', undefined, { token: null });
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('not_found');
    const api = await m.api('GET', '/api/v1/nothing-here');
    expect(api.status).toBe(404);
    expect(api.body.error.code).toBe('not_found');
  });
});
