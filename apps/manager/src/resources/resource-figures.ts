import type { NodeResource, RemoteStatus, VmResource } from './resources.dto';

/** A remote's nodes summed up: counts, and the capacity and use of the alive ones. */
export interface NodeFigures {
  /** Nodes in service (decommissioned ones are counted apart). */
  readonly total: number;
  /** Nodes an operator took out of service: listed, but no capacity, outage or alert. */
  readonly decommissioned: number;
  /** Nodes whose lease is alive, whatever their health. */
  readonly alive: number;
  /** Alive nodes whose health is not ok (degraded or failed). */
  readonly degraded: number;
  readonly offline: number;
  /** CPU cores of the alive nodes, and how many of them are in use (the sum of usage × cores). */
  readonly cores: number;
  readonly coresUsed: number;
  readonly memoryTotalBytes: number;
  readonly memoryUsedBytes: number;
  readonly offlineNames: readonly string[];
  readonly degradedNames: readonly string[];
  readonly failedNames: readonly string[];
  /** The nodes that do not answer (unreachable or down), with since when and how many of their VMs are unknown. */
  readonly outages: readonly NodeOutage[];
}

export interface NodeOutage {
  readonly id: string;
  readonly name: string;
  readonly state: 'unreachable' | 'down';
  readonly since: string | null;
  readonly unknownVms: number;
}

export interface VmCounts {
  readonly total: number;
  readonly running: number;
  readonly stopped: number;
  /** Neither running nor stopped: starting, stopping, migrating, paused, crashed … */
  readonly other: number;
  readonly crashed: number;
}

/** A remote's use after one successful refresh; fractions 0 … 1 of its alive nodes' capacity. */
export interface UsageSample {
  readonly at: string;
  readonly cpu: number;
  readonly memory: number;
}

/** One remote as the dashboard sees it: its status for the caller, node figures, the VMs the caller may see, recent use. */
export interface RemoteOverview {
  readonly status: RemoteStatus;
  readonly nodes: NodeFigures;
  readonly vms: VmCounts;
  readonly history: readonly UsageSample[];
}

/** `vms` (optional): the remote's VMs, to count the unknown VMs of each node that does not answer. */
export function nodeFigures(
  nodes: readonly NodeResource[],
  vms: readonly VmResource[] = [],
): NodeFigures {
  let alive = 0;
  let cores = 0;
  let coresUsed = 0;
  let memoryTotalBytes = 0;
  let memoryUsedBytes = 0;
  const offlineNames: string[] = [];
  const degradedNames: string[] = [];
  const failedNames: string[] = [];
  const outages: NodeOutage[] = [];
  let decommissioned = 0;
  for (const node of nodes) {
    if (node.state === 'decommissioned') {
      decommissioned += 1;
      continue;
    }
    if (node.state === 'unreachable' || node.state === 'down' || !node.alive) {
      offlineNames.push(node.name);
      const unknownVms = vms.filter((vm) => vm.node === node.id && vm.status === 'unknown').length;
      outages.push({
        id: node.id,
        name: node.name,
        state: node.state === 'unreachable' ? 'unreachable' : 'down',
        since: node.stateSince,
        unknownVms,
      });
      continue;
    }
    alive += 1;
    cores += node.cpuCount;
    coresUsed += node.cpuUsage * node.cpuCount;
    memoryTotalBytes += node.memoryTotalBytes;
    memoryUsedBytes += node.memoryUsedBytes;
    if (node.status === 'failed') failedNames.push(node.name);
    else if (node.status !== 'ok') degradedNames.push(node.name);
  }
  return {
    total: nodes.length - decommissioned,
    decommissioned,
    alive,
    degraded: degradedNames.length + failedNames.length,
    offline: offlineNames.length,
    cores,
    coresUsed,
    memoryTotalBytes,
    memoryUsedBytes,
    offlineNames,
    degradedNames,
    failedNames,
    outages,
  };
}

export function vmCounts(vms: readonly VmResource[]): VmCounts {
  let running = 0;
  let stopped = 0;
  let crashed = 0;
  for (const vm of vms) {
    if (vm.status === 'running') running += 1;
    else if (vm.status === 'stopped') stopped += 1;
    else if (vm.status === 'crashed') crashed += 1;
  }
  return { total: vms.length, running, stopped, other: vms.length - running - stopped, crashed };
}

export function usageSample(at: Date, figures: NodeFigures): UsageSample {
  return {
    at: at.toISOString(),
    cpu: figures.cores > 0 ? Math.min(1, figures.coresUsed / figures.cores) : 0,
    memory:
      figures.memoryTotalBytes > 0
        ? Math.min(1, figures.memoryUsedBytes / figures.memoryTotalBytes)
        : 0,
  };
}

/**
 * A name as it sorts: case-insensitive, numbers by value (web-2 before web-10). Computed once per
 * refresh, because comparing with Intl.Collator is ten times slower on a hundred thousand names.
 */
export function nameSortKey(name: string): string {
  return name
    .toLowerCase()
    .replace(/\d+/g, (digits) => digits.replace(/^0+(?=\d)/, '').padStart(16, '0'));
}
