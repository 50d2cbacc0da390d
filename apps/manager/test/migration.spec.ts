import {
  cleanupTempDirs,
  createManagerIdentity,
  startCluster,
  type AgentClient,
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
 * Migrations through the manager against real agents of two simulated clusters (real etcd, real
 * agent processes, the sim hypervisor's migration model): within a remote, across remotes through
 * the tunnel, one operation per VM, cancel, privileges, and a manager restart mid-transfer.
 */
let dbs: TestDatabases;
let identity: Awaited<ReturnType<typeof createManagerIdentity>>;
let east: TestCluster;
let west: TestCluster;
let eastKey: string;
let westKey: string;
let m: TestManager;
let eastAgent: AgentClient;
let westAgent: AgentClient;

const FINAL = ['succeeded', 'failed', 'cancelled'];
/** Slow enough to act on a migration under way (a sim guest of a few GiB takes seconds). */
const SLOW = 20_000_000;

beforeAll(async () => {
  identity = await createManagerIdentity('migration-spec');
  const agentConfig = () => ({ migration: { progressIntervalMs: 100 } });
  [dbs, east, west] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: 'mig-east',
      nodes: 3,
      vmsPerNode: 4,
      trustedClientCaPem: identity.ca.certPem,
      agentConfig,
    }),
    startCluster({
      clusterId: 'mig-west',
      nodes: 1,
      vmsPerNode: 0,
      trustedClientCaPem: identity.ca.certPem,
      agentConfig,
    }),
  ]);
  [eastKey, westKey] = await Promise.all([
    east.createApiKey(['*'], { principal: 'manager' }),
    west.createApiKey(['*'], { principal: 'manager' }),
  ]);
  eastAgent = east.connect(eastKey);
  westAgent = west.connect(westKey);
  m = await managerWithRemotes(await dbs.fresh());
}, 180_000);

afterAll(async () => {
  eastAgent?.close();
  westAgent?.close();
  await m?.stop();
  await Promise.all([east?.stop(), west?.stop()]);
  await dbs?.stop();
  cleanupTempDirs();
});

async function managerWithRemotes(databaseUrl: string): Promise<TestManager> {
  const manager = await startTestManager({
    databaseUrl,
    stateDir: stateDirWithClientIdentity(identity),
  });
  for (const [cluster, key] of [
    [east, eastKey],
    [west, westKey],
  ] as const) {
    const added = await manager.api('POST', '/api/v1/remotes', {
      id: cluster.clusterId,
      description: `simulated ${cluster.clusterId}`,
      endpoints: cluster.agents.map((a) => a.endpoint),
      caCertPem: cluster.caPem,
      credentials: [{ name: 'admin', key }],
    });
    expect(added.status, added.text).toBe(201);
  }
  return manager;
}

/** A running VM of mig-east on `node` that no test has used yet, the smallest first. */
const used = new Set<string>();
async function pickVm(node: string, manager = m): Promise<Json> {
  await manager.api('GET', '/api/v1/resources/refresh?remote=mig-east');
  const vms = (await manager.api('GET', '/api/v1/remotes/mig-east/vms')).body.items as Json[];
  const vm = vms
    .filter((v) => v.node === node && v.status === 'running' && !used.has(v.id))
    .sort((a, b) => a.memoryBytes - b.memoryBytes)[0];
  if (!vm) throw new Error(`no unused running VM on ${node}`);
  used.add(vm.id);
  return vm;
}

/** Any VM of mig-east, for requests that are refused before anything happens. */
async function anyVm(): Promise<Json> {
  await m.api('GET', '/api/v1/resources/refresh?remote=mig-east');
  return (await m.api('GET', '/api/v1/remotes/mig-east/vms')).body.items[0];
}

function migrate(
  vm: Json,
  body: Record<string, unknown>,
  options: { token?: string; manager?: TestManager } = {},
) {
  return (options.manager ?? m).api('POST', `/api/v1/remotes/mig-east/vms/${vm.id}/migrate`, body, {
    token: options.token,
  });
}

async function taskOutcome(taskId: string, manager = m, timeoutMs = 100_000): Promise<Json> {
  return eventually(
    async () => {
      const task = await manager.api('GET', `/api/v1/tasks/${taskId}`);
      return FINAL.includes(task.body.state) ? task.body : undefined;
    },
    timeoutMs,
    `task ${taskId} finished`,
  );
}

/**
 * Resolves once the migration task is transferring, the source has reported figures and the task's
 * own progress shows them (GET /tasks/{id} reads the task, then its migration record: one answer
 * can hold figures written between the two reads, with the task's fraction still the one before).
 */
async function transferring(taskId: string, manager = m): Promise<Json> {
  return eventually(
    async () => {
      const task = (await manager.api('GET', `/api/v1/tasks/${taskId}`)).body;
      if (FINAL.includes(task.state))
        throw new Error(
          `task ${taskId} ended before the transfer was seen: ${task.state} ${task.error}`,
        );
      return task.migration?.phase === 'transfer' &&
        task.migration.progress?.totalBytes > 0 &&
        task.progress > 0
        ? task
        : undefined;
    },
    30_000,
    `task ${taskId} transferring`,
  );
}

describe('within one remote', () => {
  it('checks both ends, then migrates a running VM to another node: the task succeeds with its phases journalled, and the VM runs there', async () => {
    const vm = await pickVm('node-1');
    const preflight = await m.api(
      'POST',
      `/api/v1/remotes/mig-east/vms/${vm.id}/migrate/preflight`,
      { targetNode: 'node-2' },
    );
    expect(preflight.status, preflight.text).toBe(200);
    expect(preflight.body).toMatchObject({
      ok: true,
      source: { remote: 'mig-east', node: 'node-1' },
      target: { remote: 'mig-east', node: 'node-2' },
      transport: 'direct',
    });
    const sides = new Set(preflight.body.checks.map((c: Json) => c.side));
    expect([...sides].sort()).toEqual(['manager', 'source', 'target']);

    const accepted = await migrate(vm, { targetNode: 'node-2' });
    expect(accepted.status, accepted.text).toBe(202);
    const task = await taskOutcome(accepted.body.taskId);
    expect(task, JSON.stringify(task.log)).toMatchObject({
      state: 'succeeded',
      type: 'vm.migrate',
      progress: 1,
      error: null,
      target: { remote: 'mig-east', vm: vm.id },
    });
    expect(task.migration).toMatchObject({
      phase: 'completed',
      source: { remote: 'mig-east', node: 'node-1' },
      target: { remote: 'mig-east', node: 'node-2' },
      options: { online: true, transport: 'direct', mode: 'precopy', downtimeLimitMs: 300 },
      progress: { stage: 'completed' },
      finishedAt: expect.any(String),
    });
    const phases = [...new Set(task.migration.journal.map((entry: Json) => entry.phase))];
    expect(phases).toEqual(['preflight', 'prepare', 'transfer', 'completed']);
    // The one-time cookie never reaches the task.
    expect(JSON.stringify(task)).not.toContain('dvmc_');

    expect((await eastAgent.vm.getVm({ uuid: vm.id })).runtime).toMatchObject({
      nodeId: 'node-2',
      state: 'running',
    });
    expect((await m.api('GET', `/api/v1/remotes/mig-east/vms/${vm.id}`)).body).toMatchObject({
      node: 'node-2',
      status: 'running',
    });
    const listed = await m.api('GET', `/api/v1/tasks?type=vm.migrate&vm=${vm.id}`);
    expect(listed.body.items.map((t: Json) => t.id)).toEqual([accepted.body.taskId]);
  });

  it('refuses a second operation on a VM while its migration runs (409), even two asked at the same moment', async () => {
    const vm = await pickVm('node-1');
    const [first, second] = await Promise.all([
      migrate(vm, { targetNode: 'node-3', bandwidthLimitBytes: SLOW }),
      migrate(vm, { targetNode: 'node-2', bandwidthLimitBytes: SLOW }),
    ]);
    expect([first.status, second.status].sort()).toEqual([202, 409]);
    const accepted = first.status === 202 ? first : second;
    const refused = first.status === 202 ? second : first;
    expect(refused.body.error.message).toContain(`is busy with task ${accepted.body.taskId}`);

    const power = await m.api('POST', `/api/v1/remotes/mig-east/vms/${vm.id}/stop`);
    expect(power.status).toBe(409);
    const again = await migrate(vm, { targetNode: 'node-2' });
    expect(again.status).toBe(409);
    const preflight = await m.api(
      'POST',
      `/api/v1/remotes/mig-east/vms/${vm.id}/migrate/preflight`,
      { targetNode: 'node-2' },
    );
    expect(preflight.body.ok).toBe(false);
    expect(preflight.body.checks).toContainEqual(
      expect.objectContaining({ side: 'manager', name: 'vm-operation', result: 'fail' }),
    );

    await transferring(accepted.body.taskId);
    expect((await m.api('POST', `/api/v1/tasks/${accepted.body.taskId}/cancel`)).status).toBe(202);
    expect((await taskOutcome(accepted.body.taskId)).state).toBe('cancelled');
    // The VM is free again.
    const preflightAfter = await m.api(
      'POST',
      `/api/v1/remotes/mig-east/vms/${vm.id}/migrate/preflight`,
      { targetNode: 'node-2' },
    );
    expect(preflightAfter.body.checks).toContainEqual(
      expect.objectContaining({ side: 'manager', name: 'vm-operation', result: 'pass' }),
    );
  });

  it('cancels a migration in the middle: the task ends cancelled, the VM keeps running at the source, and nothing is left at the target', async () => {
    const vm = await pickVm('node-2');
    const accepted = await migrate(vm, { targetNode: 'node-3', bandwidthLimitBytes: SLOW });
    expect(accepted.status, accepted.text).toBe(202);
    const during = await transferring(accepted.body.taskId);
    expect(during.progress).toBeLessThan(1);

    const cancel = await m.api('POST', `/api/v1/tasks/${accepted.body.taskId}/cancel`);
    expect(cancel.status, cancel.text).toBe(202);
    const task = await taskOutcome(accepted.body.taskId);
    expect(task.state).toBe('cancelled');
    expect(task.error).toContain('cancelled by admin@local!bootstrap');
    expect(task.error).toContain('checked: the VM is running on node node-2 of remote mig-east');
    expect(task.migration.phase).toBe('cancelled');
    expect(task.migration.journal.map((e: Json) => e.message)).toContainEqual(
      expect.stringContaining('cancel requested by admin@local!bootstrap'),
    );

    expect((await eastAgent.vm.getVm({ uuid: vm.id })).runtime).toMatchObject({
      nodeId: 'node-2',
      state: 'running',
      lockedBy: '',
    });
    const atTarget = await eastAgent.migration.getMigration({
      migrationId: accepted.body.taskId,
      vmUuid: vm.id,
      nodeId: 'node-3',
    });
    expect(atTarget.phase).toBe('cancelled');
    expect(
      (await eastAgent.vm.listVms({ nodeId: 'node-3' })).vms.map((v) => v.spec!.uuid),
    ).not.toContain(vm.id);
    // A finished task cannot be cancelled again.
    expect((await m.api('POST', `/api/v1/tasks/${accepted.body.taskId}/cancel`)).status).toBe(409);
  });
});

describe('across remotes', () => {
  it('moves a VM to another remote through the tunnel: it runs there, the source forgets it, and grants on the VM follow it', async () => {
    const vm = await pickVm('node-3');
    const spec = (await eastAgent.vm.getVm({ uuid: vm.id })).spec!;
    // Real (simulated) RBD mirroring: the pools paired, the VM's disks mirrored and replaying at west.
    await east.pairMirroring(west);
    for (const disk of spec.disks) await east.mirrorImage(west, disk);
    const viewer = await grantToken(
      m.databaseUrl!,
      'viewer@local',
      'Audit',
      `/remotes/mig-east/vms/${vm.id}`,
    );

    const accepted = await migrate(vm, { targetRemote: 'mig-west', targetNode: 'node-1' });
    expect(accepted.status, accepted.text).toBe(202);
    const task = await taskOutcome(accepted.body.taskId);
    expect(task, JSON.stringify(task.log)).toMatchObject({ state: 'succeeded' });
    expect(task.migration).toMatchObject({
      phase: 'completed',
      target: { remote: 'mig-west', node: 'node-1' },
      options: { transport: 'tunnel' },
    });

    expect((await westAgent.vm.getVm({ uuid: vm.id })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
    });
    expect((await m.api('GET', `/api/v1/remotes/mig-west/vms/${vm.id}`)).body).toMatchObject({
      node: 'node-1',
      status: 'running',
    });
    expect((await m.api('GET', `/api/v1/remotes/mig-east/vms/${vm.id}`)).status).toBe(404);
    const grants = await sqlQuery(
      m.databaseUrl!,
      "SELECT path FROM acl_entries WHERE principal = 'viewer@local'",
    );
    expect(grants).toEqual([{ path: `/remotes/mig-west/vms/${vm.id}` }]);
    expect(
      (await m.api('GET', `/api/v1/remotes/mig-west/vms/${vm.id}`, undefined, { token: viewer }))
        .status,
    ).toBe(200);
  });
});

describe('who may migrate', () => {
  it('refuses callers with only Audit (403) and callers without vm.migrate on the target remote (403), changing nothing', async () => {
    const vm = await anyVm();
    const count = async () =>
      (
        await sqlQuery(m.databaseUrl!, 'SELECT count(*)::int AS n FROM tasks WHERE vm_id = $1', [
          vm.id,
        ])
      )[0].n as number;
    const before = await count();
    const auditor = await grantToken(m.databaseUrl!, 'auditor@local', 'Audit', '/');
    for (const path of ['migrate', 'migrate/preflight']) {
      const refused = await m.api(
        'POST',
        `/api/v1/remotes/mig-east/vms/${vm.id}/${path}`,
        { targetNode: 'node-2' },
        { token: auditor },
      );
      expect(refused.status, path).toBe(403);
      expect(refused.body.error.code).toBe('forbidden');
    }
    const vmManager = await grantToken(
      m.databaseUrl!,
      'vm-manager@local',
      'Manage',
      `/remotes/mig-east/vms/${vm.id}`,
    );
    const noTarget = await migrate(vm, { targetNode: 'node-2' }, { token: vmManager });
    expect(noTarget.status).toBe(403);
    expect(noTarget.body.error.message).toContain('needs vm.migrate on /remotes/mig-east');
    const eastManager = await grantToken(
      m.databaseUrl!,
      'east-manager@local',
      'Manage',
      '/remotes/mig-east',
    );
    expect(
      (
        await migrate(
          vm,
          { targetRemote: 'mig-west', targetNode: 'node-1' },
          { token: eastManager },
        )
      ).status,
    ).toBe(403);
    expect(await count()).toBe(before);
  });

  it("answers another tenant's VM, and a VM the caller may not see, exactly like a missing one (404)", async () => {
    const vm = await anyVm();
    const url = m.databaseUrl!;
    await sqlQuery(
      url,
      "INSERT INTO groups (id, tenant, created_at) VALUES ('mig-tenant-a', true, now()), ('mig-tenant-b', true, now())",
    );
    const alice = await grantToken(url, 'mig-alice@local', 'Manage', '/remotes/mig-west');
    await sqlQuery(
      url,
      "INSERT INTO group_members (group_id, user_id, source) VALUES ('mig-tenant-a', 'mig-alice@local', 'local')",
    );
    await sqlQuery(
      url,
      "INSERT INTO acl_entries (id, path, principal_type, principal, role, created_at) VALUES ($1, '/', 'group', 'mig-tenant-a', 'Manage', now())",
      [randomUUID()],
    );
    await sqlQuery(
      url,
      "INSERT INTO vm_ownership (vm_uuid, tenant_group, created_at) VALUES ($1, 'mig-tenant-b', now())",
      [vm.id],
    );
    const missing = await m.api(
      'POST',
      `/api/v1/remotes/mig-east/vms/${randomUUID()}/migrate`,
      { targetNode: 'node-2' },
      { token: alice },
    );
    for (const path of ['migrate', 'migrate/preflight']) {
      const foreign = await m.api(
        'POST',
        `/api/v1/remotes/mig-east/vms/${vm.id}/${path}`,
        { targetNode: 'node-2' },
        { token: alice },
      );
      expect(foreign.status, path).toBe(404);
      expect(foreign.body.error.message).toBe(missing.body.error.message);
    }
    const stranger = await grantToken(url, 'stranger@local', 'Manage', '/remotes/mig-west');
    expect((await migrate(vm, { targetNode: 'node-2' }, { token: stranger })).status).toBe(404);
  });

  it('validates the body strictly', async () => {
    const vm = await anyVm();
    const unknown = await migrate(vm, { targetNode: 'node-2', cookie: 'dvmc_x' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.code).toBe('validation_failed');
    expect((await migrate(vm, {})).body.error.message).toContain('targetNode');
    expect((await migrate(vm, { targetNode: 'node-2', transport: 'smoke-signals' })).status).toBe(
      400,
    );
    expect((await migrate(vm, { targetNode: 'node-2', targetRemote: 'nowhere' })).status).toBe(404);
  });
});

describe('a manager restart', () => {
  it('settles a migration that was transferring when the manager stopped: the next start follows it to its true end', async () => {
    const databaseUrl = await dbs.fresh();
    const first = await managerWithRemotes(databaseUrl);
    const vm = await pickVm('node-2', first);
    // Post-copy after the first pass always completes; the limit makes the first pass take seconds.
    const bandwidth = Math.max(5_000_000, Math.round(vm.memoryBytes / 300));
    const accepted = await migrate(
      vm,
      {
        targetNode: 'node-3',
        bandwidthLimitBytes: bandwidth,
        mode: 'postcopy',
        allowPostcopy: true,
      },
      { manager: first },
    );
    expect(accepted.status, accepted.text).toBe(202);
    await transferring(accepted.body.taskId, first);
    await first.stop();
    const [left] = await sqlQuery(databaseUrl, 'SELECT state FROM tasks WHERE id = $1', [
      accepted.body.taskId,
    ]);
    expect(left.state).toBe('running');

    const second = await startTestManager({
      databaseUrl,
      stateDir: first.stateDir,
      token: first.token,
    });
    try {
      const task = await taskOutcome(accepted.body.taskId, second, 90_000);
      expect(task, JSON.stringify(task.log)).toMatchObject({ state: 'succeeded' });
      expect(task.migration.journal.map((e: Json) => e.message)).toContain(
        'the manager restarted during the transfer; asking the source how the migration stands',
      );
      expect((await eastAgent.vm.getVm({ uuid: vm.id })).runtime).toMatchObject({
        nodeId: 'node-3',
        state: 'running',
      });
    } finally {
      await second.stop();
    }
  }, 150_000);
});
