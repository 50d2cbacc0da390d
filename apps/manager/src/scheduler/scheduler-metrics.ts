import { Counter, Gauge, type Registry } from 'prom-client';

/** The scheduler's metrics, per job (a fixed name): runs by outcome, when the last ones ended, how long the last took. */
export class SchedulerMetrics {
  private readonly runs: Counter<'job' | 'outcome'>;
  private readonly lastRun: Gauge<'job'>;
  private readonly lastSuccess: Gauge<'job'>;
  private readonly lastDuration: Gauge<'job'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.runs = new Counter({
      name: 'debvisor_scheduler_runs_total',
      help: 'Finished runs of background jobs by job and outcome (succeeded, failed)',
      labelNames: ['job', 'outcome'] as const,
      registers,
    });
    this.lastRun = new Gauge({
      name: 'debvisor_scheduler_last_run_timestamp_seconds',
      help: 'When the last run of a background job ended (Unix time), whatever its outcome',
      labelNames: ['job'] as const,
      registers,
    });
    this.lastSuccess = new Gauge({
      name: 'debvisor_scheduler_last_success_timestamp_seconds',
      help: 'When the last successful run of a background job ended (Unix time)',
      labelNames: ['job'] as const,
      registers,
    });
    this.lastDuration = new Gauge({
      name: 'debvisor_scheduler_last_run_duration_seconds',
      help: 'How long the last run of a background job took',
      labelNames: ['job'] as const,
      registers,
    });
  }

  /** A job exists: its run counters start at 0. */
  register(job: string): void {
    for (const outcome of ['succeeded', 'failed']) this.runs.inc({ job, outcome }, 0);
  }

  observe(job: string, failed: boolean, endedAt: Date, seconds: number): void {
    this.runs.inc({ job, outcome: failed ? 'failed' : 'succeeded' });
    this.lastRun.set({ job }, endedAt.getTime() / 1000);
    if (!failed) this.lastSuccess.set({ job }, endedAt.getTime() / 1000);
    this.lastDuration.set({ job }, seconds);
  }
}
