import type { HaPolicy, ResourceRecord } from './ha.records';

/** What HA does about an HA VM whose process died on a live node (docs/ha.md, restarts). */
export type CrashAction =
  | { kind: 'restart'; count: number }
  | { kind: 'relocate'; count: number }
  | { kind: 'give-up'; reason: string };

/** The start of every give-up reason of the restart policy (the VM stays down until an operator acts). */
export const GAVE_UP_RESTARTING = 'gave up restarting';
/** How every reason of a VM that HA gave up on begins (the restart policy's and recovery's). */
export const GAVE_UP = 'gave up';
/** Has HA given up on this VM (by the restart policy or by recovery)? It waits for an operator. */
export function gaveUp(
  resource: ResourceRecord | undefined,
): resource is ResourceRecord & { state: 'error' } {
  return resource?.state === 'error' && resource.reason.startsWith(GAVE_UP);
}
/** Ends the reason of a VM HA gave up on that is defined, stopped, on a live node. */
export const UNTIL_AN_OPERATOR = 'it stays stopped until an operator starts it';

/** The timestamps of `times` within the last `windowMs` before `now`. */
export function withinWindow(times: readonly string[], now: Date, windowMs: number): string[] {
  return times.filter((t) => now.getTime() - Date.parse(t) < windowMs);
}

/**
 * The next step for a crashed HA VM: restart it in place while fewer than max_restarts restarts
 * happened within the window, then relocate it to another node while fewer than max_relocations
 * relocations did, then give up (state `error`, no endless loop). Counts only what happened within
 * `windowMs`: a VM that ran that long without trouble starts afresh. `inPlace: false` (its node is
 * being drained) skips the restarts in place.
 */
export function crashAction(
  policy: Pick<HaPolicy, 'maxRestarts' | 'maxRelocations'>,
  history: { restarts: readonly string[]; relocations: readonly string[] },
  now: Date,
  windowMs: number,
  inPlace = true,
): CrashAction {
  const restarts = withinWindow(history.restarts, now, windowMs).length;
  const relocations = withinWindow(history.relocations, now, windowMs).length;
  if (inPlace && restarts < policy.maxRestarts) return { kind: 'restart', count: restarts + 1 };
  if (relocations < policy.maxRelocations) return { kind: 'relocate', count: relocations + 1 };
  const window = describeWindow(windowMs);
  return {
    kind: 'give-up',
    reason: `${GAVE_UP_RESTARTING}: it stopped unexpectedly again after ${restarts} restart(s) in place (max_restarts ${policy.maxRestarts}) and ${relocations} relocation(s) (max_relocations ${policy.maxRelocations}) within ${window}; ${UNTIL_AN_OPERATOR}`,
  };
}

function describeWindow(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}
