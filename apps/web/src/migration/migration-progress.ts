import type { Task } from '../tasks/task-view';
import { formatBytes, formatDuration, formatRate } from '../ui/format';

export type MigrationDetails = NonNullable<Task['migration']>;
export type MigrationPhase = MigrationDetails['phase'];

/** The manager's phases in order, as the step list of a running migration shows them. */
export const PHASES: readonly { phase: MigrationPhase; label: string }[] = [
  { phase: 'preflight', label: 'Pre-flight' },
  { phase: 'prepare', label: 'Prepare target' },
  { phase: 'transfer', label: 'Transfer' },
];

const FINAL_LABEL: Record<'completed' | 'failed' | 'cancelled', string> = {
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

export function phaseLabel(phase: MigrationPhase): string {
  return (
    PHASES.find((p) => p.phase === phase)?.label ?? FINAL_LABEL[phase as keyof typeof FINAL_LABEL]
  );
}

/** Milliseconds for people: "120 ms", "1.5 s", "42 s", and from a minute on "9 h 5 min". */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  return formatDuration(ms / 1000);
}

/**
 * The share of the guest's memory sent, 0…100: from the figures (total less what remains; a later
 * pre-copy pass may lower it again, as the guest dirties pages), else from the task's progress.
 */
export function percentSent(task: Pick<Task, 'progress' | 'migration'>): number {
  const details = task.migration;
  if (details?.phase === 'completed') return 100;
  const figures = details?.progress;
  const fraction =
    figures && figures.totalBytes > 0
      ? (figures.totalBytes - figures.remainingBytes) / figures.totalBytes
      : details?.phase === 'transfer'
        ? 0
        : task.progress;
  return Math.round(Math.min(1, Math.max(0, fraction)) * 100);
}

/** The figures of a migration as the progress panel shows them (every value with its unit). */
export interface ProgressFigures {
  /** 0…100: the share of memory sent (percentSent). */
  percent: number;
  phase: MigrationPhase;
  phaseLabel: string;
  /** The source's own stage (setup, precopy, postcopy, switchover, …); null before the transfer. */
  stage: string | null;
  transferred: string;
  remaining: string;
  total: string;
  dirtyRate: string;
  expectedDowntime: string;
  eta: string;
  iteration: string;
  /** Once completed: the pause QEMU measured and the migration's whole time. */
  downtime: string | null;
  totalTime: string | null;
  message: string;
}

/** The ETA in words: done, the source's estimate, or not known yet. */
function etaText(details: MigrationDetails): string {
  const figures = details.progress;
  if (details.phase === 'completed') return 'done';
  if (details.phase === 'failed' || details.phase === 'cancelled') return '—';
  if (!figures || figures.etaSeconds <= 0)
    return details.phase === 'transfer' ? 'estimating…' : 'not started';
  return formatDuration(figures.etaSeconds);
}

export function progressFigures(
  task: Pick<Task, 'progress' | 'migration'>,
): ProgressFigures | null {
  const details = task.migration;
  if (!details) return null;
  const figures = details.progress;
  return {
    percent: percentSent(task),
    phase: details.phase,
    phaseLabel: phaseLabel(details.phase),
    stage: figures?.stage ?? null,
    transferred: figures ? formatBytes(figures.transferredBytes) : '—',
    remaining: figures ? formatBytes(figures.remainingBytes) : '—',
    total: figures ? formatBytes(figures.totalBytes) : '—',
    dirtyRate: figures ? formatRate(figures.dirtyRateBytes) : '—',
    expectedDowntime: figures ? formatMs(figures.expectedDowntimeMs) : '—',
    eta: etaText(details),
    iteration: figures ? String(figures.iteration) : '—',
    downtime: figures?.downtimeMs != null ? formatMs(figures.downtimeMs) : null,
    totalTime: figures?.totalTimeMs != null ? formatMs(figures.totalTimeMs) : null,
    message: figures?.message ?? '',
  };
}

/** How a finished migration ended, for the result step: where the VM is now, or why it stayed. */
export interface MigrationResult {
  state: 'succeeded' | 'failed' | 'cancelled';
  /** Where the VM runs after it (succeeded: the target; otherwise: the source). */
  remote: string;
  node: string | null;
  error: string | null;
}

export function migrationResult(
  task: Pick<Task, 'state' | 'error' | 'migration' | 'target'>,
): MigrationResult | null {
  if (task.state !== 'succeeded' && task.state !== 'failed' && task.state !== 'cancelled')
    return null;
  const details = task.migration;
  if (task.state === 'succeeded') {
    return {
      state: 'succeeded',
      remote: details?.target.remote ?? task.target.remote ?? '',
      node: details?.target.node ?? null,
      error: null,
    };
  }
  return {
    state: task.state,
    remote: details?.source.remote ?? task.target.remote ?? '',
    node: details?.source.node ?? null,
    error: task.error,
  };
}
