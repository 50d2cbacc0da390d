import type { NodeResource, NodeState, VmResource } from './resources.dto';

/**
 * A node the manager has seen on a remote, kept until an operator forgets it: an expired lease
 * drops the node from the cluster's registry, but not from what the manager shows.
 */
export interface KnownNode {
  readonly remote: string;
  readonly nodeId: string;
  readonly state: NodeState;
  /** When the node entered its state. */
  readonly since: Date;
  /** The last refresh that found the node answering (online or degraded); null when it never did. */
  readonly lastSeenAt: Date | null;
  /** The node as last listed. */
  readonly node: NodeResource;
  /** Its VMs as last listed (what stays shown, as "unknown", while the node does not answer). */
  readonly vms: readonly VmResource[];
}

export interface Reconciled {
  /** Every known node of the remote, by id. */
  readonly known: Map<string, KnownNode>;
  /** What the cache lists: every known node with its state, and the live VMs plus the unknown VMs of the nodes that do not answer. */
  readonly nodes: NodeResource[];
  readonly vms: VmResource[];
  /** Known nodes that are new or whose state, name or set of VMs changed: what to persist. */
  readonly changed: KnownNode[];
}

/** The answering state of a node the cluster lists: its lease, whether its VMs could be listed, its health. */
export function listedState(
  node: NodeResource,
  unreachableNodes: Readonly<Record<string, string>>,
): NodeState {
  if (!node.alive) return 'down';
  if (node.id in unreachableNodes) return 'unreachable';
  return node.status === 'ok' ? 'online' : 'degraded';
}

export function answering(state: NodeState): boolean {
  return state === 'online' || state === 'degraded';
}

/** Down or unreachable: a node the manager expects and cannot reach (alerts, worst-of health). */
export function outage(state: NodeState): boolean {
  return state === 'unreachable' || state === 'down';
}

/** A VM of a node that does not answer: the manager does not know its state now. */
function unknownVm(vm: VmResource, lastSeenAt: Date | null): VmResource {
  return {
    ...vm,
    status: 'unknown',
    cpuUsage: 0,
    memoryUsedBytes: 0,
    stale: true,
    lastSeenAt: vm.lastSeenAt ?? lastSeenAt?.toISOString() ?? null,
  };
}

function sameVmSet(a: readonly VmResource[], b: readonly VmResource[]): boolean {
  if (a.length !== b.length) return false;
  const ids = new Set(a.map((vm) => `${vm.id}\u0000${vm.name}`));
  return b.every((vm) => ids.has(`${vm.id}\u0000${vm.name}`));
}

/**
 * Merges one successful refresh of a remote (its listed nodes, the VMs listed cluster-wide, the
 * nodes whose VMs could not be listed) with the nodes known before. A node the cluster no longer
 * lists is down (its lease expired); the VMs last seen on a node that does not answer stay listed
 * as "unknown" with when they were last seen, unless the cluster lists them elsewhere now.
 */
export function reconcile(
  previous: ReadonlyMap<string, KnownNode>,
  listedNodes: readonly NodeResource[],
  liveVms: readonly VmResource[],
  unreachableNodes: Readonly<Record<string, string>>,
  now: Date,
): Reconciled {
  const known = new Map<string, KnownNode>();
  const changed: KnownNode[] = [];
  const liveIds = new Set(liveVms.map((vm) => vm.id));
  const vmsByNode = new Map<string, VmResource[]>();
  for (const vm of liveVms) {
    const list = vmsByNode.get(vm.node);
    if (list) list.push(vm);
    else vmsByNode.set(vm.node, [vm]);
  }
  const vms: VmResource[] = liveVms.map((vm) => ({ ...vm, lastSeenAt: now.toISOString() }));
  const nodes: NodeResource[] = [];

  const keep = (
    before: KnownNode | undefined,
    state: NodeState,
    node: NodeResource,
    nodeVms: readonly VmResource[],
    lastSeenAt: Date | null,
  ) => {
    const since = before && before.state === state ? before.since : now;
    const entry: KnownNode = {
      remote: node.remote,
      nodeId: node.id,
      state,
      since,
      lastSeenAt,
      node,
      vms: nodeVms,
    };
    known.set(node.id, entry);
    if (
      !before ||
      before.state !== state ||
      before.node.name !== node.name ||
      !sameVmSet(before.vms, nodeVms)
    )
      changed.push(entry);
    nodes.push({
      ...node,
      state,
      stateSince: since.toISOString(),
      lastSeenAt: lastSeenAt?.toISOString() ?? null,
    });
  };
  const unknownVmsOf = (before: KnownNode | undefined): VmResource[] =>
    (before?.vms ?? [])
      .filter((vm) => !liveIds.has(vm.id))
      .map((vm) => unknownVm(vm, before?.lastSeenAt ?? null));

  for (const node of listedNodes) {
    const before = previous.get(node.id);
    const state = listedState(node, unreachableNodes);
    if (before?.state === 'decommissioned' && !answering(state)) {
      // An operator took it out of service: listed as such, no VMs expected of it, no alert.
      keep(before, 'decommissioned', { ...node, stale: true }, [], before.lastSeenAt);
    } else if (answering(state)) {
      keep(
        before,
        state,
        node,
        (vmsByNode.get(node.id) ?? []).map((vm) => ({ ...vm, lastSeenAt: now.toISOString() })),
        now,
      );
    } else {
      // Listed but not answering (its VMs could not be listed, or its lease ran out): its last seen VMs stay, unknown.
      const remembered = unknownVmsOf(before);
      vms.push(...remembered);
      const lastSeen = (before?.vms ?? []).filter((vm) => !liveIds.has(vm.id));
      keep(before, state, { ...node, stale: true }, lastSeen, before?.lastSeenAt ?? null);
    }
  }
  for (const [id, before] of previous) {
    if (known.has(id)) continue;
    // No longer in the cluster's registry: its lease expired (or it left). Presumed down until it
    // returns, is decommissioned or is forgotten.
    const node: NodeResource = {
      ...before.node,
      alive: false,
      status: 'offline',
      cpuUsage: 0,
      memoryUsedBytes: 0,
      stale: true,
    };
    if (before.state === 'decommissioned') {
      keep(before, 'decommissioned', node, [], before.lastSeenAt);
      continue;
    }
    const remembered = unknownVmsOf(before);
    vms.push(...remembered);
    keep(
      before,
      'down',
      node,
      before.vms.filter((vm) => !liveIds.has(vm.id)),
      before.lastSeenAt,
    );
  }
  return { known, nodes, vms, changed };
}
