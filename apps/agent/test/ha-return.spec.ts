import {
  RunSampler,
  startCluster,
  type AgentClient,
  type TestAgent,
  type TestCluster,
} from '@debvisor/testing';
import { status as grpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coordinator, FAST_HA, haEvents, haStatus, protect, runningOn } from './ha-cluster';
import { eventually, rpcError } from './helpers';

/**
 * The last liveness gap of failover (docs/ha.md, a node that comes back): an HA VM that no other
 * node fits waits while its node is fenced; once that node is back and clean, its fence is lifted
 * and the VM starts there again — exactly once, never beside another copy. A VM that HA gave up
 * on stays in error and does not keep its node fenced. Two nodes, real etcd, real agents, sim
 * drivers; each node is in a node group of its own, so that the other node never fits its VMs.
 */
describe(
  'HA: a VM no other node fits returns to its node once it is back and clean',
  { timeout: 180_000 },
  () => {
    let cluster: TestCluster;
    let apiKey: string;
    /** The client of the node that is not faulted. */
    let client: AgentClient;
    let victim: TestAgent;
    let survivor: TestAgent;
    /** The victim's VMs: `home` waits for a node; `given` may not be relocated at all (gives up). */
    let home: string;
    let given: string;
    let sampler: RunSampler;

    const groupOf = (nodeId: string) => `group-${nodeId}`;

    beforeAll(async () => {
      cluster = await startCluster({
        clusterId: 'ha-return',
        nodes: 2,
        vmsPerNode: 2,
        agentConfig: (nodeId) => ({ ha: { ...FAST_HA, groups: [groupOf(nodeId)] } }),
      });
      apiKey = await cluster.createApiKey(['ha:*', 'vm:*', 'node:*', 'migration:*'], {
        principal: 'manager:ha',
      });
      // The victim is not the coordinator: the survivor coordinates throughout.
      const first = cluster.connect(apiKey, cluster.agents[0]!);
      const leader = await coordinator(first).finally(() => first.close());
      survivor = cluster.agents.find((a) => a.nodeId === leader)!;
      victim = cluster.agents.find((a) => a.nodeId !== leader)!;
      client = cluster.connect(apiKey, survivor);
    }, 120_000);
    afterAll(async () => {
      await sampler?.stop();
      client?.close();
      await cluster?.stop();
    });

    const resource = async (uuid: string) =>
      (await haStatus(client)).resources.find((r) => r.vmUuid === uuid)!;
    const fenceOf = async (nodeId: string) =>
      (await haStatus(client)).nodes.find((n) => n.nodeId === nodeId);

    async function describeHa(): Promise<string> {
      const events = (await haEvents(cluster)).map(
        (e) => `${e.at} ${e.kind} ${e.nodeId} ${e.vmUuid ?? ''} ${e.message}`,
      );
      const status = await haStatus(client).catch(() => undefined);
      return `events:\n${events.join('\n')}\nnodes: ${JSON.stringify(status?.nodes.map((n) => [n.nodeId, n.state, n.reason, n.fence?.state]))}\nresources: ${JSON.stringify(status?.resources.map((r) => [r.vmName, r.state, r.nodeId, r.reason]))}`;
    }

    async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 40_000) {
      const { value } = await eventually(check, ms).catch(async (error: Error) => {
        throw new Error(`${what}: ${error.message}\n${await describeHa()}`);
      });
      return value;
    }

    /** Waits for the victim's lease to run out, its fence to be confirmed and `home` to wait. */
    async function fencedWithHomeWaiting(): Promise<string> {
      await until('fenced, the VM waiting for a node', async () => {
        const node = await fenceOf(victim.nodeId);
        const waiting = await resource(home);
        return node?.state === 'fenced' &&
          node.fence?.state === 'fenced' &&
          waiting.state === 'pending' &&
          waiting.reason.includes(`not in the node group ${groupOf(victim.nodeId)}`)
          ? node
          : undefined;
      });
      return (await fenceOf(victim.nodeId))!.fence!.at;
    }

    /** The states of the victim's copies of a VM, asked of the victim's agent. */
    async function statesOnVictim(uuid: string): Promise<string[]> {
      const direct = cluster.connect(apiKey, victim);
      try {
        const { vms } = await direct.vm.listVms({ nodeId: victim.nodeId });
        return vms.filter((vm) => vm.spec!.uuid === uuid).map((vm) => vm.runtime?.state ?? '');
      } finally {
        direct.close();
      }
    }

    /** Waits until the VM HA gave up on is defined on the victim again, stopped, still in error. */
    async function givenBackStopped(): Promise<void> {
      await until('the gave-up VM defined on its node again, stopped', async () =>
        (await statesOnVictim(given)).join() === 'stopped' &&
        (await resource(given)).reason.endsWith(
          `defined on ${victim.nodeId} again: it stays stopped until an operator starts it`,
        )
          ? true
          : undefined,
      );
      // A few ticks later it is still in error (not "stopped on purpose", not restarted).
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 200));
        expect(await resource(given)).toMatchObject({ state: 'error', nodeId: victim.nodeId });
        expect((await resource(given)).reason).toMatch(/^gave up: /);
        expect((await sampler.sample()).where.get(given)).toEqual([]);
      }
    }

    /** Waits until `home` runs on the victim again, protected there, and its fence is lifted. */
    async function backHome(): Promise<void> {
      await until('running on its node again, the fence lifted', async () => {
        const node = await fenceOf(victim.nodeId);
        const record = await resource(home);
        const sample = await sampler.sample();
        return node?.alive &&
          node.fence?.state === 'released' &&
          record.state === 'protected' &&
          record.nodeId === victim.nodeId &&
          sample.where.get(home)?.join() === victim.nodeId
          ? true
          : undefined;
      });
    }

    it('starts the VM on its returned node exactly once and lifts the fence; a VM HA gave up on stays in error', async () => {
      const running = await runningOn(cluster, apiKey, victim);
      expect(running.length, `VMs running on ${victim.nodeId}`).toBeGreaterThanOrEqual(2);
      [home, given] = running as [string, string];
      const group = groupOf(victim.nodeId);
      await protect(cluster, client, [home], { nodeGroup: group, maxRelocations: 5 });
      await protect(cluster, client, [given], { nodeGroup: group, maxRelocations: 0 });
      sampler = new RunSampler(cluster, apiKey, [home, given], 100);
      sampler.start();
      const before = (await haEvents(cluster)).length;

      const killedAt = Date.now();
      await victim.kill();
      await fencedWithHomeWaiting();
      // max_relocations 0: HA gives up on it at once; it runs nowhere.
      const gaveUp = await resource(given);
      expect(gaveUp.state).toBe('error');
      expect(gaveUp.reason).toMatch(/^gave up: 0 relocation\(s\) .* max_relocations 0/);
      // The survivor never takes them, however long the victim is away.
      for (let i = 0; i < 5; i++) {
        const sample = await sampler.sample();
        expect(sample.where.get(home)).toEqual([]);
        expect(sample.where.get(given)).toEqual([]);
        await new Promise((r) => setTimeout(r, 200));
      }

      // The sim driver saved both VMs as running: the node comes back, drops them, reports clean.
      await victim.restart();
      await backHome();
      const returnedAt = Date.now();

      // The journal: the node rejoined clean, its fence was lifted, then the VM started on it.
      const events = (await haEvents(cluster)).slice(before);
      const index = (kind: string, vmUuid?: string) =>
        events.findIndex(
          (e) =>
            e.kind === kind &&
            e.nodeId === victim.nodeId &&
            (vmUuid === undefined || e.vmUuid === vmUuid),
        );
      const fenced = index('fenced');
      const rejoining = index('node-rejoining');
      const released = index('fence-released');
      const recovered = index('vm-recovered', home);
      expect(fenced, await describeHa()).toBeGreaterThanOrEqual(0);
      expect(rejoining).toBeGreaterThan(fenced);
      expect(released).toBeGreaterThan(rejoining);
      expect(recovered).toBeGreaterThan(released);
      expect(events[released]!.message).toContain('1 HA VM(s) that no other node took start on it');
      expect(events[recovered]!.message).toContain(`runs on ${victim.nodeId} again`);
      expect(events.filter((e) => e.kind === 'vm-recovered' && e.vmUuid === given)).toEqual([]);

      const record = await resource(home);
      expect(record.reason).toContain('its own node, after it came back clean');
      // Not a relocation onto another node: max_relocations is not spent on it.
      expect(record.relocations).toBe(0);
      // The gave-up VM is still in error and runs nowhere; it did not hold the fence.
      expect(await resource(given)).toMatchObject({ state: 'error', nodeId: victim.nodeId });
      for (let i = 0; i < 5; i++) {
        const sample = await sampler.sample();
        expect(sample.where.get(home)).toEqual([victim.nodeId]);
        expect(sample.where.get(given)).toEqual([]);
        await new Promise((r) => setTimeout(r, 200));
      }
      // Exactly once, and only once the fence was lifted: never on the survivor, nowhere between
      // the kill and the lift.
      const liftedAt = Date.parse(events[released]!.at);
      for (const sample of sampler.samples) {
        const where = sample.where.get(home) ?? [];
        expect(where, new Date(sample.at).toISOString()).not.toContain(survivor.nodeId);
        if (sample.at > killedAt && sample.at < liftedAt) expect(where).toEqual([]);
      }
      expect(
        sampler.samples.some((s) => s.at > returnedAt - 1 && s.where.get(home)?.length === 1),
      ).toBe(true);
      expect(sampler.doubleRuns).toEqual([]);
      expect(await statesOnVictim(home)).toEqual(['running']);
      // The gave-up VM is defined on its node again, stopped, for its operator; still in error.
      await givenBackStopped();
    });

    it("refuses FailoverVm onto the VM's own node from anyone but the coordinator, or with a stale epoch", async () => {
      const epoch = Number((await haStatus(client)).fencingEpoch);
      const direct = cluster.connect(apiKey, victim);
      try {
        const call = (fencingEpoch: number) =>
          direct.migration.failoverVm({
            uuid: given,
            targetNodeId: victim.nodeId,
            fencingEpoch,
            sourceNodeId: victim.nodeId,
          });
        const stale = await rpcError(call(epoch - 1));
        expect(stale.code).toBe(grpcStatus.FAILED_PRECONDITION);
        expect(stale.details).toContain(`is not the HA coordinator's (${epoch}`);
        const notCoordinator = await rpcError(call(epoch));
        expect(notCoordinator.code).toBe(grpcStatus.PERMISSION_DENIED);
      } finally {
        direct.close();
      }
      // Nothing started: the gave-up VM still runs nowhere.
      expect((await sampler.sample()).where.get(given)).toEqual([]);
    });

    it('the VM HA gave up on is started by its operator on its node, and is protected again', async () => {
      const direct = cluster.connect(apiKey, victim);
      try {
        await direct.vm.startVm({ uuid: given });
      } finally {
        direct.close();
      }
      await until('protected again', async () => {
        const record = await resource(given);
        return record.state === 'protected' && record.nodeId === victim.nodeId ? true : undefined;
      });
      expect((await sampler.sample()).where.get(given)).toEqual([victim.nodeId]);
      expect(sampler.doubleRuns).toEqual([]);
    });

    it('lost again after it took the VM back: fenced anew (not under the lifted fence), and back again', async () => {
      const before = (await haEvents(cluster)).length;
      await victim.kill();
      await fencedWithHomeWaiting();
      // A new fence, started after the kill: the lifted one does not cover the VM's new copy.
      const kinds = (await haEvents(cluster))
        .slice(before)
        .filter((e) => e.nodeId === victim.nodeId)
        .map((e) => e.kind);
      expect(kinds.slice(0, 3)).toEqual(['node-suspect', 'fence-started', 'fenced']);
      // max_relocations 0: HA gives up on the other VM again.
      await until('the other VM given up again', async () =>
        (await resource(given)).reason.startsWith('gave up: ') ? true : undefined,
      );
      await victim.restart();
      await backHome();
      await givenBackStopped();
      expect(sampler.doubleRuns).toEqual([]);
      for (const sample of sampler.samples)
        expect(sample.where.get(home) ?? []).not.toContain(survivor.nodeId);
    });
  },
);
