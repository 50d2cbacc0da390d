import {
  cleanupTempDirs,
  createManagerIdentity,
  sampleSum,
  startCluster,
  type TestCluster,
} from '@debvisor/testing';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

/**
 * The manager's side of high availability, with a real three-node cluster (real etcd, real agent
 * processes, sim hypervisor and storage): the HA state read from the agents, a VM's policy set by
 * Manage and refused to an auditor, a node drained through the manager as an ha.drain task, and a
 * node killed with its VMs — fenced first, its protected VMs recovered elsewhere — followed as
 * ha.* tasks with journals, audit entries and metrics.
 */
const REMOTE = 'dc-ha';
const HA_POLL = { DEBVISOR_HA_POLL_INTERVAL_SECONDS: '1' };
let dbs: TestDatabases;
let cluster: TestCluster;
let m: TestManager;
let manage: string;
let auditor: string;

const get = (path: string, token?: string) => m.api('GET', path, undefined, { token });

beforeAll(async () => {
  const identity = await createManagerIdentity('ha-spec');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: REMOTE,
      nodes: 3,
      vmsPerNode: 2,
      trustedClientCaPem: identity.ca.certPem,
      agentConfig: () => ({ ha: { tickMs: 250, coordinatorTtlSeconds: 3 } }),
    }),
  ]);
  const key = await cluster.createApiKey(['*'], { principal: 'manager' });
  const databaseUrl = await dbs.fresh();
  m = await startTestManager({
    databaseUrl,
    stateDir: stateDirWithClientIdentity(identity),
    env: HA_POLL,
  });
  const added = await m.api('POST', '/api/v1/remotes', {
    id: REMOTE,
    endpoints: cluster.agents.map((agent) => agent.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key }],
  });
  expect(added.status, added.text).toBe(201);
  manage = await grantToken(databaseUrl, 'operator@local', 'Manage', '/');
  auditor = await grantToken(databaseUrl, 'auditor@local', 'Audit', '/');
}, 180_000);

afterAll(async () => {
  await m?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

async function vms(): Promise<Json[]> {
  await get(`/api/v1/resources/refresh?remote=${REMOTE}`);
  const answer = await get(`/api/v1/remotes/${REMOTE}/vms`);
  expect(answer.status, answer.text).toBe(200);
  return answer.body.items;
}

async function remoteHa(): Promise<Json> {
  const answer = await get(`/api/v1/remotes/${REMOTE}/ha`);
  expect(answer.status, answer.text).toBe(200);
  return answer.body;
}

function protect(vmId: string, policy: Json = {}, token = manage) {
  return m.api('PUT', `/api/v1/remotes/${REMOTE}/vms/${vmId}/ha`, policy, { token });
}

async function taskEnds(taskId: string, timeoutMs = 60_000): Promise<Json> {
  return eventually(
    async () => {
      const task = await get(`/api/v1/tasks/${taskId}`);
      return ['succeeded', 'failed', 'cancelled'].includes(task.body.state) ? task.body : undefined;
    },
    timeoutMs,
    `task ${taskId} ends`,
  );
}

async function haTasks(type: string): Promise<Json[]> {
  const answer = await get(`/api/v1/tasks?type=${type}&limit=100`);
  expect(answer.status, answer.text).toBe(200);
  return answer.body.items;
}

function expectErrorShape(answer: { status: number; body: Json; text: string }, status: number) {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.body).toEqual({
    error: { code: expect.any(String), message: expect.any(String), traceId: expect.any(String) },
  });
}

describe('HA state from the agents', () => {
  it("reads a remote's HA state: an elected coordinator with its fencing epoch and every node online with its health score", async () => {
    const ha = await eventually(
      async () => {
        const body = await remoteHa();
        return body.coordinator && body.nodes.every((n: Json) => n.health) ? body : undefined;
      },
      30_000,
      'a coordinator and every node scored',
    );
    expect(ha.nodes.map((n: Json) => [n.node, n.state, n.alive]).sort()).toEqual([
      ['node-1', 'online', true],
      ['node-2', 'online', true],
      ['node-3', 'online', true],
    ]);
    expect(ha.nodes.filter((n: Json) => n.coordinator).map((n: Json) => n.node)).toEqual([
      ha.coordinator,
    ]);
    expect(Number(ha.fencingEpoch)).toBeGreaterThan(0);
    for (const node of ha.nodes) {
      expect(node.health.score).toBeGreaterThan(0);
      expect(node.health.probes.map((p: Json) => p.name)).toContain('hypervisor');
    }
    expect(ha.privileges).toEqual(expect.arrayContaining(['remote.audit', 'node.maintenance']));
    const overview = await eventually(async () => {
      const answer = await get('/api/v1/ha');
      const remote = answer.body.remotes?.find((r: Json) => r.remote === REMOTE);
      return remote?.status === 'ok' ? remote : undefined;
    });
    expect(overview).toMatchObject({
      coordinator: ha.coordinator,
      nodes: { online: 3, fenced: 0 },
      alerts: [],
    });
    const metrics = (await get('/metrics')).text;
    expect(sampleSum(metrics, 'debvisor_ha_coordinator_up', { remote: REMOTE })).toBe(1);
    expect(sampleSum(metrics, 'debvisor_ha_nodes', { remote: REMOTE, state: 'online' })).toBe(3);
  });
});

describe('a remote whose credential may not read HA', () => {
  it('answers the HA state as unavailable with the reason, on the remote and the VM, and refuses policy changes naming the permission', async () => {
    const readOnly = await cluster.createApiKey(['node:registry:read', 'vm:instance:read'], {
      principal: 'manager-ro',
    });
    const added = await m.api('POST', '/api/v1/remotes', {
      id: 'dc-ha-ro',
      endpoints: cluster.agents.map((agent) => agent.endpoint),
      caCertPem: cluster.caPem,
      credentials: [{ name: 'read-only', key: readOnly }],
    });
    expect(added.status, added.text).toBe(201);
    const ha = await get('/api/v1/remotes/dc-ha-ro/ha');
    expect(ha.status, ha.text).toBe(200);
    expect(ha.body).toMatchObject({ available: false, nodes: [], vms: [], coordinator: null });
    expect(ha.body.error.message).toContain('ha:status:read');
    const [vm] = await vms();
    const vmHa = await get(`/api/v1/remotes/dc-ha-ro/vms/${vm.id}/ha`);
    expect(vmHa.status, vmHa.text).toBe(200);
    expect(vmHa.body).toMatchObject({ available: false, protected: false, ha: null });
    const refused = await m.api('PUT', `/api/v1/remotes/dc-ha-ro/vms/${vm.id}/ha`, {});
    expectErrorShape(refused, 403);
    expect(refused.body.error.message).toContain('ha:policy:write');
    const overview = await eventually(async () => {
      const remote = (await get('/api/v1/ha')).body.remotes.find(
        (r: Json) => r.remote === 'dc-ha-ro',
      );
      return remote?.status === 'unavailable' ? remote : undefined;
    });
    expect(overview.error.message).toContain('ha:status:read');
    expect((await m.api('DELETE', '/api/v1/remotes/dc-ha-ro')).status).toBe(204);
  });
});

describe('HA policies', () => {
  it('puts a VM under HA with the Manage role, shows it protected, and takes it out again', async () => {
    const [vm] = await vms();
    const set = await protect(vm.id, { priority: 500, maxRelocations: 3 });
    expect(set.status, set.text).toBe(200);
    expect(set.body).toMatchObject({
      remote: REMOTE,
      vm: vm.id,
      available: true,
      protected: true,
      ha: {
        state: 'protected',
        policy: {
          enabled: true,
          priority: 500,
          maxRelocations: 3,
          maxRestarts: 1,
          onNoNode: 'wait',
        },
      },
    });
    // The coordinator records where the VM runs at its next look (a tick).
    const read = await eventually(async () => {
      const answer = await get(`/api/v1/remotes/${REMOTE}/vms/${vm.id}/ha`, auditor);
      expect(answer.status, answer.text).toBe(200);
      return answer.body.ha?.node ? answer.body : undefined;
    });
    expect(read).toMatchObject({
      protected: true,
      ha: { state: 'protected', node: vm.node },
      node: { node: vm.node, state: 'online' },
    });
    expect((await remoteHa()).vms.map((v: Json) => v.vm)).toContain(vm.id);

    const removed = await m.api('DELETE', `/api/v1/remotes/${REMOTE}/vms/${vm.id}/ha`, undefined, {
      token: manage,
    });
    expect(removed.status, removed.text).toBe(204);
    expectErrorShape(
      await m.api('DELETE', `/api/v1/remotes/${REMOTE}/vms/${vm.id}/ha`, undefined, {
        token: manage,
      }),
      404,
    );
    expect((await get(`/api/v1/remotes/${REMOTE}/vms/${vm.id}/ha`)).body).toMatchObject({
      protected: false,
      ha: null,
    });
    const audit = await get(`/api/v1/audit?action=vm.ha&target=/remotes/${REMOTE}/vms/${vm.id}`);
    expect(audit.body.items.map((e: Json) => [e.action, e.outcome, e.principal])).toEqual(
      expect.arrayContaining([
        ['vm.ha.policy.set', 'success', 'operator@local'],
        ['vm.ha.policy.remove', 'success', 'operator@local'],
      ]),
    );
  });

  it('refuses an auditor every HA change, a bad policy and an unknown VM, with the JSON error shape, changing nothing', async () => {
    const [vm] = await vms();
    const path = `/api/v1/remotes/${REMOTE}/vms/${vm.id}/ha`;
    const denied = await protect(vm.id, {}, auditor);
    expectErrorShape(denied, 403);
    expect(denied.body.error.message).toContain('vm.ha');
    expectErrorShape(await m.api('DELETE', path, undefined, { token: auditor }), 403);
    expectErrorShape(
      await m.api('POST', `/api/v1/remotes/${REMOTE}/nodes/node-1/maintenance`, undefined, {
        token: auditor,
      }),
      403,
    );
    const tooHigh = await protect(vm.id, { priority: 5000 });
    expectErrorShape(tooHigh, 400);
    expect(tooHigh.body.error.message).toContain('priority');
    expectErrorShape(await protect(vm.id, { onNoNode: 'panic' }), 400);
    expectErrorShape(await protect(vm.id, { preferredNodes: ['-rf'] }), 400);
    expectErrorShape(await protect(vm.id, { fencing: 'off' }), 400);
    expectErrorShape(
      await m.api('PUT', `/api/v1/remotes/${REMOTE}/vms/not-a-uuid/ha`, {}, { token: manage }),
      400,
    );
    expectErrorShape(await protect('0b5c3f4e-1111-4222-8333-444455556666'), 404);
    expect((await get(path)).body.protected).toBe(false);
  });
});

describe('maintenance through the manager', () => {
  it("follows a drain as the operator's ha.drain task with each move in its journal, refuses a second one, and fails it when called off before the node is empty", async () => {
    const node = 'node-3';
    // One of its VMs may run only in a node group no node is in: the cluster moves the others
    // away and reports that one, so the drain is still under way when it is called off.
    const [stuck, ...movable] = (await vms()).filter((v) => v.node === node);
    expect(stuck, `a VM on ${node}`).toBeDefined();
    expect((await protect(stuck!.id, { nodeGroup: 'gpu' })).status).toBe(200);
    const path = `/api/v1/remotes/${REMOTE}/nodes/${node}/maintenance`;
    const asked = await m.api('POST', path, undefined, { token: manage });
    expect(asked.status, asked.text).toBe(202);
    const draining = await eventually(
      async () => {
        const seen = (await remoteHa()).nodes.find((n: Json) => n.node === node);
        return seen?.state === 'draining' &&
          seen.reason.includes('1 VM(s) still on the node') &&
          seen.reason.includes('cannot move: no node fits')
          ? seen
          : undefined;
      },
      60_000,
      `${node} drained but for one VM`,
    );
    const running = await eventually(async () => {
      const task = (await get(`/api/v1/tasks/${asked.body.taskId}`)).body;
      const lines = task.log.map((l: Json) => l.message as string);
      const moved = lines.filter((l: string) => l.includes(': drain-vm-moved — '));
      return lines.some((l: string) => l.includes(': drain-vm-failed — ')) &&
        moved.length === movable.length
        ? task
        : undefined;
    });
    expect(draining.reason).toContain('not in the node group gpu');
    expect(running).toMatchObject({
      type: 'ha.drain',
      state: 'running',
      owner: expect.stringMatching(/^operator@local/),
      target: { remote: REMOTE, vm: null },
    });
    expectErrorShape(await m.api('POST', path, undefined, { token: manage }), 409);

    const back = await m.api('DELETE', path, undefined, { token: manage });
    expect(back.status, back.text).toBe(200);
    expect(back.body).toMatchObject({ node, state: 'online' });
    const ended = await taskEnds(asked.body.taskId);
    expect(ended.state, JSON.stringify(ended)).toBe('failed');
    expect(ended.error).toContain('the drain stopped before the node was empty');
    const audit = await get(`/api/v1/audit?target=/remotes/${REMOTE}/nodes/${node}`);
    expect(audit.body.items.map((e: Json) => [e.action, e.outcome])).toEqual(
      expect.arrayContaining([
        ['node.maintenance.enter', 'success'],
        ['node.maintenance.enter', 'failure'],
        ['node.maintenance.exit', 'success'],
      ]),
    );
    const events = await get(`/api/v1/audit?action=ha.event&target=/remotes/${REMOTE}`);
    expect(events.body.items.map((e: Json) => e.details.kind)).toContain('drain-failed');
    const removed = await m.api(
      'DELETE',
      `/api/v1/remotes/${REMOTE}/vms/${stuck!.id}/ha`,
      undefined,
      {
        token: manage,
      },
    );
    expect(removed.status, removed.text).toBe(204);
  });
});

describe('a node dies', () => {
  it('follows the fence and the recovery of its protected VMs as ha.* tasks with journals, audit entries and metrics', async () => {
    const victim = cluster.agents.find((agent) => agent.nodeId === 'node-2')!;
    const all = await vms();
    const doomed = all.filter((v) => v.node === victim.nodeId);
    expect(doomed.length).toBeGreaterThan(0);
    for (const vm of doomed) expect((await protect(vm.id)).status).toBe(200);
    // Protected once the coordinator has recorded each VM where it runs.
    await eventually(async () => {
      const ha = await remoteHa();
      return doomed.every((vm) =>
        ha.vms.some(
          (v: Json) => v.vm === vm.id && v.state === 'protected' && v.node === victim.nodeId,
        ),
      )
        ? true
        : undefined;
    });

    const coordinatorBefore = (await remoteHa()).coordinator;
    await victim.kill();

    let seen: Json;
    const fenced = await eventually(
      async () => {
        const ha = (seen = await remoteHa());
        const node = ha.nodes.find((n: Json) => n.node === victim.nodeId);
        const moved = doomed.every((vm) => {
          const seen = ha.vms.find((v: Json) => v.vm === vm.id);
          return seen?.state === 'protected' && seen.node !== victim.nodeId;
        });
        return node?.state === 'fenced' && moved ? ha : undefined;
      },
      90_000,
      `${victim.nodeId} fenced and its VMs running elsewhere`,
    ).catch((error: Error) => {
      const states = {
        coordinator: seen?.coordinator,
        nodes: seen?.nodes.map((n: Json) => [n.node, n.state, n.reason]),
        vms: seen?.vms.map((v: Json) => [v.name, v.state, v.node, v.reason]),
      };
      throw new Error(
        `${error.message}; coordinator before the kill: ${coordinatorBefore}; last seen ${JSON.stringify(states)}`,
      );
    });
    expect(fenced.nodes.find((n: Json) => n.node === victim.nodeId).fence).toMatchObject({
      state: 'fenced',
    });

    const fence = await eventually(async () => {
      const [task] = (await haTasks('ha.fence')).filter((t) => t.state === 'succeeded');
      return task;
    });
    expect(fence).toMatchObject({
      owner: 'debvisor-manager',
      target: { remote: REMOTE, vm: null },
    });
    const journal = fence.log.map((l: Json) => l.message).join('\n');
    expect(journal).toContain(`node ${victim.nodeId} fenced`);
    // The cluster's own event log is in the journal too.
    expect(journal).toMatch(/^cluster \S+: fenced/m);
    const recoveries = await eventually(async () => {
      const done = (await haTasks('ha.recovery')).filter((t) => t.state === 'succeeded');
      return done.length >= doomed.length ? done : undefined;
    });
    expect(recoveries.map((t) => t.target.vm).sort()).toEqual(doomed.map((v) => v.id).sort());
    for (const task of recoveries)
      expect(task.log.at(-2).message).toMatch(/protected on node node-[13]/);

    const events = await get(`/api/v1/audit?action=ha.event&target=/remotes/${REMOTE}`);
    const kinds = events.body.items.map((e: Json) => e.details.kind);
    expect(kinds).toContain('fenced');
    expect(kinds.filter((k: string) => k === 'vm-recovered')).toHaveLength(doomed.length);
    const metrics = (await get('/metrics')).text;
    expect(
      sampleSum(metrics, 'debvisor_ha_recoveries_total', { remote: REMOTE, outcome: 'succeeded' }),
    ).toBe(doomed.length);
    expect(sampleSum(metrics, 'debvisor_ha_nodes', { remote: REMOTE, state: 'fenced' })).toBe(1);
    const overview = (await get('/api/v1/ha')).body.remotes.find((r: Json) => r.remote === REMOTE);
    expect(overview.alerts).toContainEqual({
      severity: 'critical',
      message: expect.stringContaining(`node ${victim.nodeId} is fenced`),
    });
  }, 240_000);
});

describe('a manager restart during HA events', () => {
  it('takes up the ha.* tasks left running: each follows its event again from the cluster, with the lines of the time it was down, and ends with it or says why it cannot', async () => {
    // After "a node dies": a fenced node and its VMs, recovered (or given up on, under load).
    const ha = await remoteHa();
    const fencedNode = ha.nodes.find((n: Json) => n.state === 'fenced');
    expect(fencedNode, JSON.stringify(ha.nodes)).toBeDefined();
    const recovered =
      ha.vms.find((v: Json) => v.state === 'protected') ??
      ha.vms.find((v: Json) => v.state === 'error');
    expect(recovered, JSON.stringify(ha.vms)).toBeDefined();
    const online = ha.nodes.find((n: Json) => n.state === 'online');
    expect(online).toBeDefined();
    const fencesBefore = (await haTasks('ha.fence')).length;

    const { databaseUrl, stateDir, token } = m;
    await m.stop();
    // What a stop in the middle of HA events leaves: tasks still marked running, their journals as
    // the previous process wrote them (a fence and a drain name their node, a recovery its VM).
    const at = new Date(Date.now() - 10 * 60_000);
    const line = (message: string) => JSON.stringify([{ at: at.toISOString(), message }]);
    const ids = {
      fence: 'bbbbbbbb-0000-4000-8000-000000000001',
      recovery: 'bbbbbbbb-0000-4000-8000-000000000002',
      drain: 'bbbbbbbb-0000-4000-8000-000000000003',
      unknown: 'bbbbbbbb-0000-4000-8000-000000000004',
    };
    const client = new Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      await client.query(
        `INSERT INTO tasks (id, type, state, remote_id, vm_id, owner, progress, log, created_at, started_at, updated_at)
         VALUES ($1, 'ha.fence', 'running', $5, NULL, 'debvisor-manager', 0, $6, $10, $10, $10),
                ($2, 'ha.recovery', 'running', $5, $9, 'debvisor-manager', 0, $7, $10, $10, $10),
                ($3, 'ha.drain', 'running', $5, NULL, 'operator@local!t', 0, $8, $10, $10, $10),
                ($4, 'ha.fence', 'running', $5, NULL, 'debvisor-manager', 0, '[]', $10, $10, $10)`,
        [
          ids.fence,
          ids.recovery,
          ids.drain,
          ids.unknown,
          REMOTE,
          line(`node ${fencedNode.node} suspect: lease expired`),
          line(`VM ${recovered.name} recovering on node ${fencedNode.node}`),
          line(`maintenance asked for: node ${online.node} draining: 1 VM to move`),
          recovered.vm,
          at,
        ],
      );
    } finally {
      await client.end();
    }
    m = await startTestManager({ databaseUrl, stateDir, token, env: HA_POLL });

    const fence = await taskEnds(ids.fence);
    expect(fence.state, JSON.stringify(fence)).toBe('succeeded');
    const fenceJournal = fence.log.map((l: Json) => l.message).join('\n');
    expect(fenceJournal).toContain(
      `the manager restarted: following this fence of node ${fencedNode.node} again`,
    );
    expect(fenceJournal).toContain(`node ${fencedNode.node} fenced`);
    // The cluster's events since the task's last line, though they came while the manager was down.
    expect(fenceJournal).toMatch(/^cluster \S+: fenced/m);

    // A recovery ends as the cluster's HA did: protected again, or given up (error).
    const recovery = await taskEnds(ids.recovery);
    const recoveryJournal = recovery.log.map((l: Json) => l.message).join('\n');
    expect(recoveryJournal).toContain(
      `the manager restarted: following this recovery of VM ${recovered.vm} again`,
    );
    expect(recovery.state, JSON.stringify(recovery)).toBe(
      recovered.state === 'protected' ? 'succeeded' : 'failed',
    );
    expect(recoveryJournal).toContain(
      `${recovered.name} ${recovered.clusterState} on node ${recovered.node}`,
    );

    const drain = await taskEnds(ids.drain);
    expect(drain.state).toBe('failed');
    expect(drain.error).toContain(
      `ended while the manager was restarting; the cluster now shows: node ${online.node} online`,
    );

    const unknown = await taskEnds(ids.unknown);
    expect(unknown.state).toBe('failed');
    expect(unknown.error).toContain('its journal does not say which node it followed');

    // No task of its own for the events already followed: the fence's history opens none.
    expect(await haTasks('ha.fence')).toHaveLength(fencesBefore + 2);
    const events = await get(`/api/v1/audit?action=ha.event&target=/remotes/${REMOTE}`);
    expect(
      events.body.items
        .filter((e: Json) => Object.values(ids).includes(e.details.taskId))
        .map((e: Json) => e.details.kind)
        .sort(),
    ).toEqual(
      [
        'drain-failed',
        'fenced',
        recovered.state === 'protected' ? 'vm-recovered' : 'vm-recovery-failed',
      ].sort(),
    );
  }, 120_000);
});
