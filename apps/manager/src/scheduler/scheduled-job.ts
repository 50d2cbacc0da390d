/**
 * When a job runs.
 * - `atStart`: once, when the application starts, before any other job is armed; the start waits
 *   for it, and its failure fails the start (work later jobs rely on, such as failing the tasks a
 *   previous process left unfinished). Start jobs run by ascending `order` (default 0), then in the
 *   order they were registered (which follows Nest's module order: use `order` when it matters).
 * - `everyMs`: `everyMs` after the previous run ended (runs never pile up), plus up to `jitterMs`
 *   at random; the first run right at the start when `immediately`, else one interval later.
 * - `next`: at the time `next` answers, asked again after each run (null: no further run).
 */
export type JobTiming =
  | { readonly atStart: true; readonly order?: number }
  | { readonly everyMs: number; readonly jitterMs?: number; readonly immediately?: boolean }
  | { readonly next: (now: Date) => Date | null };

/** A piece of background work the scheduler runs (see SchedulerService). */
export interface ScheduledJob {
  /**
   * Unique; names the job in the log and is the `job` label of the scheduler's metrics, so it is
   * a fixed name such as `resources.refresh`, never built from data.
   */
  readonly name: string;
  readonly timing: JobTiming;
  /** The work: errors are logged and counted, never thrown out of the scheduler. */
  run(): Promise<unknown> | unknown;
}

/** What the scheduler knows about a job (for tests and diagnostics). */
export interface JobStatus {
  readonly name: string;
  readonly running: boolean;
  /** When the next run is planned; null when none is (not started, stopped or no further run). */
  readonly nextRunAt: Date | null;
  readonly lastRunAt: Date | null;
  /** How many runs failed since the manager started. */
  readonly failures: number;
  readonly lastError: string | null;
}

/** A fixed job name: lower-case words joined by dots or dashes. */
export const JOB_NAME = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*$/;
