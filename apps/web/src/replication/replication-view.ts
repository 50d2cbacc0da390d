import { formatDuration, formatTime, formatUtc } from '../ui/format';
import type { FailoverPreview, VmReplication } from './queries';

type Row = Pick<VmReplication, 'rpoSeconds' | 'rpoTargetSeconds' | 'rpoExceeded'>;

/** The RPO against its target in words (colour only helps): "4 min 12 s, within its 15 min target". */
export function rpoInWords(row: Row): string {
  if (row.rpoSeconds === null)
    return `unknown (no site has answered yet); target ${formatDuration(row.rpoTargetSeconds)}`;
  const rpo = formatDuration(row.rpoSeconds);
  const target = formatDuration(row.rpoTargetSeconds);
  return row.rpoExceeded
    ? `${rpo}: over its ${target} target`
    : `${rpo}, within its ${target} target`;
}

/** For styling and tests: over, within or unknown. */
export function rpoLevel(row: Row): 'over' | 'within' | 'unknown' {
  if (row.rpoSeconds === null || row.rpoExceeded === null) return 'unknown';
  return row.rpoExceeded ? 'over' : 'within';
}

const HEALTH_WORDS: Record<VmReplication['health'], string> = {
  ok: 'replaying',
  syncing: 'syncing',
  error: 'mirroring in error',
  'split-brain': 'split brain: primary at both sites',
  unknown: 'not read yet',
};

export function healthInWords(health: VmReplication['health']): string {
  return HEALTH_WORDS[health];
}

/** The remote that is not where the VM runs: where a switchover or failover would move it. */
export function otherRemote(
  row: Pick<VmReplication, 'primaryRemote' | 'source' | 'target'>,
): string {
  return row.primaryRemote === row.source.remote ? row.target.remote : row.source.remote;
}

/** "primary at dc-east, secondary at dc-west" — both sites' DR roles. */
export function rolesInWords(row: Pick<VmReplication, 'source' | 'target'>): string {
  return `${row.source.role} at ${row.source.remote}, ${row.target.role} at ${row.target.remote}`;
}

/** What a row's pending action is, in words: "switchover running". */
export function pendingInWords(row: Pick<VmReplication, 'pending' | 'phase'>): string | null {
  if (row.pending) return `${row.pending.action} in progress`;
  if (row.phase !== 'active') return row.phase;
  return null;
}

/** The data at risk and the fencing in sentences, from the preview's figures (times in the user's locale and UTC). */
export function riskInWords(
  vm: string,
  preview: Pick<
    FailoverPreview,
    'from' | 'to' | 'rpoSeconds' | 'lastMirroredSnapshotAt' | 'sourceReachable'
  >,
): string {
  const since = preview.lastMirroredSnapshotAt
    ? ` — since ${formatTime(preview.lastMirroredSnapshotAt)} (${formatUtc(preview.lastMirroredSnapshotAt)})`
    : '';
  const loss =
    preview.rpoSeconds === null
      ? `Neither site could say when the last snapshot was mirrored: how much of what ${vm} wrote at ${preview.from} is lost is unknown.`
      : `Everything ${vm} wrote to its disks at ${preview.from} in the last ${formatDuration(preview.rpoSeconds)}${since} is lost.`;
  const fence = preview.sourceReachable
    ? ` ${preview.from} answers: its clients of the images can be blocklisted (fenced) before ${preview.to} is promoted.`
    : ` ${preview.from} does not answer and cannot be fenced: it must be declared down — if it is in fact running, both sites will write (split brain).`;
  return loss + fence;
}
