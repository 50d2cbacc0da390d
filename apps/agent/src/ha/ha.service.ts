import type { HaEvent, HaNode, HaResource, HaStatus } from '@debvisor/proto';
import type { NodeEntry } from '../registry/node.schema';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Clock } from '../shared/clock';
import type { VmIndexRepository } from '../vms/vm-index.repository';
import {
  cleanAfter,
  type HaPolicy,
  type HealthRecord,
  type PolicyRecord,
  type ResourceRecord,
} from './ha.records';
import type { HaRepository, HaSnapshot } from './ha.repository';
import type { SetHaPolicyInput } from './ha.requests';

export interface HaServiceDeps {
  clusterId: string;
  repository: HaRepository;
  registry: { list(): Promise<NodeEntry[]> };
  index: Pick<VmIndexRepository, 'get'>;
  clock: Clock;
}

/** HaService: the cluster's HA state as any agent reads it from etcd, and the operator's changes. */
export class HaService {
  constructor(private readonly deps: HaServiceDeps) {}

  async status(): Promise<HaStatus> {
    const [leader, ha, entries, healths] = await Promise.all([
      this.deps.repository.leader(),
      this.deps.repository.snapshot(),
      this.deps.registry.list(),
      this.deps.repository.healths(),
    ]);
    const nodes = new Map(entries.map((e) => [e.info.nodeId, e]));
    const ids = [...new Set([...nodes.keys(), ...ha.members.keys()])].sort();
    return {
      clusterId: this.deps.clusterId,
      coordinatorNodeId: leader?.nodeId ?? '',
      fencingEpoch: leader?.epoch ?? 0,
      nodes: ids.map((id) => nodeView(id, nodes.get(id), ha, healths.get(id))),
      resources: [...ha.policies.values()]
        .sort((a, b) => b.policy.priority - a.policy.priority || a.vmName.localeCompare(b.vmName))
        .map((policy) => resourceView(policy, ha.resources.get(policy.vmUuid))),
    };
  }

  async setPolicy(input: SetHaPolicyInput): Promise<HaResource> {
    const location = await this.deps.index.get(input.vmUuid);
    if (!location)
      throw new AgentError(ErrorCode.NotFound, `this cluster has no VM ${input.vmUuid}`);
    const record: PolicyRecord = {
      vmUuid: input.vmUuid,
      vmName: location.name,
      policy: input.policy as HaPolicy,
      updatedAt: this.deps.clock.now().toISOString(),
    };
    await this.deps.repository.putPolicy(record);
    const current = (await this.deps.repository.snapshot()).resources.get(input.vmUuid);
    return resourceView(record, current, location.nodeId);
  }

  async events(after: string, limit: number): Promise<{ events: HaEvent[] }> {
    const events = await this.deps.repository.events(after, limit || 100);
    return {
      events: events.map((e) => ({
        id: e.id,
        at: e.at,
        epoch: e.epoch,
        kind: e.kind,
        nodeId: e.nodeId,
        vmUuid: e.vmUuid ?? '',
        message: e.message,
      })),
    };
  }

  async removePolicy(uuid: string): Promise<{ removed: boolean }> {
    return { removed: await this.deps.repository.deletePolicy(uuid) };
  }

  async setMaintenance(nodeId: string, enabled: boolean): Promise<HaNode> {
    const entries = await this.deps.registry.list();
    const ha = await this.deps.repository.snapshot();
    if (!entries.some((e) => e.info.nodeId === nodeId) && !ha.members.has(nodeId))
      throw new AgentError(ErrorCode.NotFound, `this cluster has no node ${nodeId}`);
    if (enabled)
      await this.deps.repository.putMaintenance({
        nodeId,
        state: 'draining',
        reason: 'maintenance requested',
        requestedAt: this.deps.clock.now().toISOString(),
      });
    else await this.deps.repository.deleteMaintenance(nodeId);
    const node = (await this.status()).nodes?.find((n) => n.nodeId === nodeId);
    if (!node) throw new AgentError(ErrorCode.NotFound, `this cluster has no node ${nodeId}`);
    return node;
  }
}

function nodeView(
  nodeId: string,
  entry: NodeEntry | undefined,
  ha: HaSnapshot,
  health: HealthRecord | undefined,
): HaNode {
  const alive = entry?.alive ?? false;
  const fence = ha.fences.get(nodeId);
  const maintenance = ha.maintenance.get(nodeId);
  const clean = fence && cleanAfter(ha.members.get(nodeId), fence);
  let state = 'online';
  let reason = 'lease alive';
  if (fence && fence.state !== 'released') {
    state =
      fence.state === 'unconfirmed'
        ? 'fence-failed'
        : fence.state === 'fencing'
          ? 'fencing'
          : alive && clean
            ? 'rejoining'
            : 'fenced';
    reason = fence.reason;
  } else if (maintenance) {
    state = maintenance.state === 'draining' ? 'draining' : 'maintenance';
    reason = maintenance.reason;
  } else if (!alive) {
    state = 'suspect';
    reason = entry ? 'no heartbeat within its lease TTL' : 'its lease expired';
  }
  return {
    nodeId,
    state,
    reason,
    alive,
    health: health ?? undefined,
    fence: fence ?? undefined,
  };
}

function resourceView(
  policy: PolicyRecord,
  resource: ResourceRecord | undefined,
  nodeId = '',
): HaResource {
  return {
    vmUuid: policy.vmUuid,
    vmName: policy.vmName,
    policy: policy.policy,
    state: resource?.state ?? (policy.policy.enabled ? 'protected' : 'disabled'),
    nodeId: resource?.nodeId || nodeId,
    reason: resource?.reason ?? 'waiting for the HA coordinator',
    relocations: resource?.relocations.length ?? 0,
    restarts: resource?.restarts.length ?? 0,
    epoch: resource?.epoch ?? 0,
    updatedAt: resource?.updatedAt ?? policy.updatedAt,
  };
}
