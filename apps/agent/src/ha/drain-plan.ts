/** The decisions of a maintenance drain (docs/ha.md, maintenance); ha-drain.service.ts acts on them. */

export interface DrainCandidate {
  uuid: string;
  name: string;
  /** The HA policy's priority; undefined for a VM without HA (moved after every HA VM). */
  priority: number | undefined;
}

/** The order VMs leave a draining node: HA VMs by priority (highest first), then the others; by name. */
export function drainOrder<T extends DrainCandidate>(vms: readonly T[]): T[] {
  return [...vms].sort(
    (a, b) =>
      (b.priority ?? -1) - (a.priority ?? -1) ||
      a.name.localeCompare(b.name) ||
      a.uuid.localeCompare(b.uuid),
  );
}

/** How long after its `failures`-th failure a move is tried again: doubling from `baseMs`, up to 16×. */
export function retryDelayMs(failures: number, baseMs: number): number {
  return baseMs * 2 ** Math.min(Math.max(failures - 1, 0), 4);
}

export interface DrainProgress {
  left: number;
  /** VMs being moved now: name → target node. */
  moving: readonly { name: string; target: string }[];
  /** VMs that could not move: their reason and when they are tried again. */
  waiting: readonly { name: string; reason: string; retryInMs: number }[];
  /** The node's lease is gone: nothing can be moved from it. */
  nodeAlive: boolean;
}

/** The maintenance record's state and reason for a drain's progress. */
export function drainState(progress: DrainProgress): {
  state: 'draining' | 'maintenance';
  reason: string;
} {
  // A move's VM is indexed at its target before its migration has ended: the move ends first.
  if (progress.left === 0 && progress.moving.length === 0)
    return { state: 'maintenance', reason: 'no VM left on the node; new placements avoid it' };
  if (!progress.nodeAlive)
    return {
      state: 'draining',
      reason: `${progress.left} VM(s) on the node, which is not alive: nothing can be moved from it; HA recovers its HA VMs once it is fenced`,
    };
  const parts = [
    progress.left > 0
      ? `${progress.left} VM(s) still on the node, being live-migrated away`
      : 'the last moves are ending',
  ];
  if (progress.moving.length > 0)
    parts.push(`moving ${progress.moving.map((m) => `${m.name} to ${m.target}`).join(', ')}`);
  for (const w of progress.waiting)
    parts.push(
      `${w.name} cannot move: ${w.reason} (tried again in ${Math.ceil(w.retryInMs / 1000)} s)`,
    );
  return { state: 'draining', reason: parts.join('; ').slice(0, 1000) };
}
