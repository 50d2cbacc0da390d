import type { AgentClient, TestAgent, TestCluster } from '@debvisor/testing';
import type { HaStatus__Output } from '@debvisor/proto';
import { eventually } from './helpers';

/** HA settings that make detection quick in tests (the harness's lease TTL is 3 s). */
export const FAST_HA = {
  tickMs: 200,
  coordinatorTtlSeconds: 3,
  fenceRetrySeconds: 2,
  fenceTimeoutSeconds: 60,
  probeTimeoutMs: 1_000,
};

export const DEFAULT_POLICY = {
  enabled: true,
  priority: 100,
  preferredNodes: [],
  nodeGroup: '',
  maxRestarts: 1,
  maxRelocations: 5,
  onNoNode: 'wait',
};

export interface HaEvent {
  at: string;
  epoch: number;
  kind: string;
  nodeId: string;
  vmUuid?: string;
  message: string;
}

/** Every HA event in etcd, oldest first (read directly: the test checks what the agents wrote). */
export async function haEvents(cluster: TestCluster): Promise<HaEvent[]> {
  const etcd = cluster.etcd.client();
  try {
    const values = await etcd.getAll().prefix('/debvisor/ha/events/').strings();
    return Object.keys(values)
      .sort()
      .map((key) => JSON.parse(values[key]!) as HaEvent);
  } finally {
    etcd.close();
  }
}

export async function haStatus(client: AgentClient): Promise<HaStatus__Output> {
  return client.ha.getHaStatus({});
}

/** Running VMs of one node, asked of that node's own agent. */
export async function runningOn(cluster: TestCluster, apiKey: string, agent: TestAgent) {
  const client = cluster.connect(apiKey, agent);
  try {
    const { vms } = await client.vm.listVms({ nodeId: agent.nodeId });
    return vms.filter((vm) => vm.runtime?.state === 'running').map((vm) => vm.spec!.uuid);
  } finally {
    client.close();
  }
}

/** Puts VMs under HA and waits until their node published their definitions. */
export async function protect(
  cluster: TestCluster,
  client: AgentClient,
  uuids: readonly string[],
  policy: Partial<typeof DEFAULT_POLICY> = {},
): Promise<void> {
  if (uuids.length === 0) throw new Error('nothing to protect');
  for (const uuid of uuids)
    await client.ha.setHaPolicy({ vmUuid: uuid, policy: { ...DEFAULT_POLICY, ...policy } });
  const etcd = cluster.etcd.client();
  try {
    await eventually(async () => {
      const specs = await etcd.getAll().prefix('/debvisor/ha/specs/').keys();
      const status = await haStatus(client);
      const protectedHere = status.resources.filter(
        (r) => uuids.includes(r.vmUuid) && r.state === 'protected' && r.epoch !== '0',
      );
      return uuids.every((u) => specs.includes(`/debvisor/ha/specs/${u}`)) &&
        protectedHere.length === uuids.length
        ? true
        : undefined;
    }, 20_000);
  } finally {
    etcd.close();
  }
}

/** The coordinator's node, once one is elected. */
export async function coordinator(client: AgentClient): Promise<string> {
  const { value } = await eventually(async () => {
    const status = await haStatus(client);
    return status.coordinatorNodeId || undefined;
  }, 20_000);
  return value;
}
