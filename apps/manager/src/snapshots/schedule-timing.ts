import { Cron } from 'croner';

/** When a schedule runs: every N seconds from its anchor (its creation), or at the times of a cron expression (UTC). */
export type ScheduleTiming =
  | { readonly intervalSeconds: number; readonly cron: null }
  | { readonly intervalSeconds: null; readonly cron: string };

const UNITS = { m: 60, h: 3600, d: 86_400 } as const;
/** The shortest interval a schedule may have. */
export const MIN_INTERVAL_SECONDS = 300;
export const MAX_INTERVAL_SECONDS = 366 * 86_400;

/** `15m`, `1h`, `7d` → seconds; undefined when it is not such a duration. */
export function parseInterval(text: string): number | undefined {
  const match = /^([1-9]\d{0,5})([mhd])$/.exec(text);
  return match ? Number(match[1]) * UNITS[match[2] as keyof typeof UNITS] : undefined;
}

/** Seconds → the largest unit that divides them exactly (`86400` → `1d`, `5400` → `90m`). */
export function formatInterval(seconds: number): string {
  for (const unit of ['d', 'h', 'm'] as const)
    if (seconds % UNITS[unit] === 0) return `${seconds / UNITS[unit]}${unit}`;
  return `${Math.round(seconds / 60)}m`;
}

/**
 * Why a cron expression is not accepted (undefined: it is): five fields (minute hour day-of-month
 * month day-of-week, no seconds), evaluated in UTC, with a time to come.
 */
export function cronProblem(expression: string): string | undefined {
  if (expression.trim().split(/\s+/).length !== 5)
    return 'a cron expression has five fields: minute hour day-of-month month day-of-week (UTC)';
  try {
    if (!cronOf(expression).nextRun(new Date()))
      return 'the cron expression never matches a time to come';
  } catch (error) {
    return `not a valid cron expression: ${(error as Error).message}`;
  }
  return undefined;
}

/**
 * The first run strictly after `now`. Computed from `now`, never from the run that was due: after
 * a downtime that missed several runs, the schedule runs once and then keeps its rhythm.
 */
export function nextRunAfter(timing: ScheduleTiming, anchor: Date, now: Date): Date {
  if (timing.intervalSeconds !== null) {
    const step = timing.intervalSeconds * 1000;
    const slots = Math.max(1, Math.floor((now.getTime() - anchor.getTime()) / step) + 1);
    return new Date(anchor.getTime() + slots * step);
  }
  const next = cronOf(timing.cron).nextRun(now);
  // Validated when stored; a far date rather than a crash if it ever has no time to come.
  return next ?? new Date(now.getTime() + MAX_INTERVAL_SECONDS * 1000);
}

function cronOf(expression: string): Cron {
  return new Cron(expression.trim(), { timezone: 'UTC', paused: true });
}
