import { formatDuration, formatTime, formatUtc } from '../ui/format';
import type { Schedule, Snapshot } from './queries';

/** VM states in which a rollback needs the VM stopped first. */
const STOPPED = new Set(['stopped', 'crashed']);

export function needsStop(vmStatus: string): boolean {
  return !STOPPED.has(vmStatus);
}

/**
 * What a rollback to `snapshot` gives up, in words for the confirmation: every write since the
 * snapshot on every disk, and — when the VM is not stopped — that it is stopped first (or that
 * the rollback is refused without that).
 */
export function rollbackLoss(
  snapshot: Pick<Snapshot, 'name' | 'createdAt' | 'disks'>,
  vm: { name: string; status: string },
  stopFirst: boolean,
  now = Date.now(),
): string[] {
  const disks =
    snapshot.disks.length === 1 ? 'its disk' : `all ${snapshot.disks.length} of its disks`;
  const since = snapshot.createdAt
    ? `${formatTime(snapshot.createdAt)} (${formatUtc(snapshot.createdAt)}, ${formatDuration(Math.max(0, (now - Date.parse(snapshot.createdAt)) / 1000))} ago)`
    : 'the snapshot was taken (its remote did not say when)';
  const lines = [
    `Everything written to ${disks} since ${since} is lost: ${vm.name} goes back to snapshot ${snapshot.name}. This cannot be undone.`,
  ];
  if (needsStop(vm.status)) {
    lines.push(
      stopFirst
        ? `${vm.name} is ${vm.status}: it will be stopped first, at once, like pulling the plug — what its guest has not written to disk is lost too.`
        : `${vm.name} is ${vm.status}: the rollback is refused unless it is stopped. Tick "Stop the VM first" to stop it as part of the rollback.`,
    );
  }
  return lines;
}

/** Quick choices for a VM's schedule: the common ones, by name. */
export const SCHEDULE_PRESETS = [
  { id: 'hourly', label: 'Hourly, keep 24', interval: '1h', keep: 24 },
  { id: 'daily', label: 'Daily, keep 7', interval: '1d', keep: 7 },
  { id: 'weekly', label: 'Weekly, keep 4', interval: '7d', keep: 4 },
] as const;
export type SchedulePreset = (typeof SCHEDULE_PRESETS)[number];

const UNIT_WORDS: Record<string, [string, string]> = {
  m: ['minute', 'minutes'],
  h: ['hour', 'hours'],
  d: ['day', 'days'],
};

/** "1h" → "every hour", "15m" → "every 15 minutes"; anything else as it is. */
export function intervalInWords(interval: string): string {
  const match = /^(\d+)([mhd])$/.exec(interval);
  if (!match) return `every ${interval}`;
  const [singular, plural] = UNIT_WORDS[match[2]];
  return match[1] === '1' ? `every ${singular}` : `every ${match[1]} ${plural}`;
}

/** A schedule's timing and retention: "every hour, keeps 24". */
export function scheduleInWords(schedule: Pick<Schedule, 'interval' | 'cron' | 'keep'>): string {
  const timing = schedule.interval
    ? intervalInWords(schedule.interval)
    : `cron "${schedule.cron}" (UTC)`;
  return `${timing}, keeps ${schedule.keep}`;
}

/** The schedules that snapshot this VM: its own, and those of its remote that match its labels or a pool of its disks. */
export function schedulesOfVm(
  schedules: readonly Schedule[],
  vm: {
    remote: string;
    id: string;
    labels: Record<string, string>;
    disks: readonly { pool: string }[];
  },
): { schedule: Schedule; through: string | null }[] {
  const pools = new Set(vm.disks.map((disk) => disk.pool));
  const result: { schedule: Schedule; through: string | null }[] = [];
  for (const schedule of schedules) {
    const target = schedule.target;
    if (target.remote !== vm.remote) continue;
    if (target.type === 'vm' && target.vm?.toLowerCase() === vm.id.toLowerCase())
      result.push({ schedule, through: null });
    else if (
      target.type === 'labels' &&
      target.labels &&
      Object.entries(target.labels).every(([key, value]) => vm.labels[key] === value)
    ) {
      result.push({
        schedule,
        through: `labels ${Object.entries(target.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')}`,
      });
    } else if (target.type === 'pool' && target.pool && pools.has(target.pool))
      result.push({ schedule, through: `pool ${target.pool}` });
  }
  return result;
}
