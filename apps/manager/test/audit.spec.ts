import { verifyChain, verifyFiles, type AuditEntry } from '@debvisor/audit';
import { isReadPrivilege } from '@debvisor/permissions';
import { strictMock } from '@debvisor/testing/strict-mock';
import {
  cleanupTempDirs,
  createManagerIdentity,
  freePort,
  spawnManaged,
  startCluster,
  tempDir,
  type TestCluster,
} from '@debvisor/testing';
import type { PinoLogger } from 'nestjs-pino';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditFileSinkRepository } from '../src/audit/audit-file-sink.repository';
import { AuditLogRepository } from '../src/audit/audit-log.repository';
import { AuditWriter } from '../src/audit/audit-writer';
import { MetricsService } from '../src/health/metrics.service';
import { runVerify, verifyDatabase } from '../src/audit/verify.command';
import {
  eventually,
  grantToken,
  startTestDatabases,
  startTestManager,
  stateDirWithClientIdentity,
  type Json,
  type TestDatabases,
  type TestManager,
} from './manager-harness';
import { registeredRoutes } from './routes';

const KEY_A = `dvk_0123456789abcdef_${'A'.repeat(16)}auditsecretA${'a'.repeat(15)}`;
const KEY_B = `dvk_fedcba9876543210_${'B'.repeat(16)}auditsecretB${'b'.repeat(15)}`;
const VERIFY_CLI = resolve(__dirname, '../dist/audit/verify-cli.js');

let dbs: TestDatabases;
const started: TestManager[] = [];

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

async function manager(options: Parameters<typeof startTestManager>[0] = {}): Promise<TestManager> {
  const m = await startTestManager({
    databaseUrl: options.databaseUrl ?? (await dbs.fresh()),
    ...options,
  });
  started.push(m);
  return m;
}

async function query<T = Json>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

/** A fresh database and a login role of its own for the manager (superuser URL for admin work). */
async function databaseWithRuntimeRole(): Promise<{
  adminUrl: string;
  appUrl: string;
  role: string;
}> {
  const adminUrl = await dbs.fresh();
  const role = `app_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  await query(dbs.postgres.url, `CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  const appUrl = new URL(adminUrl);
  appUrl.username = role;
  appUrl.password = password;
  return { adminUrl, appUrl: appUrl.toString(), role };
}

/** A manager serving as its own runtime role, migrations and grants by the owner (DATABASE_ADMIN_URL). */
async function managerWithRuntimeRole(env: Record<string, string> = {}) {
  const db = await databaseWithRuntimeRole();
  const m = await manager({
    databaseUrl: db.appUrl,
    env: { DATABASE_ADMIN_URL: db.adminUrl, ...env },
  });
  return { m, ...db };
}

async function auditRows(url: string): Promise<AuditEntry[]> {
  const rows = await query(
    url,
    `SELECT seq::int AS seq, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ts, principal, action, target, outcome,
            trace_id AS "traceId", source, details, prev_hash AS "prevHash", hash FROM audit_log ORDER BY audit_log.seq`,
  );
  return rows as AuditEntry[];
}

/** An API token with `role` on `path`, written straight into the database (tokens get their API with identity and access). */
function unreachableRemote(id: string, port: number) {
  return {
    id,
    description: `remote ${id}`,
    endpoints: [`127.0.0.1:${port}`],
    caFingerprint: 'AB'.repeat(32),
    credentials: [
      { name: 'admin', key: KEY_A },
      { name: 'reader', key: KEY_B },
    ],
    addAnyway: true,
  };
}

function capture() {
  let out = '';
  let err = '';
  return {
    io: { env: {}, out: (t: string) => void (out += t), err: (t: string) => void (err += t) },
    out: () => out,
    err: () => err,
  };
}

describe('what the manager records', () => {
  it('records a mutating call before and after it, with principal, target, trace id, source and safe details', async () => {
    const m = await manager();
    const port = await freePort();
    const created = await m.api('POST', '/api/v1/remotes', unreachableRemote('dc-a', port), {
      headers: { 'x-trace-id': 'audit-create-0001' },
    });
    expect(created.status, created.text).toBe(201);
    const entries = (await auditRows(m.databaseUrl!)).filter(
      (e) => e.traceId === 'audit-create-0001',
    );
    // The token's first use of the minute, then the call itself.
    expect(entries.map((e) => [e.action, e.outcome])).toEqual([
      ['auth.login', 'success'],
      ['remote.create', 'attempt'],
      ['remote.create', 'success'],
    ]);
    for (const entry of entries.slice(1))
      expect(entry).toMatchObject({
        principal: 'admin@local',
        target: '/remotes/dc-a',
        source: '127.0.0.1',
      });
    expect(entries[2].details).toMatchObject({
      request: 'POST /api/v1/remotes',
      endpoints: [`127.0.0.1:${port}`],
      credentials: [
        { name: 'admin', keyId: '0123456789abcdef' },
        { name: 'reader', keyId: 'fedcba9876543210' },
      ],
      addAnyway: true,
    });

    const refused = await m.api(
      'POST',
      '/api/v1/remotes/dc-a/credentials',
      { name: 'admin', key: KEY_A },
      { headers: { 'x-trace-id': 'audit-conflict-0001' } },
    );
    expect(refused.status).toBe(409);
    const failure = (await auditRows(m.databaseUrl!)).filter(
      (e) => e.traceId === 'audit-conflict-0001',
    );
    expect(failure.map((e) => [e.action, e.outcome])).toEqual([
      ['remote.credential.add', 'attempt'],
      ['remote.credential.add', 'failure'],
    ]);
    expect(failure[1].details).toMatchObject({ code: 'conflict', status: 409 });
  });

  it('records failed authentications with the token id only, one success per token and address a minute, and permission denials', async () => {
    const m = await manager();
    const wrongSecret = `${m.token!.split('_').slice(0, 2).join('_')}_${'W'.repeat(43)}`;
    expect(
      (
        await m.api('GET', '/api/v1/remotes', undefined, {
          token: wrongSecret,
          headers: { 'x-trace-id': 'audit-401-0001' },
        })
      ).status,
    ).toBe(401);
    expect(
      (
        await m.api('GET', '/api/v1/remotes', undefined, {
          token: null,
          headers: { 'x-trace-id': 'audit-401-0002' },
        })
      ).status,
    ).toBe(401);
    for (let i = 0; i < 3; i += 1) await m.api('GET', '/api/v1/remotes');
    const scoped = await grantToken(m.databaseUrl!, 'ops@local', 'Manage', '/remotes/dc-b');
    expect(
      (
        await m.api('DELETE', '/api/v1/remotes/dc-c', undefined, {
          token: scoped,
          headers: { 'x-trace-id': 'audit-403-0001' },
        })
      ).status,
    ).toBe(403);

    const entries = await auditRows(m.databaseUrl!);
    expect(entries.find((e) => e.traceId === 'audit-401-0001')).toMatchObject({
      action: 'auth.login',
      outcome: 'failure',
      principal: null,
      source: '127.0.0.1',
      details: {
        method: 'api_token',
        tokenId: m.token!.split('_')[1],
        reason: 'invalid, expired or revoked API token',
      },
    });
    // A request that presents no credential at all is no authentication attempt (a browser loading the UI).
    expect(entries.find((e) => e.traceId === 'audit-401-0002')).toBeUndefined();
    const rootLogins = entries.filter(
      (e) => e.action === 'auth.login' && e.outcome === 'success' && e.principal === 'admin@local',
    );
    expect(rootLogins).toHaveLength(1);
    expect(
      entries.find((e) => e.traceId === 'audit-403-0001' && e.action === 'authz.denied'),
    ).toMatchObject({
      action: 'authz.denied',
      outcome: 'denied',
      principal: 'ops@local',
      target: '/remotes/dc-c',
      details: { privilege: 'remote.modify', request: 'DELETE /api/v1/remotes/dc-c' },
    });
    // The refused request changed nothing and therefore has no attempt entry.
    expect(entries.filter((e) => e.traceId === 'audit-403-0001').map((e) => e.action)).toEqual([
      'auth.login',
      'authz.denied',
    ]);
  });

  it('declares an audit action on every route that needs a privilege that changes something', async () => {
    const m = await manager();
    const routes = registeredRoutes(m.manager.app);
    const missing = routes
      .filter((r) => r.requirement && !isReadPrivilege(r.requirement.privilege) && !r.audited)
      .map((r) => `${r.method} ${r.path} (${r.controller}.${r.handler})`);
    expect(missing).toEqual([]);
    expect(routes.filter((r) => r.audited).length).toBeGreaterThanOrEqual(10);
    const openapi = await m.api('GET', '/api/v1/openapi.json');
    expect(openapi.body.paths['/api/v1/remotes'].post['x-debvisor-audit']).toMatchObject({
      action: 'remote.create',
    });
  });

  it('never records a secret: neither the tokens used nor the credential keys, in the table or the file sink', async () => {
    const auditFile = join(tempDir('debvisor-audit-file-'), 'log', 'manager-audit.log');
    const m = await manager({ env: { DEBVISOR_AUDIT_FILE: auditFile } });
    const port = await freePort();
    await m.api('POST', '/api/v1/remotes', unreachableRemote('dc-s', port));
    await m.api('POST', '/api/v1/remotes/dc-s/credentials', {
      name: 'third',
      key: KEY_B.replace('fedcba', 'abcdef'),
      addAnyway: true,
    });
    await m.api('POST', '/api/v1/remotes', {
      ...unreachableRemote('dc-t', port),
      credentials: [{ name: 'x', key: 'not-a-key dvk_0123456789abcdef_leakedsecretvalue1234' }],
    });
    await m.api('PATCH', '/api/v1/remotes/dc-s', { description: `note ${KEY_A}` });
    await m.api('GET', '/api/v1/remotes', undefined, {
      token: `dvdm_${'1'.repeat(16)}_${'T'.repeat(43)}`,
    });
    await m.api('DELETE', '/api/v1/remotes/dc-s/credentials/admin');
    await m.manager.app.get(AuditWriter).flush();

    const table = (
      await query<{ row: string }>(
        m.databaseUrl!,
        'SELECT row_to_json(a)::text AS row FROM audit_log a',
      )
    )
      .map((r) => r.row)
      .join('\n');
    const file = readFileSync(auditFile, 'utf8');
    expect(table.length).toBeGreaterThan(1000);
    for (const text of [table, file]) {
      for (const secret of [
        KEY_A.split('_').slice(2).join('_'),
        KEY_B.split('_').slice(2).join('_'),
        m.token!.split('_').slice(2).join('_'),
        'T'.repeat(43),
        'leakedsecretvalue1234',
      ]) {
        expect(text).not.toContain(secret);
      }
    }
    // The file sink holds the same events, in the same order, in a chain of its own.
    const dbEntries = await auditRows(m.databaseUrl!);
    const fileEntries = file
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as AuditEntry);
    expect(fileEntries.map((e) => [e.action, e.outcome, e.traceId])).toEqual(
      dbEntries.map((e) => [e.action, e.outcome, e.traceId]),
    );
    await expect(verifyFiles([auditFile], { fromGenesis: true })).resolves.toMatchObject({
      ok: true,
      entries: dbEntries.length,
    });
    expect(statSync(auditFile).mode & 0o777).toBe(0o640);
  });
});

describe('calls to agents, VM power actions and tasks (a real cluster)', () => {
  let cluster: TestCluster;
  let identity: Awaited<ReturnType<typeof createManagerIdentity>>;
  let key: string;

  beforeAll(async () => {
    identity = await createManagerIdentity('audit-spec');
    cluster = await startCluster({
      clusterId: 'dc-audit',
      nodes: 1,
      vmsPerNode: 2,
      trustedClientCaPem: identity.ca.certPem,
    });
    key = await cluster.createApiKey(['*'], { principal: 'manager' });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('records every agent call with RPC, remote, key id and outcome, a power action before the agent is asked, and the task’s end', async () => {
    const m = await manager({ stateDir: stateDirWithClientIdentity(identity) });
    const added = await m.api('POST', '/api/v1/remotes', {
      id: 'dc-audit',
      endpoints: [cluster.agents[0].endpoint],
      caCertPem: cluster.caPem,
      credentials: [{ name: 'admin', key }],
    });
    expect(added.status, added.text).toBe(201);
    await m.api('GET', '/api/v1/resources/refresh');
    const vms = (await m.api('GET', '/api/v1/resources?type=vm&remote=dc-audit')).body.items as {
      id: string;
      status: string;
    }[];
    const vm = vms[0];
    const action = vm.status === 'running' ? 'stop' : 'start';
    const accepted = await m.api(
      'POST',
      `/api/v1/remotes/dc-audit/vms/${vm.id}/${action}`,
      undefined,
      { headers: { 'x-trace-id': 'audit-power-0001' } },
    );
    expect(accepted.status, accepted.text).toBe(202);
    const taskId = accepted.body.taskId as string;
    await eventually(
      async () =>
        (await m.api('GET', `/api/v1/tasks/${taskId}`)).body.state === 'succeeded'
          ? true
          : undefined,
      20_000,
      'the task',
    );
    await m.manager.app.get(AuditWriter).flush();

    const entries = await auditRows(m.databaseUrl!);
    const keyId = key.split('_')[1];
    expect(
      entries.find(
        (e) => e.action === 'agent.call' && e.details.rpc === 'NodeService.GetClusterInfo',
      ),
    ).toMatchObject({
      principal: 'admin@local',
      outcome: 'success',
      target: '/remotes/dc-audit',
      details: { remote: 'dc-audit', keyId },
    });
    expect(
      entries.filter((e) => e.action === 'agent.call' && e.details.rpc === 'VmService.ListVms')
        .length,
    ).toBeGreaterThan(0);

    const rpc = action === 'start' ? 'VmService.StartVm' : 'VmService.StopVm';
    const power = entries
      .filter((e) => e.traceId === 'audit-power-0001')
      .map((e) => [e.action, e.outcome, e.details.rpc ?? null]);
    expect(power).toEqual([
      [`vm.power.${action}`, 'attempt', null],
      [`vm.power.${action}`, 'success', null],
      ['agent.call', 'attempt', rpc],
      ['agent.call', 'success', rpc],
      ['agent.call', 'success', 'VmService.GetVm'],
      ['task.finish', 'success', null],
    ]);
    const target = `/remotes/dc-audit/vms/${vm.id}`;
    for (const entry of entries.filter((e) => e.traceId === 'audit-power-0001'))
      expect(entry).toMatchObject({ principal: 'admin@local', target });
    expect(
      entries.find((e) => e.action === `vm.power.${action}` && e.outcome === 'success')!.details,
    ).toMatchObject({ taskId });
    expect(entries.find((e) => e.action === 'task.finish')!.details).toMatchObject({
      taskId,
      type: `vm.${action}`,
      owner: 'admin@local!bootstrap',
    });
    await expect(verifyDatabase(m.databaseUrl!)).resolves.toMatchObject({ ok: true });
  });
});

describe('append-only by trigger and by grants', () => {
  it('serves as a runtime role that may only read and add audit entries, while migrations and grants run as the owner', async () => {
    const { m, adminUrl, appUrl, role } = await managerWithRuntimeRole();
    await m.api('POST', '/api/v1/remotes', unreachableRemote('dc-g', await freePort()));
    expect(m.logs()).toContain('the audit log is append-only by trigger and by grants');
    expect(m.logs()).not.toContain('protected by its trigger only');
    const sessions = await query<{ usename: string }>(
      adminUrl,
      'SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    expect(sessions.map((s) => s.usename)).toEqual([role]);

    for (const sql of [
      "UPDATE audit_log SET principal = 'mallory'",
      'DELETE FROM audit_log',
      'TRUNCATE audit_log',
    ]) {
      await expect(query(appUrl, sql), sql).rejects.toMatchObject({
        code: '42501',
        message: expect.stringContaining('permission denied'),
      });
    }
    // The superuser holds every grant: the trigger refuses it all the same.
    for (const sql of [
      "UPDATE audit_log SET principal = 'mallory'",
      'DELETE FROM audit_log WHERE seq = 1',
      'TRUNCATE audit_log',
    ]) {
      await expect(query(adminUrl, sql), sql).rejects.toMatchObject({
        code: '23001',
        message: expect.stringContaining('the audit log is append-only'),
      });
    }
    expect((await query(appUrl, 'SELECT count(*)::int AS n FROM audit_log'))[0].n).toBeGreaterThan(
      2,
    );
    // Tables of later migrations are covered by the default privileges.
    await query(adminUrl, 'CREATE TABLE later_feature (id int)');
    await query(appUrl, 'INSERT INTO later_feature VALUES (1)');
    await expect(query(appUrl, 'CREATE TABLE sneaky (id int)')).rejects.toMatchObject({
      code: '42501',
    });
    await expect(verifyDatabase(adminUrl)).resolves.toMatchObject({ ok: true });
  });

  it('warns at start-up when the audit log is protected by its trigger only', async () => {
    const m = await manager();
    expect(m.logs()).toMatch(
      /"level":"warn".*the audit log is protected by its trigger only: the manager connects as postgres, a superuser/,
    );
  });

  it('creates its runtime role with the embedded PostgreSQL, keeps the password 0600, and serves as that role across restarts', async () => {
    const stateDir = tempDir('debvisor-manager-embedded-');
    const first = await startTestManager({ stateDir });
    started.push(first);
    expect(statSync(join(stateDir, 'postgres-app.password')).mode & 0o777).toBe(0o600);
    expect(first.logs()).toContain('"role":"debvisor_app"');
    expect(first.logs()).toContain('the audit log is append-only by trigger and by grants');
    const port = readFileSync(join(stateDir, 'postgres/postmaster.pid'), 'utf8').split('\n')[3];
    const appUrl = `postgres://debvisor_app:${readFileSync(join(stateDir, 'postgres-app.password'), 'utf8').trim()}@127.0.0.1:${port}/postgres`;
    await expect(query(appUrl, 'DELETE FROM audit_log')).rejects.toMatchObject({ code: '42501' });

    // The verifier finds the running embedded database the way the manager does.
    expect((await first.api('GET', '/api/v1/remotes')).status).toBe(200);
    const running = capture();
    expect(await runVerify([], { ...running.io, env: { DEBVISOR_STATE_DIR: stateDir } })).toBe(0);
    expect(running.out()).toMatch(/audit log intact \(embedded PostgreSQL in .*\): \d+ entries/);

    await first.stop();
    started.splice(started.indexOf(first), 1);
    // … and starts it for the check when the manager is stopped.
    const stopped = capture();
    expect(await runVerify([], { ...stopped.io, env: { DEBVISOR_STATE_DIR: stateDir } })).toBe(0);
    expect(stopped.out()).toContain('(started for the check)');

    const second = await startTestManager({ stateDir, token: first.token });
    started.push(second);
    expect((await second.api('GET', '/api/v1/audit?limit=1')).status).toBe(200);
    expect(second.logs()).toContain('the audit log is append-only by trigger and by grants');
  }, 180_000);
});

describe('fail closed', () => {
  it('refuses a change with 503 and changes nothing while audit entries cannot be written', async () => {
    const { m, adminUrl, role } = await managerWithRuntimeRole();
    const port = await freePort();
    await m.api('GET', '/api/v1/remotes'); // the token's first use is recorded while that still works
    await query(adminUrl, `REVOKE INSERT ON audit_log FROM ${role}`);

    const refused = await m.api('POST', '/api/v1/remotes', unreachableRemote('dc-f', port));
    expect(refused.status).toBe(503);
    expect(refused.body).toEqual({
      error: {
        code: 'audit_unavailable',
        message: expect.stringContaining('nothing was changed'),
        traceId: expect.any(String),
      },
    });
    const power = await m.api('POST', `/api/v1/remotes/dc-f/vms/${randomUUID()}/start`);
    expect(power.status).toBe(503);
    expect(await query(adminUrl, 'SELECT id FROM remotes')).toEqual([]);
    expect(await query(adminUrl, 'SELECT id FROM tasks')).toEqual([]);
    // Reads go on; refusals for authentication stay what they are.
    expect((await m.api('GET', '/api/v1/remotes')).status).toBe(200);
    expect((await m.api('GET', '/api/v1/remotes', undefined, { token: null })).status).toBe(401);
    expect(m.logs()).toContain('cannot write the audit log');
    const metrics = (await m.api('GET', '/metrics')).text;
    expect(
      Number(/debvisor_audit_write_failures_total\{sink="database"\} (\d+)/.exec(metrics)?.[1]),
    ).toBeGreaterThan(0);

    await query(adminUrl, `GRANT INSERT ON audit_log TO ${role}`);
    expect((await m.api('POST', '/api/v1/remotes', unreachableRemote('dc-f', port))).status).toBe(
      201,
    );
    await expect(verifyDatabase(adminUrl)).resolves.toMatchObject({ ok: true });
  });
});

describe('one chain under load', () => {
  it('keeps one linear chain with 16 concurrent writers in two processes’ writers on one database, committing in groups', async () => {
    const m = await manager();
    const url = m.databaseUrl!;
    const logger = strictMock<PinoLogger>('PinoLogger', {
      setContext: () => undefined,
      error: () => undefined,
    });
    // A second, independent writer, as a second manager process on the same database would have.
    const repository = new AuditLogRepository(url);
    let transactions = 0;
    const counting = Object.assign(Object.create(repository) as AuditLogRepository, {
      append: (events: Parameters<AuditLogRepository['append']>[0]) => (
        (transactions += 1),
        repository.append(events)
      ),
    });
    const other = new AuditWriter(
      counting,
      new AuditFileSinkRepository(undefined),
      logger,
      new MetricsService(),
    );
    const mine = m.manager.app.get(AuditWriter);
    const perWriter = 150;
    const event = (writer: number, i: number) => ({
      ts: new Date().toISOString(),
      principal: `writer-${writer}@bench`,
      action: 'vm.power.start',
      target: `/remotes/r/vms/${writer}-${i}`,
      outcome: 'success' as const,
      traceId: `w${writer}-${i}`,
      source: null,
      details: { i },
    });
    const before = (await auditRows(url)).length;
    await Promise.all(
      Array.from({ length: 16 }, async (_, writer) => {
        for (let i = 0; i < perWriter; i += 1)
          await (writer % 2 === 0 ? mine : other).write(event(writer, i));
      }),
    );
    await other.onApplicationShutdown();

    const entries = await auditRows(url);
    expect(entries.length).toBe(before + 16 * perWriter);
    expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i + 1));
    await expect(verifyChain(entries, { fromGenesis: true })).resolves.toMatchObject({
      ok: true,
      entries: entries.length,
    });
    // Each writer's own entries are in the order it wrote them.
    for (let writer = 0; writer < 16; writer += 1) {
      const mineInOrder = entries
        .filter((e) => e.principal === `writer-${writer}@bench`)
        .map((e) => e.details.i);
      expect(mineInOrder).toEqual(Array.from({ length: perWriter }, (_, i) => i));
    }
    // Group commit: the 8 writers of the second writer shared transactions.
    expect(transactions).toBeLessThan((8 * perWriter) / 2);
  });
});

describe('tamper detection', () => {
  let template: string;
  let total: number;

  beforeAll(async () => {
    // A log with some history: creations, failures, denials.
    const url = await dbs.fresh();
    const m = await startTestManager({ databaseUrl: url });
    const port = await freePort();
    for (const id of ['dc-1', 'dc-2', 'dc-3'])
      await m.api('POST', '/api/v1/remotes', unreachableRemote(id, port));
    await m.api('DELETE', '/api/v1/remotes/dc-2');
    await m.api('POST', '/api/v1/remotes/dc-1/credentials', {
      name: 'third',
      key: KEY_B.replace('fedcba', 'aaaaaa'),
      addAnyway: true,
    });
    await m.api('GET', '/api/v1/remotes', undefined, {
      token: `dvdm_${'0'.repeat(16)}_${'x'.repeat(43)}`,
    });
    await m.stop();
    template = new URL(url).pathname.slice(1);
    total = (await auditRows(url)).length;
    expect(total).toBeGreaterThanOrEqual(12);
  });

  /** A copy of the log, tampered with by `sql` as a superuser with triggers off (session_replication_role = replica). */
  async function tampered(sql: string[]): Promise<{ code: number; out: string; url: string }> {
    const url = await dbs.postgres.createDatabase(template);
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      await client.query('SET session_replication_role = replica');
      for (const statement of sql) await client.query(statement);
    } finally {
      await client.end();
    }
    const run = capture();
    const code = await runVerify(['--database-url', url], run.io);
    return { code, out: run.out(), url };
  }

  it('finds an intact log intact', async () => {
    const result = await tampered([]);
    expect(result.code).toBe(0);
    expect(result.out).toContain(`audit log intact`);
    expect(result.out).toContain(`${total} entries, seq 1 to ${total}`);
  });

  it('names an edited entry', async () => {
    const result = await tampered([
      "UPDATE audit_log SET principal = 'mallory@local' WHERE seq = 5",
    ]);
    expect(result.code).toBe(1);
    expect(result.out).toContain('audit log BROKEN');
    expect(result.out).toContain('edited entry at seq 5');
  });

  it('names an entry whose details were edited', async () => {
    const result = await tampered([
      `UPDATE audit_log SET details = details || '{"status": 200}' WHERE seq = 9`,
    ]);
    expect([result.code, result.out]).toEqual([
      1,
      expect.stringContaining('edited entry at seq 9'),
    ]);
  });

  it('names a deleted entry', async () => {
    const result = await tampered(['DELETE FROM audit_log WHERE seq = 7']);
    expect(result.code).toBe(1);
    expect(result.out).toContain('deleted entry at seq 7');
    expect(result.out).toContain('entry seq 7 is missing (deleted)');
  });

  it('names a forged entry inserted in the middle (the entries after it renumbered)', async () => {
    const result = await tampered([
      'UPDATE audit_log SET seq = seq + 100000 WHERE seq >= 6',
      'UPDATE audit_log SET seq = seq - 100000 + 1 WHERE seq >= 100000',
      `INSERT INTO audit_log (seq, ts, principal, action, target, outcome, trace_id, source, details, prev_hash, hash)
         SELECT 6, ts, 'mallory@local', 'remote.delete', '/remotes/dc-1', 'success', NULL, NULL, '{}', hash, repeat('f', 64) FROM audit_log WHERE seq = 5`,
    ]);
    expect(result.code).toBe(1);
    expect(result.out).toContain('inserted entry at seq 6');
  });

  it('names a forged entry appended with a made-up hash', async () => {
    const result = await tampered([
      `INSERT INTO audit_log (seq, ts, principal, action, target, outcome, trace_id, source, details, prev_hash, hash)
         SELECT seq + 1, ts, 'mallory@local', 'remote.delete', '/remotes/dc-1', 'success', NULL, NULL, '{}', hash, repeat('e', 64)
           FROM audit_log ORDER BY seq DESC LIMIT 1`,
    ]);
    expect(result.code).toBe(1);
    expect(result.out).toContain(`entry at seq ${total + 1}`);
  });

  it('names the first of two entries whose contents were swapped', async () => {
    const columns = [
      'ts',
      'principal',
      'action',
      'target',
      'outcome',
      'trace_id',
      'source',
      'details',
      'prev_hash',
      'hash',
    ];
    const result = await tampered([
      `UPDATE audit_log a SET ${columns.map((c) => `${c} = b.${c}`).join(', ')}
         FROM audit_log b WHERE (a.seq, b.seq) IN ((3, 10), (10, 3))`,
    ]);
    expect(result.code).toBe(1);
    expect(result.out).toContain('reordered entry at seq 3');
  });

  it('verifies an export offline, names an edited line in it, and exits 2 on bad arguments', async () => {
    const url = await dbs.postgres.createDatabase(template);
    const m = await manager({ databaseUrl: url });
    const exported = await m.api('GET', '/api/v1/audit/export', undefined, {
      token: await grantToken(url, 'auditor@local', 'Audit', '/'),
    });
    expect(exported.status).toBe(200);
    expect(exported.headers['content-type']).toContain('application/x-ndjson');
    const file = join(tempDir('debvisor-export-'), 'audit.jsonl');
    writeFileSync(file, exported.text);
    const ok = capture();
    expect(await runVerify(['--file', file], ok.io)).toBe(0);
    const lines = exported.text.trimEnd().split('\n');
    lines[3] = lines[3]
      .replace('"outcome":"attempt"', '"outcome":"success"')
      .replace('"outcome":"success"', '"outcome":"failure"');
    writeFileSync(file, `${lines.join('\n')}\n`);
    const broken = capture();
    expect(await runVerify(['--file', file], broken.io)).toBe(1);
    expect(broken.out()).toMatch(/edited entry at seq 4 \(.*audit\.jsonl, line 4\)/);
    const usage = capture();
    expect(await runVerify(['--bogus'], usage.io)).toBe(2);
    expect(usage.err()).toContain('usage: npm run audit:verify');
    expect(await runVerify(['--file', join(tempDir(), 'missing.jsonl')], capture().io)).toBe(2);
  });

  it('exits 0, 1 and 2 as the built command (npm run audit:verify)', async () => {
    if (!existsSync(VERIFY_CLI))
      throw new Error(`${VERIFY_CLI} is missing: run \`npx tsc -b apps/manager\` first`);
    const intact = await dbs.postgres.createDatabase(template);
    const broken = (await tampered(['DELETE FROM audit_log WHERE seq = 2'])).url;
    const run = async (args: string[]) => {
      const child = spawnManaged('audit:verify', process.execPath, [VERIFY_CLI, ...args], {
        env: { ...process.env, DATABASE_URL: '' },
      });
      return { code: await child.exited, output: child.output() };
    };
    expect(await run(['--database-url', intact])).toMatchObject({
      code: 0,
      output: expect.stringContaining('audit log intact'),
    });
    expect(await run(['--database-url', broken])).toMatchObject({
      code: 1,
      output: expect.stringContaining('deleted entry at seq 2'),
    });
    expect((await run(['--database-url', 'mysql://nope'])).code).toBe(2);
  });
});

describe('GET /api/v1/audit and the export', () => {
  let m: TestManager;
  let auditor: string;
  let scoped: string;

  beforeAll(async () => {
    m = await startTestManager({ databaseUrl: await dbs.fresh() });
    const port = await freePort();
    for (const id of ['dc-a', 'dc-b'])
      await m.api('POST', '/api/v1/remotes', unreachableRemote(id, port));
    await m.api('POST', '/api/v1/remotes/dc-a/credentials', {
      name: 'third',
      key: KEY_B.replace('fedcba', '0a0b0c'),
      addAnyway: true,
    });
    await m.api('DELETE', '/api/v1/remotes/dc-b');
    await m.api('DELETE', '/api/v1/remotes/dc-nope');
    auditor = await grantToken(m.databaseUrl!, 'auditor@local', 'Audit', '/');
    scoped = await grantToken(m.databaseUrl!, 'operator@local', 'Manage', '/remotes/dc-a');
  });
  afterAll(async () => {
    await m?.stop();
  });

  it('answers an auditor with the entries, newest first, and refuses a caller without audit.read on /', async () => {
    const page = await m.api('GET', '/api/v1/audit', undefined, { token: auditor });
    expect(page.status, page.text).toBe(200);
    const seqs = page.body.items.map((e: AuditEntry) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a: number, b: number) => b - a));
    expect(page.body.items[0]).toMatchObject({
      seq: expect.any(Number),
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      prevHash: expect.any(String),
    });
    const refused = await m.api('GET', '/api/v1/audit', undefined, {
      token: scoped,
      headers: { 'x-trace-id': 'audit-read-denied' },
    });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('forbidden');
    const denial = await m.api(
      'GET',
      '/api/v1/audit?action=authz.denied&principal=operator@local',
      undefined,
      { token: auditor },
    );
    expect(denial.body.items[0]).toMatchObject({
      traceId: 'audit-read-denied',
      details: { privilege: 'audit.read' },
      target: '/',
    });
  });

  it('filters by action (and the actions below it), principal, target (and below), outcome and time', async () => {
    const get = async (q: string) =>
      (await m.api('GET', `/api/v1/audit?${q}`, undefined, { token: auditor })).body
        .items as AuditEntry[];
    const remote = await get('action=remote&limit=1000');
    expect(new Set(remote.map((e) => e.action))).toEqual(
      new Set(['remote.create', 'remote.delete', 'remote.credential.add']),
    );
    expect((await get('action=remote.delete')).every((e) => e.action === 'remote.delete')).toBe(
      true,
    );
    const dcA = await get('target=/remotes/dc-a&limit=1000');
    expect(dcA.length).toBeGreaterThan(0);
    expect(
      dcA.every((e) => e.target === '/remotes/dc-a' || e.target!.startsWith('/remotes/dc-a/')),
    ).toBe(true);
    expect(dcA.some((e) => e.action === 'remote.credential.add')).toBe(true);
    const failures = await get('outcome=failure');
    expect(failures.map((e) => [e.action, e.target, e.details.code])).toEqual([
      ['remote.delete', '/remotes/dc-nope', 'not_found'],
    ]);
    expect(
      (await get('principal=admin@local&limit=1000')).every((e) => e.principal === 'admin@local'),
    ).toBe(true);
    const all = await get('limit=1000');
    const middle = all[Math.floor(all.length / 2)].ts;
    const later = await get(`from=${encodeURIComponent(middle)}&limit=1000`);
    expect(later.every((e) => e.ts >= middle)).toBe(true);
    const earlier = await get(`to=${encodeURIComponent(middle)}&limit=1000`);
    expect(earlier.every((e) => e.ts < middle)).toBe(true);
    expect(later.length + earlier.length).toBe(all.length);
  });

  it('pages with a cursor through every entry exactly once, and bounds the page size', async () => {
    const all = (await m.api('GET', '/api/v1/audit?limit=1000', undefined, { token: auditor })).body
      .items as AuditEntry[];
    const paged: number[] = [];
    let cursor: number | null = null;
    do {
      const answer: Json = await m.api(
        'GET',
        `/api/v1/audit?limit=3${cursor ? `&cursor=${cursor}` : ''}`,
        undefined,
        { token: auditor },
      );
      paged.push(...answer.body.items.map((e: AuditEntry) => e.seq));
      cursor = answer.body.nextCursor;
    } while (cursor !== null);
    expect(paged).toEqual(all.map((e) => e.seq));
    for (const bad of [
      'limit=1001',
      'limit=0',
      'outcome=maybe',
      'action=Not%20An%20Action',
      'from=yesterday',
      'target=remotes',
      'bogus=1',
    ]) {
      const answer = await m.api('GET', `/api/v1/audit?${bad}`, undefined, { token: auditor });
      expect(answer.status, bad).toBe(400);
      expect(answer.body.error.code).toBe('validation_failed');
    }
  });

  it('exports JSON lines oldest first with the chain fields, whole or filtered, verifiable offline', async () => {
    const whole = await m.api('GET', '/api/v1/audit/export', undefined, { token: auditor });
    expect(whole.status).toBe(200);
    expect(whole.headers['content-type']).toContain('application/x-ndjson');
    const entries = whole.text
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as AuditEntry);
    expect(entries[0].seq).toBe(1);
    await expect(verifyChain(entries, { fromGenesis: true })).resolves.toMatchObject({
      ok: true,
      entries: entries.length,
    });

    const filtered = await m.api('GET', '/api/v1/audit/export?action=remote.create', undefined, {
      token: auditor,
    });
    const some = filtered.text
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as AuditEntry);
    expect(some.length).toBeGreaterThan(2);
    expect(some.every((e) => e.action === 'remote.create')).toBe(true);
    await expect(verifyChain(some, { allowGaps: true })).resolves.toMatchObject({ ok: true });
    expect((await m.api('GET', '/api/v1/audit/export', undefined, { token: scoped })).status).toBe(
      403,
    );
  });

  it('records a denial decided inside a service just like one decided by the guard', async () => {
    await m.api('POST', '/api/v1/remotes', unreachableRemote('dc-c', await freePort()));
    const refused = await m.api('GET', '/api/v1/resources/refresh?remote=dc-c', undefined, {
      token: scoped,
      headers: { 'x-trace-id': 'audit-service-denied' },
    });
    expect(refused.status).toBe(403);
    const denials = await m.api(
      'GET',
      '/api/v1/audit?action=authz.denied&principal=operator@local',
      undefined,
      { token: auditor },
    );
    expect(
      denials.body.items.find((e: AuditEntry) => e.traceId === 'audit-service-denied'),
    ).toMatchObject({
      target: '/remotes/dc-c',
      outcome: 'denied',
      details: { privilege: 'remote.audit' },
    });
  });
});
