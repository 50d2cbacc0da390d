import {
  cleanupTempDirs,
  createManagerIdentity,
  startCluster,
  type TestAgent,
  type TestCluster,
} from '@debvisor/testing';
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
 * Known things never vanish, with real agents: a frozen agent (SIGSTOP) and a killed one (SIGKILL)
 * leave their node listed as unreachable or down, its VMs listed as "unknown", the remote degraded
 * and a critical dashboard alert, until the agent is back; a manager restart keeps a down node;
 * forgetting it is an audited operator action.
 */
const REMOTE = 'dc-o';
let dbs: TestDatabases;
let cluster: TestCluster;
let m: TestManager;
let stateDir: string;
let databaseUrl: string;
let token: string;

const get = (path: string) => m.api('GET', path);

async function refreshed(): Promise<{ nodes: Json[]; vms: Json[]; dashboard: Json }> {
  await get(`/api/v1/resources/refresh?remote=${REMOTE}`);
  const [nodes, vms, dashboard] = await Promise.all([
    get(`/api/v1/remotes/${REMOTE}/nodes`),
    get(`/api/v1/remotes/${REMOTE}/vms`),
    get('/api/v1/dashboard'),
  ]);
  for (const answer of [nodes, vms, dashboard]) expect(answer.status, answer.text).toBe(200);
  return { nodes: nodes.body.items, vms: vms.body.items, dashboard: dashboard.body };
}

/** Waits until the node is in `state` (and answers what the API then says). */
function nodeIn(agent: TestAgent, state: string, timeoutMs = 30_000) {
  return eventually(
    async () => {
      const seen = await refreshed();
      return seen.nodes.find((n) => n.id === agent.nodeId)?.state === state ? seen : undefined;
    },
    timeoutMs,
    `node ${agent.nodeId} ${state}`,
  );
}

function expectOutage(
  seen: { nodes: Json[]; vms: Json[]; dashboard: Json },
  agent: TestAgent,
  state: 'unreachable' | 'down',
) {
  const node = seen.nodes.find((n) => n.id === agent.nodeId);
  expect(node).toMatchObject({ state, stale: true });
  expect(Date.parse(node.stateSince)).toBeGreaterThan(Date.parse(node.lastSeenAt));
  // Every VM is still listed: the node's two as unknown, with when they were last seen.
  expect(seen.vms).toHaveLength(6);
  const unknown = seen.vms.filter((vm) => vm.status === 'unknown');
  expect(unknown.map((vm) => vm.node)).toEqual([agent.nodeId, agent.nodeId]);
  for (const vm of unknown) expect(vm.lastSeenAt).toEqual(expect.any(String));
  const remote = seen.dashboard.remotes.find((r: Json) => r.remote === REMOTE);
  expect(remote.nodes).toMatchObject({ total: 3, alive: 2, offline: 1 });
  expect(remote.vms.total).toBe(6);
  const critical = seen.dashboard.alerts.filter((a: Json) => a.severity === 'critical');
  expect(critical).toEqual([
    {
      remote: REMOTE,
      severity: 'critical',
      message: expect.stringMatching(
        new RegExp(`^node ${agent.nodeId} ${state} .*; 2 VMs unknown$`),
      ),
      since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    },
  ]);
}

async function expectRecovered(agent: TestAgent) {
  const seen = await nodeIn(agent, 'online');
  const recovered = await eventually(async () => {
    const again =
      seen.vms.length === 6 && seen.vms.every((vm) => vm.status !== 'unknown')
        ? seen
        : await refreshed();
    return again.vms.length === 6 && again.vms.every((vm) => vm.status !== 'unknown')
      ? again
      : undefined;
  });
  expect(recovered.dashboard.alerts.filter((a: Json) => a.severity === 'critical')).toEqual([]);
  const status = await get(`/api/v1/resources?remote=${REMOTE}&limit=1`);
  expect(status.body.remotes[0]).toMatchObject({ status: 'online', health: 'online' });
}

beforeAll(async () => {
  const identity = await createManagerIdentity('node-outage-spec');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: REMOTE,
      nodes: 3,
      vmsPerNode: 2,
      trustedClientCaPem: identity.ca.certPem,
      logLevel: 'warn',
    }),
  ]);
  const key = await cluster.createApiKey(['*'], { principal: 'manager' });
  databaseUrl = await dbs.fresh();
  stateDir = stateDirWithClientIdentity(identity);
  m = await startTestManager({ databaseUrl, stateDir });
  token = m.token!;
  const created = await m.api('POST', '/api/v1/remotes', {
    id: REMOTE,
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key }],
  });
  expect(created.status, created.text).toBe(201);
  await eventually(async () => ((await refreshed()).vms.length === 6 ? true : undefined));
}, 180_000);

afterAll(async () => {
  for (const agent of cluster?.agents ?? []) agent.process.child.kill('SIGCONT');
  await m?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

describe('a node that stops answering', () => {
  it('frozen (SIGSTOP): listed as unreachable, then down once its lease expired, its VMs unknown, a critical alert; recovered after SIGCONT', async () => {
    const agent = cluster.agents[2];
    agent.process.child.kill('SIGSTOP');
    try {
      // The lease (3 s) outlives the first refreshes: unreachable, or already down on a slow machine.
      const seen = await eventually(async () => {
        const now = await refreshed();
        const state = now.nodes.find((n) => n.id === agent.nodeId)?.state;
        return state === 'unreachable' || state === 'down' ? { now, state } : undefined;
      });
      expectOutage(seen.now, agent, seen.state);
      expectOutage(await nodeIn(agent, 'down'), agent, 'down');
    } finally {
      agent.process.child.kill('SIGCONT');
    }
    await expectRecovered(agent);
  }, 120_000);

  it('killed (SIGKILL): down with its VMs unknown, kept across a manager restart; recovered once the agent is restarted', async () => {
    const agent = cluster.agents[1];
    await agent.kill();
    expectOutage(await nodeIn(agent, 'down'), agent, 'down');

    await m.stop();
    m = await startTestManager({ databaseUrl, stateDir, token });
    // A fresh cache: the registry no longer lists the node, the manager still knows it and its VMs.
    expectOutage(await nodeIn(agent, 'down'), agent, 'down');

    await agent.restart();
    await expectRecovered(agent);
  }, 180_000);

  it('decommissioned by an operator: listed as such across a restart, its VMs gone, no alert; online again once it answers', async () => {
    const agent = cluster.agents[0];
    const path = `/api/v1/remotes/${REMOTE}/nodes/${agent.nodeId}/decommission`;
    expect((await m.api('POST', path)).status).toBe(409);
    await agent.kill();
    await nodeIn(agent, 'down');
    const answer = await m.api('POST', path);
    expect(answer.status, answer.text).toBe(204);

    const expectDecommissioned = (seen: { nodes: Json[]; vms: Json[]; dashboard: Json }) => {
      expect(seen.nodes.find((n) => n.id === agent.nodeId)).toMatchObject({
        state: 'decommissioned',
        stateSince: expect.any(String),
      });
      expect(seen.vms.filter((vm) => vm.node === agent.nodeId)).toEqual([]);
      expect(seen.dashboard.alerts.filter((a: Json) => a.severity === 'critical')).toEqual([]);
      const remote = seen.dashboard.remotes.find((r: Json) => r.remote === REMOTE);
      expect(remote.nodes).toMatchObject({ total: 2, alive: 2, offline: 0 });
    };
    expectDecommissioned(await refreshed());
    const status = await get(`/api/v1/resources?remote=${REMOTE}&limit=1`);
    expect(status.body.remotes[0]).toMatchObject({ status: 'online', health: 'online' });

    await m.stop();
    m = await startTestManager({ databaseUrl, stateDir, token });
    expectDecommissioned(await nodeIn(agent, 'decommissioned'));
    const audit = await sqlQuery(
      databaseUrl,
      "SELECT outcome FROM audit_log WHERE action = 'remote.node.decommission' ORDER BY seq::bigint",
    );
    expect(audit.map((row) => row.outcome)).toEqual(['attempt', 'failure', 'attempt', 'success']);

    await agent.restart();
    await expectRecovered(agent);
  }, 180_000);

  it('is forgotten only by an operator holding remote.modify, only while it does not answer, and that is audited', async () => {
    const agent = cluster.agents[0];
    const auditor = await grantToken(databaseUrl, 'auditor@local', 'Audit', '/');
    const path = `/api/v1/remotes/${REMOTE}/nodes/${agent.nodeId}`;
    expect((await m.api('DELETE', path)).status).toBe(409);
    await agent.kill();
    await nodeIn(agent, 'down');
    expect((await m.api('DELETE', path, undefined, { token: auditor })).status).toBe(403);
    expect((await m.api('DELETE', `/api/v1/remotes/${REMOTE}/nodes/-bad`)).status).toBe(400);
    const forgotten = await m.api('DELETE', path);
    expect(forgotten.status, forgotten.text).toBe(204);
    const after = await refreshed();
    expect(after.nodes.map((n) => n.id).sort()).toEqual(['node-2', 'node-3']);
    expect(after.vms.filter((vm) => vm.node === agent.nodeId)).toEqual([]);
    expect(after.dashboard.alerts.filter((a: Json) => a.severity === 'critical')).toEqual([]);
    const audit = await sqlQuery(
      databaseUrl,
      "SELECT principal, target, outcome FROM audit_log WHERE action = 'remote.node.forget' ORDER BY seq::bigint",
    );
    const target = path.replace('/api/v1', '');
    // The refused conflict and bad id are on record too; the auditor's refusal is an authz.denied entry.
    expect(audit).toEqual([
      { principal: 'admin@local', target, outcome: 'attempt' },
      { principal: 'admin@local', target, outcome: 'failure' },
      { principal: 'admin@local', target: `/remotes/${REMOTE}/nodes/-bad`, outcome: 'attempt' },
      { principal: 'admin@local', target: `/remotes/${REMOTE}/nodes/-bad`, outcome: 'failure' },
      { principal: 'admin@local', target, outcome: 'attempt' },
      { principal: 'admin@local', target, outcome: 'success' },
    ]);
    // Back again: a node that returns is known again.
    await agent.restart();
    await expectRecovered(agent);
  }, 120_000);
});
