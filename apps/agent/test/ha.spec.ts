import {
  pauseAgent,
  resumeAgent,
  RunSampler,
  startCluster,
  type AgentClient,
  type TestAgent,
  type TestCluster,
} from '@debvisor/testing';
import { status as grpcStatus } from '@grpc/grpc-js';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  coordinator,
  FAST_HA,
  haEvents,
  haStatus,
  protect,
  runningOn,
  type HaEvent,
} from './ha-cluster';
import { eventually, rpcError } from './helpers';

/**
 * HA with real etcd and real agent processes (sim hypervisor, sim storage), faults in the style of
 * Jepsen's nemeses. After each fault: every HA VM runs exactly once (asked of every node's
 * hypervisor), no VM ran on two nodes at any sampled moment, and fencing came before recovery.
 */
describe('HA inside a cluster (real etcd, real agents, sim drivers)', { timeout: 150_000 }, () => {
  let cluster: TestCluster;
  let apiKey: string;
  /** One client per agent; `client` is one whose node is not faulted now. */
  let clients: Map<string, AgentClient>;
  const down = new Set<string>();
  let client: AgentClient;
  const pickClient = (): void => {
    const node = cluster.agents.find((a) => !down.has(a.nodeId))!;
    client = clients.get(node.nodeId)!;
  };
  let sampler: RunSampler;
  const protectedVms: string[] = [];

  beforeAll(async () => {
    cluster = await startCluster({
      clusterId: 'ha',
      nodes: 4,
      vmsPerNode: 3,
      agentConfig: () => ({ ha: FAST_HA }),
    });
    apiKey = await cluster.createApiKey(['ha:*', 'vm:*', 'node:*', 'migration:*'], {
      principal: 'manager:ha',
    });
    clients = new Map(cluster.agents.map((a) => [a.nodeId, cluster.connect(apiKey, a)]));
    pickClient();
    sampler = new RunSampler(cluster, apiKey, [], 100);
  }, 120_000);
  afterAll(async () => {
    await sampler?.stop();
    for (const c of clients?.values() ?? []) c.close();
    await cluster?.stop();
  });

  const agent = (nodeId: string): TestAgent => cluster.agents.find((a) => a.nodeId === nodeId)!;

  /** A node that is not the coordinator (faults on the coordinator are a case of their own). */
  async function victimOtherThan(exclude: string[]): Promise<TestAgent> {
    const leader = await coordinator(client);
    const candidates = cluster.agents.filter(
      (a) => a.nodeId !== leader && !exclude.includes(a.nodeId),
    );
    const counts = await Promise.all(
      candidates.map(async (a) => (await runningOn(cluster, apiKey, a)).length),
    );
    const best = counts.indexOf(Math.max(...counts));
    if (best < 0 || counts[best] === 0) throw new Error('no node with running VMs left to fault');
    return candidates[best]!;
  }

  /** Protects the VMs running on `victim`; answers them. */
  async function protectRunning(victim: TestAgent): Promise<string[]> {
    const uuids = await runningOn(cluster, apiKey, victim);
    await protect(cluster, client, uuids);
    for (const uuid of uuids) if (!protectedVms.includes(uuid)) protectedVms.push(uuid);
    return uuids;
  }

  /** Waits until every protected VM is live on exactly one node other than `lost`, by sampling every hypervisor. */
  async function recoveredAwayFrom(lost: string[], uuids: string[], timeoutMs = 40_000) {
    return eventually(async () => {
      const recovered = new Set(
        (await haEvents(cluster)).filter((e) => e.kind === 'vm-recovered').map((e) => e.vmUuid),
      );
      if (!uuids.every((u) => recovered.has(u))) return undefined;
      const sample = await sampler.sample();
      const ok = uuids.every((u) => {
        const nodes = sample.where.get(u) ?? [];
        return nodes.length === 1 && !lost.includes(nodes[0]!);
      });
      return ok ? sample : undefined;
    }, timeoutMs).catch(async (error: Error) => {
      const events = (await haEvents(cluster)).map(
        (e) => `${e.at} ${e.kind} ${e.nodeId} ${e.vmUuid ?? ''} ${e.message}`,
      );
      const status = await haStatus(client).catch(() => undefined);
      throw new Error(
        `${error.message}; waiting for ${uuids.join(', ')} away from ${lost.join(', ')}\nevents:\n${events.join('\n')}\nresources: ${JSON.stringify(status?.resources.map((r) => [r.vmUuid, r.state, r.nodeId, r.reason]))}`,
      );
    });
  }

  async function expectNoDoubleRuns() {
    if (sampler.doubleRuns.length === 0) return;
    const events = (await haEvents(cluster)).map(
      (e) => `${e.at} ${e.kind} ${e.nodeId} ${e.vmUuid ?? ''} ${e.message}`,
    );
    expect(sampler.doubleRuns, `HA events:\n${events.join('\n')}`).toEqual([]);
  }

  function expectFencedBeforeRecovered(events: HaEvent[], nodeId: string, uuids: string[]) {
    const fenced = events.findIndex((e) => e.kind === 'fenced' && e.nodeId === nodeId);
    expect(fenced, `a "fenced" event for ${nodeId}`).toBeGreaterThanOrEqual(0);
    for (const uuid of uuids) {
      const recovered = events.findIndex(
        (e, i) => e.kind === 'vm-recovered' && e.vmUuid === uuid && i > fenced,
      );
      const early = events.findIndex(
        (e, i) => e.kind === 'vm-recovered' && e.vmUuid === uuid && i < fenced,
      );
      expect(early, `VM ${uuid} recovered before its node was fenced`).toBe(-1);
      expect(recovered, `VM ${uuid} recovered after the fence`).toBeGreaterThan(fenced);
    }
  }

  async function expectCleanRejoin(victim: TestAgent, uuids: string[]) {
    // The node came back: none of its old VMs runs (or is even defined) there, and its fence is lifted.
    await eventually(async () => {
      const status = await haStatus(client);
      const node = status.nodes.find((n) => n.nodeId === victim.nodeId);
      return node?.alive && node.fence?.state === 'released' ? node : undefined;
    }, 30_000);
    const vms = (await cluster.connect(apiKey, victim).vm.listVms({ nodeId: victim.nodeId })).vms;
    expect(vms.filter((vm) => uuids.includes(vm.spec!.uuid))).toEqual([]);
  }

  it("elects one coordinator and publishes every node's health score with its probes", async () => {
    const leader = await coordinator(client);
    expect(cluster.agents.map((a) => a.nodeId)).toContain(leader);
    const { value: status } = await eventually(async () => {
      const s = await haStatus(client);
      const settled = s.nodes.every((n) =>
        n.health?.probes.some((p) => p.reason === '3/3 peers reached'),
      );
      return s.nodes.length === 4 && settled ? s : undefined;
    }, 20_000);
    expect(Number(status.fencingEpoch)).toBeGreaterThan(0);
    for (const node of status.nodes) {
      expect(node).toMatchObject({ state: 'online', alive: true });
      expect(node.health).toMatchObject({
        state: 'healthy',
        score: 100,
        degradedBelow: 80,
        failedBelow: 40,
      });
      expect(node.health!.probes.map((p) => [p.name, p.result])).toEqual([
        ['hypervisor', 'ok'],
        ['ceph', 'ok'],
        ['network', 'ok'],
        ['etcd', 'ok'],
      ]);
      expect(node.health!.probes.find((p) => p.name === 'network')!.reason).toBe(
        '3/3 peers reached',
      );
    }
  });

  it('refuses bad HA policies and unknown VMs at the boundary', async () => {
    const bad = await rpcError(
      client.ha.setHaPolicy({ vmUuid: 'not-a-uuid', policy: { enabled: true } }),
    );
    expect(bad.code).toBe(grpcStatus.INVALID_ARGUMENT);
    const unknown = await rpcError(
      client.ha.setHaPolicy({
        vmUuid: '00000000-0000-4000-8000-000000000000',
        policy: { enabled: true, priority: 1, maxRelocations: 1, onNoNode: 'wait' },
      }),
    );
    expect(unknown.code).toBe(grpcStatus.NOT_FOUND);
  });

  it('kill -9 of a node: fenced first, its HA VMs run exactly once elsewhere, it rejoins clean', async () => {
    const victim = await victimOtherThan([]);
    const uuids = await protectRunning(victim);
    await sampler.stop();
    sampler = new RunSampler(cluster, apiKey, protectedVms, 100);
    sampler.start();

    down.add(victim.nodeId);
    pickClient();
    await victim.kill();
    await recoveredAwayFrom([victim.nodeId], uuids);
    expectFencedBeforeRecovered(await haEvents(cluster), victim.nodeId, uuids);
    const status = await haStatus(client);
    expect(status.nodes.find((n) => n.nodeId === victim.nodeId)).toMatchObject({
      state: 'fenced',
      alive: false,
      fence: { state: 'fenced' },
    });
    for (const uuid of uuids)
      expect(status.resources.find((r) => r.vmUuid === uuid)).toMatchObject({
        state: 'protected',
        relocations: 1,
      });
    // The HA journal, with a cursor: what the manager turns into tasks.
    const { events: journal } = await client.ha.listHaEvents({ after: '', limit: 1000 });
    const fencedEvent = journal.find((e) => e.kind === 'fenced' && e.nodeId === victim.nodeId)!;
    expect(fencedEvent).toBeDefined();
    const { events: later } = await client.ha.listHaEvents({ after: fencedEvent.id, limit: 1000 });
    expect(later.map((e) => e.id)).toEqual(
      journal.filter((e) => e.id > fencedEvent.id).map((e) => e.id),
    );
    expect(
      later
        .filter((e) => e.kind === 'vm-recovered')
        .map((e) => e.vmUuid)
        .sort(),
    ).toEqual(expect.arrayContaining([...uuids].sort()));

    // The sim driver saved these VMs as running: the restarted node must not run them again.
    await victim.restart();
    down.delete(victim.nodeId);
    await expectCleanRejoin(victim, uuids);
    await recoveredAwayFrom([victim.nodeId], uuids, 5_000);
    await expectNoDoubleRuns();
  });

  it('SIGSTOP past the lease, then SIGCONT: the paused node never runs its VMs beside their new copies', async () => {
    const victim = await victimOtherThan([]);
    const uuids = await protectRunning(victim);
    down.add(victim.nodeId);
    pickClient();
    pauseAgent(victim);
    try {
      await recoveredAwayFrom([victim.nodeId], uuids);
    } finally {
      resumeAgent(victim);
      down.delete(victim.nodeId);
    }
    await expectCleanRejoin(victim, uuids);
    // Sample a while after the resume: the woken node must not bring its old VMs back.
    for (let i = 0; i < 10; i++) await sampler.sample();
    await recoveredAwayFrom([victim.nodeId], uuids, 5_000);
    await expectNoDoubleRuns();
    const selfFenced = (await haEvents(cluster)).filter(
      (e) => e.kind === 'node-self-fenced' && e.nodeId === victim.nodeId,
    );
    expect(selfFenced.length).toBeGreaterThan(0);
  });

  it('refuses FailoverVm with a stale epoch, from anyone but the coordinator, or of an unfenced node', async () => {
    const status = await haStatus(client);
    const epoch = Number(status.fencingEpoch);
    const [uuid] = protectedVms;
    const where = status.resources.find((r) => r.vmUuid === uuid)!.nodeId;
    const target = cluster.agents.find((a) => a.nodeId !== where)!;
    const direct = cluster.connect(apiKey, target);
    try {
      const stale = await rpcError(
        direct.migration.failoverVm({
          uuid,
          targetNodeId: target.nodeId,
          fencingEpoch: epoch - 1,
          sourceNodeId: where,
        }),
      );
      expect(stale.code).toBe(grpcStatus.FAILED_PRECONDITION);
      expect(stale.details).toContain(`is not the HA coordinator's (${epoch}`);
      const notCoordinator = await rpcError(
        direct.migration.failoverVm({
          uuid,
          targetNodeId: target.nodeId,
          fencingEpoch: epoch,
          sourceNodeId: where,
        }),
      );
      expect(notCoordinator.code).toBe(grpcStatus.PERMISSION_DENIED);
      const noEpoch = await rpcError(
        direct.migration.failoverVm({ uuid, targetNodeId: target.nodeId, sourceNodeId: where }),
      );
      expect(noEpoch.code).toBe(grpcStatus.INVALID_ARGUMENT);
    } finally {
      direct.close();
    }
    await expectNoDoubleRuns();
  });

  it('kill -9 of the coordinator during a recovery: the next coordinator finishes it, fenced first', async () => {
    const leader = await coordinator(client);
    const victim = await victimOtherThan([]);
    const uuids = await protectRunning(victim);
    const leaderVms = await protectRunning(agent(leader));
    const before = (await haEvents(cluster)).length;
    down.add(victim.nodeId);
    down.add(leader);
    pickClient();
    await victim.kill();
    // Kill the coordinator as soon as it starts on the victim (detection, then fencing).
    await eventually(
      async () => {
        const events = (await haEvents(cluster)).slice(before);
        return events.some(
          (e) =>
            e.nodeId === victim.nodeId &&
            ['node-suspect', 'fence-started', 'fenced'].includes(e.kind),
        )
          ? true
          : undefined;
      },
      20_000,
      20,
    );
    await agent(leader).kill();
    await recoveredAwayFrom([victim.nodeId, leader], [...uuids, ...leaderVms], 60_000);
    const events = (await haEvents(cluster)).slice(before);
    expectFencedBeforeRecovered(events, victim.nodeId, uuids);
    expectFencedBeforeRecovered(events, leader, leaderVms);
    const newLeader = await coordinator(client);
    expect(newLeader).not.toBe(leader);
    await expectNoDoubleRuns();
    await Promise.all([victim.restart(), agent(leader).restart()]);
    down.clear();
    await expectCleanRejoin(victim, uuids);
    await expectCleanRejoin(agent(leader), leaderVms);
    await expectNoDoubleRuns();
  });
  it('kill -9 of the coordinator holding HA VMs, one without a kept definition: the rest recovered, that one says why', async () => {
    const leader = await coordinator(client);
    const uuids = await protectRunning(agent(leader));
    expect(uuids.length, `VMs running on the coordinator ${leader}`).toBeGreaterThanOrEqual(2);
    await sampler.stop();
    sampler = new RunSampler(cluster, apiKey, protectedVms, 100);
    sampler.start();
    // One definition is gone from etcd, as when a node dies before it published it.
    const [unkept, ...kept] = uuids as [string, ...string[]];
    const etcd = cluster.etcd.client();
    try {
      await etcd.delete().key(`/debvisor/ha/specs/${unkept}`);
    } finally {
      etcd.close();
    }
    // Not protected on its node while it could not be started elsewhere.
    const { value: waiting } = await eventually(async () => {
      const r = (await haStatus(client)).resources.find((x) => x.vmUuid === unkept);
      return r?.reason.includes("to keep the VM's definition") ? r : undefined;
    }, 10_000);
    expect(waiting).toMatchObject({ state: 'protected', nodeId: '' });
    const before = (await haEvents(cluster)).length;
    down.add(leader);
    pickClient();
    await agent(leader).kill();
    await recoveredAwayFrom([leader], kept, 60_000);
    // These VMs may have been recovered before: their events of this kill are the ones after it.
    const { value: events } = await eventually(async () => {
      const since = (await haEvents(cluster)).slice(before);
      const recovered = since.filter((e) => e.kind === 'vm-recovered').map((e) => e.vmUuid);
      return kept.every((u) => recovered.includes(u)) ? since : undefined;
    }, 20_000);
    expectFencedBeforeRecovered(events, leader, kept);
    expect(await coordinator(client)).not.toBe(leader);
    const { value: left } = await eventually(async () => {
      const r = (await haStatus(client)).resources.find((x) => x.vmUuid === unkept);
      return r?.state === 'error' ? r : undefined;
    }, 10_000);
    expect(left.nodeId).toBe(leader);
    expect(left.reason).toContain('no definition of the VM was kept in etcd');
    expect(events.map((e) => [e.kind, e.vmUuid])).toContainEqual(['vm-recovery-failed', unkept]);
    expect((await sampler.sample()).where.get(unkept) ?? []).toEqual([]);
    await expectNoDoubleRuns();

    // Back, the node publishes the definition again: the VM is protected where it runs.
    await agent(leader).restart();
    down.delete(leader);
    await expectCleanRejoin(agent(leader), kept);
    await eventually(async () => {
      const r = (await haStatus(client)).resources.find((x) => x.vmUuid === unkept);
      return r?.state === 'protected' && r.nodeId === leader ? r : undefined;
    }, 20_000);
    await expectNoDoubleRuns();
  });
  it('a fence that cannot be confirmed starts nothing and says why', async () => {
    const victim = await victimOtherThan([]);
    const uuids = await protectRunning(victim);
    // One of its disks vanishes from the (simulated) Ceph: fencing it cannot be confirmed.
    const vm = await client.vm.getVm({ uuid: uuids[0]! });
    const disk = vm.spec!.disks[0]!;
    const etcd = cluster.etcd.client();
    try {
      await etcd.delete().key(`/debvisor/sim/rbd/${disk.pool}/${disk.image}`);
    } finally {
      etcd.close();
    }
    down.add(victim.nodeId);
    pickClient();
    await victim.kill();
    const { value: status } = await eventually(async () => {
      const s = await haStatus(client);
      const node = s.nodes.find((n) => n.nodeId === victim.nodeId);
      return node?.state === 'fence-failed' ? s : undefined;
    }, 30_000);
    const node = status.nodes.find((n) => n.nodeId === victim.nodeId)!;
    expect(node.fence).toMatchObject({ state: 'unconfirmed' });
    expect(node.fence!.reason).toContain(`${disk.pool}/${disk.image}`);
    for (const uuid of uuids)
      expect(status.resources.find((r) => r.vmUuid === uuid)).toMatchObject({
        state: 'error',
        reason: expect.stringContaining(`fencing node ${victim.nodeId} is not confirmed`),
      });
    // Not started anywhere, through several retries of the fence.
    for (let i = 0; i < 20; i++) {
      const sample = await sampler.sample();
      for (const uuid of uuids) expect(sample.where.get(uuid), uuid).toEqual([]);
      await new Promise((r) => setTimeout(r, 150));
    }
    expect((await haEvents(cluster)).some((e) => e.kind === 'fence-unconfirmed')).toBe(true);
    await expectNoDoubleRuns();
  });
  it('maintenance keeps placements away and says what is under way on the node', async () => {
    const node = cluster.agents.find((a) => !down.has(a.nodeId))!;
    const unknown = await rpcError(client.ha.setMaintenance({ nodeId: 'node-99', enabled: true }));
    expect(unknown.code).toBe(grpcStatus.NOT_FOUND);
    await client.ha.setMaintenance({ nodeId: node.nodeId, enabled: true });
    const { value } = await eventually(async () => {
      const s = await haStatus(client);
      const n = s.nodes.find((x) => x.nodeId === node.nodeId);
      return n && n.reason.includes('still on the node') ? n : undefined;
    }, 20_000);
    expect(value.state).toBe('draining');
    const back = await client.ha.setMaintenance({ nodeId: node.nodeId, enabled: false });
    expect(back.state).toBe('online');
  });
});

/** VM states in which a VM's process exists and executes. */
const EXECUTING = new Set(['starting', 'running', 'stopping', 'rebooting', 'migrating', 'paused']);

/**
 * The VMs a sim node executes, read from its hypervisor's state file: an incoming migration's copy
 * (paused, waiting for the stream, as QEMU's -incoming) and a migrated source waiting for its
 * finish (paused, QEMU's postmigrate) do not execute and are not counted.
 */
async function executingOn(agent: TestAgent): Promise<string[]> {
  const text = await readFile(join(agent.stateDir, 'sim', 'vms.json'), 'utf8');
  const state = JSON.parse(text) as {
    vms: {
      spec: { uuid: string };
      state: string;
      migration?: { role?: string; stats?: { status?: string } } | null;
    }[];
  };
  const postmigrate = (vm: (typeof state.vms)[number]) =>
    vm.state === 'paused' &&
    vm.migration?.role === 'outgoing' &&
    vm.migration.stats?.status === 'completed';
  return state.vms
    .filter(
      (vm) => EXECUTING.has(vm.state) && vm.migration?.role !== 'incoming' && !postmigrate(vm),
    )
    .map((vm) => vm.spec.uuid);
}

/** Crashes a sim VM as when its QEMU is killed (the sim driver's crash requests). */
async function crashSimVm(agent: TestAgent, uuid: string): Promise<void> {
  await writeFile(join(agent.stateDir, 'sim-crash', uuid), '');
}

describe(
  'HA maintenance drains and restarts (real etcd, real agents, sim drivers)',
  { timeout: 180_000 },
  () => {
    let cluster: TestCluster;
    let apiKey: string;
    let client: AgentClient;

    beforeAll(async () => {
      cluster = await startCluster({
        clusterId: 'ha-drain',
        nodes: 3,
        vmsPerNode: 3,
        // No node is lost here: leases long enough that a loaded test host does not fence one.
        leaseTtlSeconds: 15,
        agentConfig: () => ({
          ha: {
            ...FAST_HA,
            coordinatorTtlSeconds: 10,
            drainConcurrency: 2,
            drainRetrySeconds: 1,
            restartWindowSeconds: 600,
          },
        }),
      });
      apiKey = await cluster.createApiKey(['ha:*', 'vm:*', 'node:*', 'migration:*'], {
        principal: 'manager:ha',
      });
      client = cluster.connect(apiKey, cluster.agents[0]!);
      await coordinator(client);
    }, 120_000);
    afterAll(async () => {
      client?.close();
      await cluster?.stop();
    });

    const agentOf = (nodeId: string): TestAgent => cluster.agents.find((a) => a.nodeId === nodeId)!;
    // A test that failed midway leaves no node in maintenance for the next one.
    afterEach(async () => {
      for (const agent of cluster.agents)
        await client.ha.setMaintenance({ nodeId: agent.nodeId, enabled: false });
    });

    /** Where every VM of the cluster executes, by uuid, read from every node's hypervisor. */
    async function placement(): Promise<Map<string, string[]>> {
      const where = new Map<string, string[]>();
      for (const agent of cluster.agents)
        for (const uuid of await executingOn(agent))
          where.set(uuid, [...(where.get(uuid) ?? []), agent.nodeId]);
      return where;
    }

    /** Every VM placed on the node (running or not), asked of its own agent. */
    async function hostedOn(agent: TestAgent): Promise<string[]> {
      const direct = cluster.connect(apiKey, agent);
      try {
        return (await direct.vm.listVms({ nodeId: agent.nodeId })).vms.map((vm) => vm.spec!.uuid);
      } finally {
        direct.close();
      }
    }

    async function describeHa(): Promise<string> {
      const events = (await haEvents(cluster)).map(
        (e) => `${e.at} ${e.kind} ${e.nodeId} ${e.vmUuid ?? ''} ${e.message}`,
      );
      const status = await haStatus(client).catch(() => undefined);
      return `events:\n${events.join('\n')}\nnodes: ${JSON.stringify(status?.nodes.map((n) => [n.nodeId, n.state, n.reason]))}\nresources: ${JSON.stringify(status?.resources.map((r) => [r.vmName, r.state, r.nodeId, r.reason]))}`;
    }

    it('drains a node by live migration: HA VMs first, every VM running exactly once elsewhere, then maintenance', async () => {
      const [victim] = cluster.agents.slice(1);
      const running = await runningOn(cluster, apiKey, victim!);
      expect(running.length, 'VMs running on the node to drain').toBeGreaterThanOrEqual(2);
      // Running VMs are live-migrated, stopped ones moved offline: the node ends up empty.
      const onVictim = await hostedOn(victim!);
      // Every VM running in the cluster now (not one in a transition that ends stopped).
      const all = (
        await Promise.all(cluster.agents.map((a) => runningOn(cluster, apiKey, a)))
      ).flat();
      // Two of them under HA (priorities 900 and 10), the rest without HA.
      const [high, low] = running as [string, string, ...string[]];
      await protect(cluster, client, [high], { priority: 900 });
      await protect(cluster, client, [low], { priority: 10 });
      const before = (await haEvents(cluster)).length;

      // Sampled throughout: no VM executes on two nodes at any moment. (At a switchover a VM
      // executes nowhere for a moment, its downtime: that it is not lost is checked at the end.)
      const doubles: string[] = [];
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          // The files are read one after the other: a VM seen on two nodes ran twice when the
          // node read first still runs it after the other was read.
          const where = await placement();
          for (const uuid of all) {
            const nodes = where.get(uuid) ?? [];
            if (nodes.length > 1 && (await executingOn(agentOf(nodes[0]!))).includes(uuid))
              doubles.push(`${uuid} on ${nodes.join(', ')}`);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const asked = await client.ha.setMaintenance({ nodeId: victim!.nodeId, enabled: true });
      expect(asked.state).toBe('draining');
      try {
        await eventually(async () => {
          const node = (await haStatus(client)).nodes.find((n) => n.nodeId === victim!.nodeId);
          return node?.state === 'maintenance' ? node : undefined;
        }, 90_000).catch(async (error: Error) => {
          throw new Error(`${error.message}\n${await describeHa()}`);
        });
      } finally {
        sampling = false;
        await sampler;
      }
      expect(doubles).toEqual([]);
      const where = await placement();
      for (const uuid of all) expect(where.get(uuid)?.length, uuid).toBe(1);
      for (const uuid of running) expect(where.get(uuid), uuid).not.toContain(victim!.nodeId);
      expect(await hostedOn(victim!)).toEqual([]);
      const node = (await haStatus(client)).nodes.find((n) => n.nodeId === victim!.nodeId)!;
      expect(node.reason).toBe('no VM left on the node; new placements avoid it');

      // The journal: each move, HA VMs by priority first, then drain-finished.
      const events = (await haEvents(cluster))
        .slice(before)
        .filter((e) => e.nodeId === victim!.nodeId);
      const moved = events.filter((e) => e.kind === 'drain-vm-moved').map((e) => e.vmUuid);
      expect([...moved].sort()).toEqual([...onVictim].sort());
      const moving = events.filter((e) => e.kind === 'drain-vm-moving').map((e) => e.vmUuid);
      // The first two moves started (two at a time) are the HA VMs'; their events may interleave.
      expect([...moving.slice(0, 2)].sort()).toEqual([high, low].sort());
      expect(events.map((e) => e.kind)).toContain('drain-started');
      expect(events.at(-1)?.kind).toBe('drain-finished');
      // The HA VMs are protected where they run now.
      const { resources } = await haStatus(client);
      for (const uuid of [high, low])
        expect(resources.find((r) => r.vmUuid === uuid)).toMatchObject({
          state: 'protected',
          nodeId: where.get(uuid)![0],
        });

      const back = await client.ha.setMaintenance({ nodeId: victim!.nodeId, enabled: false });
      expect(back.state).toBe('online');
    });

    it('a drain where no node fits says why, retries, loses nothing, and stops when the maintenance ends', async () => {
      const victim = cluster.agents[2]!;
      const [stuck] = await runningOn(cluster, apiKey, victim);
      expect(stuck, `a VM running on ${victim.nodeId}`).toBeDefined();
      // Its policy allows only a node group no node is in: no node fits it.
      await protect(cluster, client, [stuck!], { nodeGroup: 'gpu', priority: 1000 });
      const before = (await haEvents(cluster)).length;
      await client.ha.setMaintenance({ nodeId: victim.nodeId, enabled: true });
      const { value: node } = await eventually(async () => {
        const n = (await haStatus(client)).nodes.find((x) => x.nodeId === victim.nodeId);
        const others = (await hostedOn(victim)).filter((u) => u !== stuck);
        return n?.reason.includes('cannot move: no node fits') &&
          n.reason.includes('1 VM(s) still on the node') &&
          others.length === 0
          ? n
          : undefined;
      }, 90_000).catch(async (error: Error) => {
        throw new Error(`${error.message}\n${await describeHa()}`);
      });
      expect(node.state).toBe('draining');
      expect(node.reason).toContain('1 VM(s) still on the node');
      expect(node.reason).toContain('not in the node group gpu');
      // Tried again with back-off, never stopped: it runs where it ran, exactly once.
      await eventually(async () => {
        const failures = (await haEvents(cluster))
          .slice(before)
          .filter((e) => e.kind === 'drain-vm-failed' && e.vmUuid === stuck);
        return failures.length >= 2 ? failures : undefined;
      }, 30_000);
      expect((await placement()).get(stuck!)).toEqual([victim.nodeId]);

      await client.ha.setMaintenance({ nodeId: victim.nodeId, enabled: false });
      const { value: stopped } = await eventually(async () => {
        const e = (await haEvents(cluster))
          .slice(before)
          .find((x) => x.kind === 'drain-stopped' && x.nodeId === victim.nodeId);
        return e;
      }, 20_000);
      expect(stopped.message).toContain('no further VM is moved');
      const settled = (await haEvents(cluster)).length;
      // No further move after the maintenance ended.
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 300));
        expect((await placement()).get(stuck!)).toEqual([victim.nodeId]);
      }
      const after = (await haEvents(cluster)).slice(settled);
      expect(after.filter((e) => e.kind.startsWith('drain-vm-'))).toEqual([]);
      expect((await haStatus(client)).nodes.find((n) => n.nodeId === victim.nodeId)?.state).toBe(
        'online',
      );
    });

    it('a crashed HA VM is restarted in place, then relocated, then left in error; a stop is left alone', async () => {
      const node = cluster.agents[0]!;
      const [vm, other] = await runningOn(cluster, apiKey, node);
      expect(vm && other, `two VMs running on ${node.nodeId}`).toBeTruthy();
      await protect(cluster, client, [vm!, other!], { maxRestarts: 1, maxRelocations: 1 });
      const sampler = new RunSampler(cluster, apiKey, [vm!, other!], 100);
      sampler.start();
      const resource = async (uuid: string) =>
        (await haStatus(client)).resources.find((r) => r.vmUuid === uuid)!;
      const until = async (what: string, check: () => Promise<boolean>) =>
        eventually(async () => ((await check()) ? true : undefined), 30_000).catch(
          async (error: Error) => {
            throw new Error(`${what}: ${error.message}\n${await describeHa()}`);
          },
        );
      try {
        // First crash: restarted where it ran.
        await crashSimVm(node, vm!);
        await until('restarted in place', async () => {
          const r = await resource(vm!);
          return (
            r.state === 'protected' &&
            r.restarts === 1 &&
            (await placement()).get(vm!)?.[0] === node.nodeId
          );
        });
        // Second crash: max_restarts reached, relocated to another node.
        await crashSimVm(node, vm!);
        await until('relocated', async () => {
          const r = await resource(vm!);
          const at = (await placement()).get(vm!) ?? [];
          return (
            r.state === 'protected' &&
            r.relocations === 1 &&
            at.length === 1 &&
            at[0] !== node.nodeId
          );
        });
        const relocatedTo = (await placement()).get(vm!)![0]!;
        expect((await resource(vm!)).nodeId).toBe(relocatedTo);
        // Third crash: both limits reached, it is left in error with the reason (no endless loop).
        await crashSimVm(agentOf(relocatedTo), vm!);
        await until('in error', async () => (await resource(vm!)).state === 'error');
        expect((await resource(vm!)).reason).toContain('gave up restarting');
        for (let i = 0; i < 10; i++) {
          await new Promise((r) => setTimeout(r, 200));
          expect((await placement()).get(vm!) ?? []).toEqual([]);
        }
        const kinds = (await haEvents(cluster)).filter((e) => e.vmUuid === vm).map((e) => e.kind);
        for (const kind of ['vm-crashed', 'vm-restarted', 'vm-relocated', 'vm-gave-up'])
          expect(kinds).toContain(kind);

        // A stop through the API is not "recovered".
        const direct = cluster.connect(apiKey, node);
        try {
          await direct.vm.stopVm({ uuid: other! });
        } finally {
          direct.close();
        }
        await until('recorded stopped', async () => (await resource(other!)).state === 'stopped');
        for (let i = 0; i < 10; i++) {
          await new Promise((r) => setTimeout(r, 200));
          expect((await placement()).get(other!) ?? [], await describeHa()).toEqual([]);
        }
        expect(
          (await haEvents(cluster)).filter(
            (e) => e.vmUuid === other && e.kind.startsWith('vm-restart'),
          ),
        ).toEqual([]);
        // Started again by its operator: protected again.
        await client.vm.startVm({ uuid: other! });
        await until('protected again', async () => (await resource(other!)).state === 'protected');
        expect(sampler.doubleRuns).toEqual([]);
      } finally {
        await sampler.stop();
      }
    });
  },
);
