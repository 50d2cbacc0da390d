import { sampleSum, samplesOf, startCluster, type TestCluster } from '@debvisor/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coordinator, FAST_HA, haEvents, haStatus, protect, runningOn } from './ha-cluster';
import { eventually } from './helpers';

/**
 * The agents' HA metrics (docs/agent.md, docs/ha.md) scraped from real agents over HTTPS: health
 * score and probes, the coordinator's leadership and epoch, and — after a real kill -9 — the
 * fence, the failovers and the recovery durations the coordinator counted, and its resources.
 */
describe('HA metrics of the agents (real etcd, real agents)', { timeout: 120_000 }, () => {
  let cluster: TestCluster;
  let apiKey: string;

  beforeAll(async () => {
    cluster = await startCluster({
      clusterId: 'ha-metrics',
      nodes: 3,
      vmsPerNode: 3,
      agentConfig: () => ({ ha: FAST_HA }),
    });
    apiKey = await cluster.createApiKey(['ha:*', 'vm:*', 'node:*'], { principal: 'manager:ha' });
  }, 90_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  const agent = (nodeId: string) => cluster.agents.find((a) => a.nodeId === nodeId)!;
  const scrape = async (nodeId: string) => (await cluster.scrape(agent(nodeId))).body;

  it('health, leadership and epoch: every node scores itself, only the coordinator leads', async () => {
    const client = cluster.connect(apiKey);
    try {
      const leader = await coordinator(client);
      const { fencingEpoch } = await haStatus(client);
      for (const { nodeId } of cluster.agents) {
        // The first health evaluation comes with the first heartbeat.
        const body = (
          await eventually(async () => {
            const text = await scrape(nodeId);
            return samplesOf(text, 'debvisor_agent_ha_probe_status').length === 4
              ? { text }
              : undefined;
          }, 20_000)
        ).value.text;
        expect(
          samplesOf(body, 'debvisor_agent_ha_probe_status')
            .map((s) => s.labels.probe)
            .sort(),
        ).toEqual(['ceph', 'etcd', 'hypervisor', 'network']);
        const score = sampleSum(body, 'debvisor_agent_ha_health_score');
        expect(score).toBeGreaterThan(0);
        expect(score).toBeLessThanOrEqual(100);
        expect(sampleSum(body, 'debvisor_agent_ha_coordinator_leader'), nodeId).toBe(
          nodeId === leader ? 1 : 0,
        );
        expect(sampleSum(body, 'debvisor_agent_ha_fencing_epoch')).toBe(Number(fencingEpoch));
        expect(samplesOf(body, 'debvisor_agent_ha_fences_total')).toHaveLength(3);
      }
    } finally {
      client.close();
    }
  });

  it('a kill -9: the coordinator counts the fence, the failovers and their durations, and its resources', async () => {
    const client = cluster.connect(apiKey, cluster.agents[0]);
    try {
      let leader = await coordinator(client);
      const victim = cluster.agents.find((a) => a.nodeId !== leader)!;
      const uuids = await runningOn(cluster, apiKey, victim);
      expect(uuids.length).toBeGreaterThan(0);
      const watcher = cluster.connect(
        apiKey,
        cluster.agents.find((a) => a.nodeId !== victim.nodeId)!,
      );
      try {
        await protect(cluster, watcher, uuids);
        const before = await scrape(leader);
        expect(
          sampleSum(before, 'debvisor_agent_ha_resources', { state: 'protected' }),
        ).toBeGreaterThanOrEqual(uuids.length);

        await victim.kill();
        await eventually(async () => {
          const recovered = new Set(
            (await haEvents(cluster)).filter((e) => e.kind === 'vm-recovered').map((e) => e.vmUuid),
          );
          return uuids.every((u) => recovered.has(u)) ? true : undefined;
        }, 40_000);
        leader = await coordinator(watcher);
        // A recovery's duration is observed once the fence's detection time is read, just after it.
        const { value: after } = await eventually(async () => {
          const text = await scrape(leader);
          return sampleSum(text, 'debvisor_agent_ha_recovery_duration_seconds_count') -
            sampleSum(before, 'debvisor_agent_ha_recovery_duration_seconds_count') >=
            uuids.length
            ? text
            : undefined;
        }, 10_000);
        const delta = (name: string, labels: Record<string, string> = {}) =>
          sampleSum(after, name, labels) - sampleSum(before, name, labels);
        expect(
          delta('debvisor_agent_ha_fences_total', { outcome: 'confirmed' }),
        ).toBeGreaterThanOrEqual(1);
        expect(
          delta('debvisor_agent_ha_failovers_total', { outcome: 'recovered' }),
        ).toBeGreaterThanOrEqual(uuids.length);
        expect(delta('debvisor_agent_ha_recovery_duration_seconds_count')).toBeGreaterThanOrEqual(
          uuids.length,
        );
        // From the loss's detection to the VM running: more than nothing, less than the test took.
        const sum = delta('debvisor_agent_ha_recovery_duration_seconds_sum');
        expect(sum).toBeGreaterThan(0);
        expect(sum / uuids.length).toBeLessThan(40);
        const status = await haStatus(watcher);
        const protectedCount = status.resources.filter((r) => r.state === 'protected').length;
        expect(sampleSum(after, 'debvisor_agent_ha_resources', { state: 'protected' })).toBe(
          protectedCount,
        );
        expect(sampleSum(after, 'debvisor_agent_ha_resources')).toBe(status.resources.length);
        // The other live node is no coordinator: it exports no resources, so a sum counts each VM once.
        const other = cluster.agents.find(
          (a) => a.nodeId !== leader && a.nodeId !== victim.nodeId,
        )!;
        const otherBody = await scrape(other.nodeId);
        expect(sampleSum(otherBody, 'debvisor_agent_ha_coordinator_leader')).toBe(0);
        expect(sampleSum(otherBody, 'debvisor_agent_ha_resources')).toBe(0);
      } finally {
        watcher.close();
      }
    } finally {
      client.close();
    }
  });
});
