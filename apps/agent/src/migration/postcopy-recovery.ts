/**
 * The wall-clock end of a post-copy recovery window as people read it in a task: "HH:MM UTC"
 * (with the date when it is not today's, in UTC).
 */
export function untilText(until: number, now = Date.now()): string {
  const at = new Date(until);
  const time = `${pad(at.getUTCHours())}:${pad(at.getUTCMinutes())} UTC`;
  return at.toISOString().slice(0, 10) === new Date(now).toISOString().slice(0, 10)
    ? time
    : `${at.toISOString().slice(0, 10)} ${time}`;
}

function pad(value: number): string {
  return String(value).padStart(2, '0');
}

/**
 * What an operator does with a post-copy migration whose link stayed down past the recovery
 * window: the VM's memory is split between the two nodes, so neither may be started, stopped or
 * restarted on its own.
 */
export function operatorSteps(vmName: string, sourceNode: string, targetNode: string): string {
  return [
    `needs operator: VM ${vmName} is paused on node ${sourceNode} (which holds the memory pages not yet sent) and on node ${targetNode} (which runs it once they arrive)`,
    'its memory is split between them, so do not stop, restart or start it on either node',
    `1) restore the link between node ${sourceNode} and node ${targetNode}`,
    `2) run the migration again with the same migration id (MigrateVm at node ${sourceNode}): the agents resume it for another recovery window`,
    '3) only if the link cannot come back: stop the VM on both nodes and start it from its disks (its memory since the switch to post-copy is lost)',
  ].join('; ');
}
