import type { HaNode__Output, HaResource__Output, HaStatus__Output } from '@debvisor/proto';
import {
  HA_NODE_STATES,
  HA_VM_STATES,
  type HaNodeState,
  type HaNodeView,
  type HaRemoteSummary,
  type HaVmState,
  type HaVmView,
} from './ha.dto';

/** Node states in which the coordinator is taking the node out: lease gone, fence under way. */
const FENCE_ACTIVE: ReadonlySet<string> = new Set(['suspect', 'fencing']);
/** Node states after a fence: the node is out until it rejoins. */
const FENCE_DONE: ReadonlySet<string> = new Set(['fenced', 'fence-failed']);

export function nodeState(state: string): HaNodeState {
  return (HA_NODE_STATES as readonly string[]).includes(state) ? (state as HaNodeState) : 'unknown';
}

/**
 * The manager's word for an HA VM: the cluster's resource state, read together with its node's.
 * A VM still recorded as running on a fenced node is `fenced` until the coordinator moves it; on a
 * node whose lease is gone (suspect, fencing) it is already `recovering`.
 */
export function vmState(resource: HaResource__Output, node: HaNode__Output | undefined): HaVmState {
  switch (resource.state) {
    case 'recovering':
    case 'pending':
      return 'recovering';
    case 'error':
      return 'error';
    case 'disabled':
      return 'disabled';
    case 'stopped':
      return 'stopped';
    case 'protected':
      if (node && FENCE_DONE.has(node.state)) return 'fenced';
      if (node && FENCE_ACTIVE.has(node.state)) return 'recovering';
      return 'protected';
    default:
      return (HA_VM_STATES as readonly string[]).includes(resource.state)
        ? (resource.state as HaVmState)
        : 'unknown';
  }
}

export function toNodeView(node: HaNode__Output, coordinator: string): HaNodeView {
  const health = node.health;
  const fence = node.fence;
  return {
    node: node.nodeId,
    state: nodeState(node.state),
    reason: node.reason,
    alive: node.alive,
    coordinator: node.nodeId === coordinator && coordinator !== '',
    health: health
      ? {
          score: health.score,
          state: health.state,
          degradedBelow: health.degradedBelow,
          failedBelow: health.failedBelow,
          evaluatedAt: health.evaluatedAt,
          probes: health.probes.map((probe) => ({
            name: probe.name,
            result: probe.result,
            penalty: probe.penalty,
            reason: probe.reason,
            latencyMs: probe.latencyMs,
          })),
        }
      : null,
    fence: fence
      ? {
          state: fence.state,
          epoch: String(fence.epoch),
          blocklisted: [...fence.blocklisted],
          locksBroken: [...fence.locksBroken],
          at: fence.at,
          reason: fence.reason,
        }
      : null,
  };
}

export function toVmView(resource: HaResource__Output, node: HaNode__Output | undefined): HaVmView {
  const policy = resource.policy;
  return {
    vm: resource.vmUuid,
    name: resource.vmName || resource.vmUuid,
    state: vmState(resource, node),
    clusterState: resource.state,
    node: resource.nodeId,
    reason: resource.reason,
    policy: {
      enabled: policy?.enabled ?? false,
      priority: policy?.priority ?? 0,
      preferredNodes: [...(policy?.preferredNodes ?? [])],
      nodeGroup: policy?.nodeGroup ?? '',
      maxRestarts: policy?.maxRestarts ?? 0,
      maxRelocations: policy?.maxRelocations ?? 0,
      onNoNode: policy?.onNoNode || 'wait',
    },
    restarts: resource.restarts,
    relocations: resource.relocations,
    epoch: String(resource.epoch),
    updatedAt: resource.updatedAt,
  };
}

/** Each resource with the node it runs on, by VM uuid (lower case). */
export function nodesById(status: HaStatus__Output): Map<string, HaNode__Output> {
  return new Map(status.nodes.map((node) => [node.nodeId, node]));
}

export function zeroCounts<T extends string>(states: readonly T[]): Record<T, number> {
  return Object.fromEntries(states.map((state) => [state, 0])) as Record<T, number>;
}

/** The counts, the coordinator and the alerts of one remote's HA status. */
export function summarize(
  status: HaStatus__Output,
): Pick<HaRemoteSummary, 'coordinator' | 'fencingEpoch' | 'nodes' | 'vms' | 'alerts'> {
  const nodes = zeroCounts(HA_NODE_STATES);
  const vms = zeroCounts(HA_VM_STATES);
  const byId = nodesById(status);
  for (const node of status.nodes) nodes[nodeState(node.state)] += 1;
  const errors: HaResource__Output[] = [];
  for (const resource of status.resources) {
    const state = vmState(resource, byId.get(resource.nodeId));
    vms[state] += 1;
    if (state === 'error') errors.push(resource);
  }
  const alerts: HaRemoteSummary['alerts'] = [];
  if (!status.coordinatorNodeId)
    alerts.push({
      severity: 'critical',
      message:
        'no HA coordinator is elected: dead nodes are neither fenced nor their VMs recovered',
    });
  for (const node of status.nodes) {
    if (node.state === 'fence-failed' || node.fence?.state === 'unconfirmed')
      alerts.push({
        severity: 'critical',
        message: `node ${node.nodeId}: fencing could not be confirmed, its VMs are not started elsewhere${node.reason ? ` (${node.reason})` : ''}; see docs/ha.md`,
      });
    else if (node.state === 'fenced')
      alerts.push({
        severity: 'critical',
        message: `node ${node.nodeId} is fenced${node.reason ? `: ${node.reason}` : ''}`,
      });
    else if (FENCE_ACTIVE.has(node.state))
      alerts.push({
        severity: 'warning',
        message: `node ${node.nodeId} is ${node.state}${node.reason ? `: ${node.reason}` : ''}`,
      });
  }
  for (const resource of errors)
    alerts.push({
      severity: 'critical',
      message: `VM ${resource.vmName || resource.vmUuid} could not be recovered${resource.reason ? `: ${resource.reason}` : ''}`,
    });
  return {
    coordinator: status.coordinatorNodeId || null,
    fencingEpoch: String(status.fencingEpoch),
    nodes,
    vms,
    alerts,
  };
}

/** Where an HA episode stands: nothing going on, under way, or ended one way or the other. */
export type Phase = 'none' | 'active' | 'succeeded' | 'failed';

/** A node's fence: under way while suspect or fencing; done when fenced (confirmed) or not. */
export function fencePhase(node: HaNode__Output): Phase {
  if (FENCE_ACTIVE.has(node.state)) return 'active';
  if (node.state === 'fence-failed' || node.fence?.state === 'unconfirmed') return 'failed';
  if (node.state === 'fenced') return 'succeeded';
  return 'none';
}

/** A node's drain: under way while draining; done once in maintenance. */
export function drainPhase(node: HaNode__Output): Phase {
  if (node.state === 'draining') return 'active';
  if (node.state === 'maintenance') return 'succeeded';
  return 'none';
}

/** A VM's recovery: under way while recovering, pending or on a node being fenced; failed in error. */
export function recoveryPhase(
  resource: HaResource__Output,
  node: HaNode__Output | undefined,
): Phase {
  const state = vmState(resource, node);
  if (state === 'recovering' || state === 'fenced') return 'active';
  if (state === 'error') return 'failed';
  if (state === 'protected') return 'succeeded';
  return 'none';
}

/** One journal line describing a node's HA state. */
export function describeNode(node: HaNode__Output): string {
  const parts = [`node ${node.nodeId} ${node.state}`];
  if (node.reason) parts.push(node.reason);
  if (node.fence && node.fence.state !== 'released') {
    const fence = node.fence;
    const details = [`fence ${fence.state} (epoch ${String(fence.epoch)})`];
    if (fence.blocklisted.length > 0) details.push(`blocklisted ${fence.blocklisted.join(', ')}`);
    if (fence.locksBroken.length > 0) details.push(`locks broken ${fence.locksBroken.join(', ')}`);
    parts.push(details.join('; '));
  }
  return parts.join(': ');
}

/** One journal line describing an HA VM's state. */
export function describeVm(resource: HaResource__Output, node: HaNode__Output | undefined): string {
  const name = resource.vmName || resource.vmUuid;
  const where = resource.nodeId ? ` on node ${resource.nodeId}` : '';
  const nodeNote = node && node.state !== 'online' ? ` (node ${node.state})` : '';
  return `VM ${name} ${resource.state}${where}${nodeNote}${resource.reason ? `: ${resource.reason}` : ''} (epoch ${String(resource.epoch)})`;
}
