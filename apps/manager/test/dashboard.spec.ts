import { isReadPrivilege, type Privilege } from '@debvisor/permissions';
import {
  cleanupTempDirs,
  createManagerIdentity,
  freePort,
  startCluster,
  type TestCluster,
} from '@debvisor/testing';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  grantToken,
  sqlQuery,
  startTestDatabases,
  startTestManager,
  stateDirWithClientIdentity,
  type Json,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

/**
 * GET /api/v1/dashboard against a real simulated cluster: its figures are those /resources shows,
 * a tenant sees only its own VMs and tasks counted, an auditor holds no write privilege, and an
 * unreachable remote comes first with a critical alert.
 */
let dbs: TestDatabases;
let cluster: TestCluster;
let m: TestManager;
let clusterKey: string;
let vms: Json[];
let alice: string;
let auditor: string;

const get = (path: string, token?: string) => m.api('GET', path, undefined, token ? { token } : {});

async function insertTask(
  state: 'queued' | 'running',
  vmId: string | null,
  createdAt: string,
): Promise<string> {
  const id = randomUUID();
  await sqlQuery(
    m.databaseUrl!,
    `INSERT INTO tasks (id, type, state, remote_id, vm_id, owner, progress, log, created_at, started_at, updated_at)
     VALUES ($1, 'vm.migrate', $2, 'dc-d', $3, 'root@local!b', $4, '[]'::jsonb, $5, $6, $5)`,
    [
      id,
      state,
      vmId,
      state === 'running' ? 0.5 : 0,
      createdAt,
      state === 'running' ? createdAt : null,
    ],
  );
  return id;
}

beforeAll(async () => {
  const identity = await createManagerIdentity('dashboard-spec');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: 'dc-d',
      nodes: 2,
      vmsPerNode: 3,
      trustedClientCaPem: identity.ca.certPem,
    }),
  ]);
  clusterKey = await cluster.createApiKey(['*'], { principal: 'manager' });
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    stateDir: stateDirWithClientIdentity(identity),
  });
  const created = await m.api('POST', '/api/v1/remotes', {
    id: 'dc-d',
    description: 'dashboard',
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key: clusterKey }],
  });
  expect(created.status, created.text).toBe(201);
  vms = await eventually(async () => {
    await get('/api/v1/resources/refresh?remote=dc-d');
    const answer = await get('/api/v1/remotes/dc-d/vms');
    return answer.status === 200 && answer.body.items.length === 6
      ? (answer.body.items as Json[])
      : undefined;
  });
  const url = m.databaseUrl!;
  // A tenant group owning one VM, as in tenancy.spec.ts: its member holds Manage on `/` through the group.
  await sqlQuery(
    url,
    "INSERT INTO groups (id, tenant, created_at) VALUES ('tenant-a', true, now())",
  );
  alice = await grantToken(
    url,
    'alice@local',
    'Manage',
    '/remotes/dc-d/vms/00000000-0000-4000-8000-000000000000',
  );
  await sqlQuery(
    url,
    "INSERT INTO group_members (group_id, user_id, source) VALUES ('tenant-a', 'alice@local', 'local')",
  );
  await sqlQuery(
    url,
    "INSERT INTO acl_entries (id, path, principal_type, principal, role, created_at) VALUES ($1, '/', 'group', 'tenant-a', 'Manage', now())",
    [randomUUID()],
  );
  await sqlQuery(
    url,
    "INSERT INTO vm_ownership (vm_uuid, tenant_group, created_at) VALUES ($1, 'tenant-a', now())",
    [vms[0].id],
  );
  auditor = await grantToken(url, 'auditor@local', 'Audit', '/');
}, 180_000);

afterAll(async () => {
  await m?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

describe('GET /api/v1/dashboard', () => {
  it('answers the figures /resources shows: nodes, VM states, cores in use and memory of the alive nodes', async () => {
    const [dashboard, resources] = await Promise.all([
      get('/api/v1/dashboard'),
      get('/api/v1/resources'),
    ]);
    expect(dashboard.status, dashboard.text).toBe(200);
    const nodes = resources.body.items.filter((i: Json) => i.type === 'node');
    const items = resources.body.items.filter((i: Json) => i.type === 'vm');
    const alive = nodes.filter((n: Json) => n.alive);
    const cores = alive.reduce((sum: number, n: Json) => sum + n.cpuCount, 0);
    const used = alive.reduce((sum: number, n: Json) => sum + n.cpuUsage * n.cpuCount, 0);
    const count = (status: string) => items.filter((v: Json) => v.status === status).length;
    const { totals } = dashboard.body;
    expect(totals.remotes).toEqual({ total: 1, online: 1, unreachable: 0, pending: 0 });
    expect(totals.nodes).toEqual({
      total: 2,
      alive: 2,
      degraded: nodes.filter((n: Json) => n.status !== 'ok').length,
      offline: 0,
    });
    expect(totals.vms).toEqual({
      total: 6,
      running: count('running'),
      stopped: count('stopped'),
      other: 6 - count('running') - count('stopped'),
    });
    expect(totals.cpu.cores).toBe(cores);
    expect(totals.cpu.used).toBeCloseTo(used, 9);
    expect(totals.memory).toEqual({
      totalBytes: alive.reduce((sum: number, n: Json) => sum + n.memoryTotalBytes, 0),
      usedBytes: alive.reduce((sum: number, n: Json) => sum + n.memoryUsedBytes, 0),
    });
    const [remote] = dashboard.body.remotes;
    const status = resources.body.remotes[0];
    expect(remote).toMatchObject({
      remote: 'dc-d',
      status: 'online',
      since: null,
      lastRefreshAt: status.lastRefreshAt,
      error: null,
      nodes: totals.nodes,
      vms: totals.vms,
      memory: totals.memory,
    });
    expect(remote.cpu.cores).toBe(cores);
    expect(remote.cpu.usage).toBeCloseTo(used / cores, 9);
    expect(remote.privileges).toEqual(status.privileges);
    expect(remote.history.at(-1)).toEqual({
      at: status.lastRefreshAt,
      cpu: expect.any(Number),
      memory: expect.any(Number),
    });
    expect(remote.history.at(-1).cpu).toBeCloseTo(used / cores, 9);
    expect(Date.parse(dashboard.body.generatedAt)).toBeGreaterThanOrEqual(
      Date.parse(status.lastRefreshAt),
    );
  });

  it('adds one usage sample per successful refresh, oldest first', async () => {
    const before = (await get('/api/v1/dashboard')).body.remotes[0].history;
    await get('/api/v1/resources/refresh?remote=dc-d');
    const after = (await get('/api/v1/dashboard')).body.remotes[0].history;
    expect(after).toHaveLength(Math.min(60, before.length + 1));
    expect(after.slice(0, -1)).toEqual(before.slice(after.length === 60 ? 1 : 0));
    expect(Date.parse(after.at(-1).at)).toBeGreaterThan(Date.parse(before.at(-1).at));
  });

  it('lists the queued and running tasks newest first and counts them per remote; a tenant sees only its own', async () => {
    const own = await insertTask('running', vms[0].id, '2026-05-01T10:00:00Z');
    const foreign = await insertTask('queued', vms[1].id, '2026-05-01T10:05:00Z');
    try {
      const admin = (await get('/api/v1/dashboard')).body;
      expect(admin.runningTasks.map((t: Json) => t.id)).toEqual([foreign, own]);
      expect(admin.runningTasks[1]).toEqual({
        id: own,
        type: 'vm.migrate',
        state: 'running',
        remote: 'dc-d',
        vm: vms[0].id,
        progress: 0.5,
        startedAt: '2026-05-01T10:00:00.000Z',
        owner: 'root@local!b',
      });
      expect(admin.remotes[0].tasksRunning).toBe(2);
      expect(admin.totals.tasksRunning).toBe(2);

      const tenant = await get('/api/v1/dashboard', alice);
      expect(tenant.status, tenant.text).toBe(200);
      expect(tenant.body.runningTasks.map((t: Json) => t.id)).toEqual([own]);
      expect(tenant.body.totals.tasksRunning).toBe(1);
      expect(tenant.body.remotes[0].tasksRunning).toBe(1);
    } finally {
      await sqlQuery(m.databaseUrl!, 'DELETE FROM tasks WHERE id = ANY($1::uuid[])', [
        [own, foreign],
      ]);
    }
  });

  it('counts for a tenant only the VMs its group owns, with the same node figures', async () => {
    const [admin, tenant, tenantResources] = await Promise.all([
      get('/api/v1/dashboard'),
      get('/api/v1/dashboard', alice),
      get('/api/v1/resources?type=vm', alice),
    ]);
    expect(tenantResources.body.items.map((v: Json) => v.id)).toEqual([vms[0].id]);
    const running = vms[0].status === 'running' ? 1 : 0;
    const stopped = vms[0].status === 'stopped' ? 1 : 0;
    expect(tenant.body.totals.vms).toEqual({
      total: 1,
      running,
      stopped,
      other: 1 - running - stopped,
    });
    expect(tenant.body.remotes[0].vms).toEqual(tenant.body.totals.vms);
    expect(tenantResources.body.remotes[0].vms).toEqual({ total: 1, running });
    expect(tenant.body.totals.nodes).toEqual(admin.body.totals.nodes);
    // Above its VMs a tenant holds nothing outright (issue 14 item 6).
    expect(tenant.body.remotes[0].privileges).toEqual([]);
  });

  it('gives an Audit-only user the dashboard without any write privilege', async () => {
    const answer = await get('/api/v1/dashboard', auditor);
    expect(answer.status).toBe(200);
    expect(answer.body.totals.vms.total).toBe(6);
    for (const remote of answer.body.remotes) {
      expect(remote.privileges).toContain('remote.audit');
      expect(remote.privileges.filter((p: Privilege) => !isReadPrivilege(p))).toEqual([]);
    }
  });

  it('refuses a caller without remote.audit anywhere with 403 in the JSON error shape', async () => {
    const outsider = await grantToken(m.databaseUrl!, 'olaf@local', 'Admin', '/access');
    const answer = await get('/api/v1/dashboard', outsider);
    expect(answer.status).toBe(403);
    expect(answer.body.error.code).toBe('forbidden');
  });

  it('puts an unreachable remote first, with a critical alert saying since when and why', async () => {
    const endpoint = `127.0.0.1:${await freePort()}`;
    const added = await m.api('POST', '/api/v1/remotes', {
      id: 'dc-dead',
      description: 'nobody listens',
      endpoints: [endpoint],
      caCertPem: cluster.caPem,
      credentials: [{ name: 'admin', key: clusterKey }],
      addAnyway: true,
    });
    expect(added.status, added.text).toBe(201);
    await get('/api/v1/resources/refresh?remote=dc-dead');
    const dashboard = (await get('/api/v1/dashboard')).body;
    expect(dashboard.remotes.map((r: Json) => r.remote)).toEqual(['dc-dead', 'dc-d']);
    const [dead] = dashboard.remotes;
    expect(dead).toMatchObject({
      status: 'unreachable',
      since: expect.any(String),
      error: { code: 'remote_unreachable' },
    });
    expect(dead.alerts).toEqual([
      { severity: 'critical', message: `unreachable: ${dead.error.message}`, since: dead.since },
    ]);
    expect(dead.error.message).toContain(endpoint);
    expect(dashboard.alerts[0]).toEqual({
      remote: 'dc-dead',
      severity: 'critical',
      message: dead.alerts[0].message,
      since: dead.since,
    });
    expect(dashboard.totals.remotes).toEqual({ total: 2, online: 1, unreachable: 1, pending: 0 });
  });
});
