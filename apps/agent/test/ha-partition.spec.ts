import {
  createNodeNamespace,
  RunSampler,
  simStateFileSource,
  startCluster,
  type AgentClient,
  type NodeNamespace,
  type TestAgent,
  type TestCluster,
} from '@debvisor/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  coordinator,
  FAST_HA,
  haEvents,
  haStatus,
  protect,
  runningOn,
  type HaEvent,
} from './ha-cluster';
import { eventually } from './helpers';

/**
 * The partition nemesis: one node's agent runs in a network namespace of its own, joined to the
 * host's etcd and the other agents by a veth pair (createNodeNamespace). Cutting the link past the
 * lease partitions it from all of them at once: the cluster fences it and restarts its HA VMs
 * elsewhere, while the partitioned agent, which lost etcd, stops them itself (its watchdog).
 * Healing the link brings it back fenced: it restarts none of its old VMs and rejoins once they are
 * gone. The partitioned node is watched through its hypervisor's own state file (not through its
 * agent, which cannot be reached, and whose calls pass its watchdog gate), so a VM running on it and
 * elsewhere at one sampled moment is caught.
 */
describe(
  'HA: a node partitioned from etcd and its peers (network namespace)',
  { timeout: 150_000 },
  () => {
    let ns: NodeNamespace;
    let cluster: TestCluster;
    let apiKey: string;
    let client: AgentClient;
    let victim: TestAgent;
    let sampler: RunSampler | undefined;
    const VICTIM = 'node-3';

    beforeAll(async () => {
      ns = await createNodeNamespace();
      cluster = await startCluster({
        clusterId: 'ha-partition',
        nodes: 3,
        vmsPerNode: 6, // four running on each node: two for each case
        hostAddress: ns.hostAddress,
        namespaces: { [VICTIM]: ns },
        agentConfig: () => ({ ha: FAST_HA }),
      });
      apiKey = await cluster.createApiKey(['ha:*', 'vm:*', 'node:*'], { principal: 'manager:ha' });
      client = cluster.connect(apiKey, cluster.agents[0]);
      victim = cluster.agents.find((a) => a.nodeId === VICTIM)!;
    }, 120_000);
    afterAll(async () => {
      await sampler?.stop();
      client?.close();
      await cluster?.stop();
      await ns?.destroy();
    });

    /** HA events and resources, for a failure's message. */
    async function story(): Promise<string> {
      const events = (await haEvents(cluster)).map(
        (e) => `${e.at} ${e.kind} ${e.nodeId} ${e.vmUuid ?? ''} ${e.message}`,
      );
      const status = await haStatus(client).catch(() => undefined);
      return `events:\n${events.join('\n')}\nresources: ${JSON.stringify(
        status?.resources.map((r) => [r.vmUuid, r.state, r.nodeId, r.reason]),
      )}`;
    }

    /**
     * Protects `uuids` (running on the victim), cuts the victim's link past the lease and checks
     * the failover (fenced first, each VM live on exactly one node other than the victim, stopped
     * on the victim by its own watchdog before it ran elsewhere, the victim's disk clients
     * blocklisted); then restores the link and checks the rejoin. Answers the HA events since the cut.
     */
    async function partitionAndHeal(uuids: string[]): Promise<HaEvent[]> {
      await protect(cluster, client, uuids);
      // Before the cut the victim reaches both peers over its link (its network probe says so).
      await eventually(async () => {
        const node = (await haStatus(client)).nodes.find((n) => n.nodeId === VICTIM);
        const network = node?.health?.probes.find((p) => p.name === 'network');
        return network?.result === 'ok' && network.reason === '2/2 peers reached'
          ? true
          : undefined;
      }, 20_000);
      await sampler?.stop();
      sampler = new RunSampler(cluster, apiKey, uuids, 100, {
        [VICTIM]: simStateFileSource(victim.stateDir),
      });
      sampler.start();
      const before = (await haEvents(cluster)).length;
      await ns.cut();
      const cutAt = Date.now();

      // Fenced, then recovered on the other nodes: every VM live on exactly one node, never the victim.
      const { value: recovered } = await eventually(async () => {
        const events = (await haEvents(cluster)).slice(before);
        const done = new Set(events.filter((e) => e.kind === 'vm-recovered').map((e) => e.vmUuid));
        if (!uuids.every((u) => done.has(u))) return undefined;
        const sample = await sampler!.sample();
        const once = uuids.every((u) => {
          const nodes = sample.where.get(u) ?? [];
          return nodes.length === 1 && nodes[0] !== VICTIM;
        });
        return once ? { events, sample } : undefined;
      }, 40_000).catch(async (error: Error) => {
        throw new Error(`${error.message}\n${await story()}`);
      });
      const fencedAt = recovered.events.findIndex(
        (e) => e.kind === 'fenced' && e.nodeId === VICTIM,
      );
      expect(fencedAt, `a "fenced" event for ${VICTIM}`).toBeGreaterThanOrEqual(0);
      for (const uuid of uuids) {
        const at = recovered.events.findIndex(
          (e) => e.kind === 'vm-recovered' && e.vmUuid === uuid,
        );
        expect(at, `${uuid} recovered after the fence`).toBeGreaterThan(fencedAt);
      }
      // The partitioned agent noticed it lost etcd and stopped its HA VMs itself (its watchdog).
      const selfStops = victim.process
        .output()
        .split('\n')
        .filter((line) => line.includes('HA watchdog: stopped the HA VMs of this node'))
        .map((line) => Date.parse((JSON.parse(line) as { time: string }).time))
        .filter((at) => at >= cutAt);
      expect(selfStops.length, 'the watchdog stopped the VMs after the cut').toBeGreaterThan(0);
      const lastLiveOnVictim = Math.max(
        ...sampler.samples
          .filter((s) => uuids.some((u) => s.where.get(u)?.includes(VICTIM)))
          .map((s) => s.at),
      );
      const firstLiveElsewhere = Math.min(
        ...sampler.samples
          .filter(
            (s) =>
              s.at > cutAt && uuids.some((u) => (s.where.get(u) ?? []).some((n) => n !== VICTIM)),
          )
          .map((s) => s.at),
      );
      expect(lastLiveOnVictim, 'the victim stopped its VMs before any ran elsewhere').toBeLessThan(
        firstLiveElsewhere,
      );

      // Its writes are refused: each disk's lock changed hands, and its clients are blocklisted.
      const etcd = cluster.etcd.client();
      try {
        for (const uuid of uuids) {
          const vm = await client.vm.getVm({ uuid });
          for (const disk of vm.spec!.disks) {
            const image = JSON.parse(
              (await etcd.get(`/debvisor/sim/rbd/${disk.pool}/${disk.image}`).string())!,
            ) as { lock: { holder: string; client: string } | null };
            expect(image.lock?.holder).toBe(uuid);
            expect(image.lock?.client).not.toContain(`client.${VICTIM}@`);
          }
          const blocklisted = await etcd
            .get(`/debvisor/sim/rbd-blocklist/client.${VICTIM}@${cluster.clusterId}/${uuid}`)
            .string();
          expect(blocklisted, `the victim's client of ${uuid} is blocklisted`).toBeDefined();
        }
      } finally {
        etcd.close();
      }
      const during = await haStatus(client);
      expect(during.nodes.find((n) => n.nodeId === VICTIM)).toMatchObject({
        alive: false,
        fence: { state: 'fenced' },
      });

      // Healed: the node finds itself fenced, runs none of its old VMs, and rejoins once they are gone.
      await ns.restore();
      await eventually(async () => {
        const s = await haStatus(client);
        const node = s.nodes.find((n) => n.nodeId === VICTIM);
        return node?.alive && node.fence?.state === 'released' ? node : undefined;
      }, 40_000).catch(async (error: Error) => {
        throw new Error(`${error.message}\n${await story()}`);
      });
      const own = cluster.connect(apiKey, victim);
      try {
        const { vms } = await own.vm.listVms({ nodeId: VICTIM });
        expect(vms.filter((vm) => uuids.includes(vm.spec!.uuid))).toEqual([]);
      } finally {
        own.close();
      }
      const events = (await haEvents(cluster)).slice(before);
      const rejoining = events.findIndex((e) => e.kind === 'node-rejoining' && e.nodeId === VICTIM);
      const released = events.findIndex((e) => e.kind === 'fence-released' && e.nodeId === VICTIM);
      expect(rejoining, 'the node reported itself clean').toBeGreaterThan(fencedAt);
      expect(released, 'the fence was lifted after the clean report').toBeGreaterThan(rejoining);
      for (let i = 0; i < 10; i++) await sampler.sample();
      const last = await sampler.sample();
      for (const uuid of uuids) {
        expect(last.where.get(uuid)).toHaveLength(1);
        expect(last.where.get(uuid)).not.toContain(VICTIM);
      }
      await sampler.stop();
      const silent = sampler.samples.filter((s) => s.silent.length > 0);
      expect(silent, 'every node was read at every sample').toEqual([]);
      if (sampler.doubleRuns.length) expect(sampler.doubleRuns, await story()).toEqual([]);
      return (await haEvents(cluster)).slice(before);
    }

    /** Clean restarts (with no HA VM on them: nothing is fenced) until the lead is where `wanted` says. */
    async function leadWhere(wanted: (leader: string) => boolean): Promise<string> {
      for (let i = 0; i < cluster.agents.length; i++) {
        const leader = await coordinator(client);
        if (wanted(leader)) return leader;
        await cluster.agents.find((a) => a.nodeId === leader)!.restart();
        await eventually(
          async () => ((await coordinator(client)) !== leader ? true : undefined),
          20_000,
        );
      }
      throw new Error('the lead did not move where the test needs it');
    }

    it('the coordinator cut off past the lease: a new one (a higher epoch) fences it and recovers its VMs; healed, it writes nothing with its old epoch', async () => {
      await leadWhere((leader) => leader === VICTIM);
      const oldEpoch = Number((await haStatus(client)).fencingEpoch);
      const uuids = (await runningOn(cluster, apiKey, victim)).slice(0, 2);
      expect(uuids.length, `VMs running on ${VICTIM}`).toBe(2);
      const events = await partitionAndHeal(uuids);
      const status = await haStatus(client);
      expect(status.coordinatorNodeId).not.toBe(VICTIM);
      const newEpoch = Number(status.fencingEpoch);
      expect(newEpoch).toBeGreaterThan(oldEpoch);
      expect(
        events.filter((e) => e.epoch === oldEpoch),
        "nothing written with the cut-off coordinator's epoch after the cut",
      ).toEqual([]);
      expect(events.find((e) => e.kind === 'fenced' && e.nodeId === VICTIM)?.epoch).toBe(newEpoch);
      for (const uuid of uuids)
        expect(status.resources.find((r) => r.vmUuid === uuid)).toMatchObject({
          state: 'protected',
          epoch: String(newEpoch),
        });
    });

    it('a node cut off past the lease: fenced, its HA VMs run exactly once elsewhere, it stops them itself; healed: it rejoins clean', async () => {
      await leadWhere((leader) => leader !== VICTIM);
      const uuids = await runningOn(cluster, apiKey, victim);
      expect(uuids.length, `VMs running on ${VICTIM}`).toBeGreaterThanOrEqual(2);
      await partitionAndHeal(uuids);
    });
  },
);
