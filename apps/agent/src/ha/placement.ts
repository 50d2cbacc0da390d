import type { VmDefinition } from '../drivers/hypervisor.driver';
import { checkCpu } from '../migration/cpu-baseline';
import type { HaPolicy, HealthRecord } from './ha.records';

/** A node as placement sees it. */
export interface PlacementCandidate {
  nodeId: string;
  /** Lease alive, not fenced, not in maintenance. */
  eligible: boolean;
  /** Why not, when not eligible. */
  ineligibleReason?: string;
  health: HealthRecord | undefined;
  groups: readonly string[];
  cpuModel: string;
  cpuFlags: readonly string[];
  memoryBytes: number;
  /** Memory the node's VMs use, plus what this round placed there already. */
  memoryUsedBytes: number;
}

export type Placement = { nodeId: string } | { nodeId: undefined; reason: string };

/**
 * Where a VM of a lost node (or of a node being drained) runs next: an eligible node that is not failed, in the policy's node
 * group, whose CPU offers the VM's baseline, with room for its memory; preferred nodes first (in
 * their order), then the healthiest, then the one with the most free memory.
 */
export function placeVm(
  vm: Pick<VmDefinition, 'name' | 'cpuModel' | 'memoryBytes'>,
  policy: HaPolicy,
  source: { cpuModel: string; cpuFlags: readonly string[] },
  candidates: readonly PlacementCandidate[],
): Placement {
  const refusals: string[] = [];
  const fits = candidates.filter((node) => {
    const refuse = (why: string): false => {
      refusals.push(`${node.nodeId}: ${why}`);
      return false;
    };
    if (!node.eligible) return refuse(node.ineligibleReason ?? 'not eligible');
    if (node.health?.state === 'failed')
      return refuse(`health failed (score ${node.health.score})`);
    if (policy.nodeGroup && !node.groups.includes(policy.nodeGroup))
      return refuse(`not in the node group ${policy.nodeGroup}`);
    const cpu = checkCpu(
      vm.cpuModel,
      { model: source.cpuModel, flags: source.cpuFlags },
      {
        model: node.cpuModel,
        flags: node.cpuFlags,
      },
    );
    if (cpu.result === 'fail') return refuse(cpu.reason);
    const free = node.memoryBytes - node.memoryUsedBytes;
    if (free < vm.memoryBytes)
      return refuse(`${mib(free)} MiB free, the VM needs ${mib(vm.memoryBytes)} MiB`);
    return true;
  });
  if (fits.length === 0)
    return {
      nodeId: undefined,
      reason: `no node fits VM ${vm.name}: ${refusals.join('; ') || 'no other node'}`,
    };
  const preference = (nodeId: string): number => {
    const index = policy.preferredNodes.indexOf(nodeId);
    return index < 0 ? Number.MAX_SAFE_INTEGER : index;
  };
  const best = [...fits].sort(
    (a, b) =>
      preference(a.nodeId) - preference(b.nodeId) ||
      (b.health?.score ?? 0) - (a.health?.score ?? 0) ||
      b.memoryBytes - b.memoryUsedBytes - (a.memoryBytes - a.memoryUsedBytes) ||
      a.nodeId.localeCompare(b.nodeId),
  )[0]!;
  return { nodeId: best.nodeId };
}

function mib(bytes: number): number {
  return Math.floor(bytes / (1024 * 1024));
}
