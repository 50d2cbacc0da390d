import {
  Injectable,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { performance } from 'node:perf_hooks';
import { ClockRepository } from '../common/clock.repository';
import { runInBackground } from '../common/trace-context';
import { newTraceId } from '../common/trace-id';
import { MetricsService } from '../health/metrics.service';
import { JOB_NAME, type JobStatus, type ScheduledJob } from './scheduled-job';
import { SchedulerMetrics } from './scheduler-metrics';
import { SchedulerTimerRepository } from './scheduler-timer.repository';

/** On stop, how long runs in flight may take to finish before the shutdown goes on without them. */
export const STOP_GRACE_MS = 10_000;
/** The longest a Node.js timer can wait; a later run is reached in steps of this. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Entry {
  readonly job: ScheduledJob;
  /** Cancels the planned run's timer; undefined while none is planned. */
  cancel?: () => void;
  nextRunAt: Date | null;
  running?: Promise<void>;
  lastRunAt: Date | null;
  failures: number;
  lastError: string | null;
  removed: boolean;
}

type Phase = 'registering' | 'starting' | 'started' | 'stopped';

/**
 * The one place background work runs: feature services register jobs (a name, a timing, the work)
 * — usually in onModuleInit — and the scheduler starts them once the application has booted and
 * stops them before it shuts down, waiting for runs in flight, so that neither tests nor shutdown
 * leave timers behind. A job never runs twice at once: its next run is planned only after the
 * previous one ended, and a run asked for while one is in flight joins it. Errors are logged with
 * the run's own trace id and counted (debvisor_scheduler_* metrics), never thrown — except from a
 * job that runs at start, whose failure fails the start.
 */
@Injectable()
export class SchedulerService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly entries = new Map<string, Entry>();
  private readonly metrics: SchedulerMetrics;
  private phase: Phase = 'registering';

  constructor(
    private readonly timers: SchedulerTimerRepository,
    private readonly clock: ClockRepository,
    private readonly logger: PinoLogger,
    metrics: MetricsService,
  ) {
    logger.setContext(SchedulerService.name);
    this.metrics = new SchedulerMetrics(metrics.registry);
  }

  /**
   * Adds a job. Before the start it waits for it; after, a periodic job is planned at once. A name
   * registered twice, or a start job registered after the start, is a programming error (throws).
   */
  register(job: ScheduledJob): void {
    if (!JOB_NAME.test(job.name)) throw new Error(`not a job name: ${job.name}`);
    if (this.entries.has(job.name)) throw new Error(`a job named ${job.name} is registered twice`);
    if ('atStart' in job.timing && this.phase !== 'registering')
      throw new Error(`${job.name} runs at start but was registered after the start`);
    if ('everyMs' in job.timing && !(job.timing.everyMs > 0))
      throw new Error(`${job.name}: the interval must be positive`);
    const entry: Entry = {
      job,
      nextRunAt: null,
      lastRunAt: null,
      failures: 0,
      lastError: null,
      removed: false,
    };
    this.entries.set(job.name, entry);
    this.metrics.register(job.name);
    if (this.phase === 'started') this.plan(entry, true);
  }

  /** True when a job of that name is registered. */
  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** True while the scheduler runs and the job is registered with it (readiness). */
  isActive(name: string): boolean {
    return this.phase === 'started' && this.entries.has(name);
  }

  /** Removes a job: its planned run is cancelled and a run in flight awaited. */
  async unregister(name: string): Promise<void> {
    const entry = this.entries.get(name);
    if (!entry) return;
    entry.removed = true;
    this.cancelPlanned(entry);
    this.entries.delete(name);
    await entry.running;
  }

  /**
   * Runs a job now, or joins its run in flight; its next run is planned from the end of this one.
   * Never throws for the job's errors (they are logged and counted as for a planned run).
   */
  async runNow(name: string): Promise<void> {
    const entry = this.entries.get(name);
    if (!entry) throw new Error(`no job named ${name}`);
    this.cancelPlanned(entry);
    await this.execute(entry);
  }

  /** What the scheduler knows about each job, in registration order. */
  status(): JobStatus[] {
    return [...this.entries.values()].map((entry) => ({
      name: entry.job.name,
      running: entry.running !== undefined,
      nextRunAt: entry.nextRunAt,
      lastRunAt: entry.lastRunAt,
      failures: entry.failures,
      lastError: entry.lastError,
    }));
  }

  /**
   * Runs the start jobs one after the other, by `order` (the start fails with the first that
   * fails), then plans every periodic job. Called once the application has booted; a second call does nothing.
   */
  async start(): Promise<void> {
    if (this.phase !== 'registering') return;
    this.phase = 'starting';
    const startJobs = [...this.entries.values()]
      .filter((entry) => 'atStart' in entry.job.timing)
      .sort((a, b) => startOrder(a.job) - startOrder(b.job));
    for (const entry of startJobs) {
      const error = await this.execute(entry);
      if (error) {
        this.phase = 'stopped';
        throw error;
      }
    }
    // stop() may have been called while a start job ran.
    if (this.phase !== 'starting') return;
    this.phase = 'started';
    for (const entry of this.entries.values()) this.plan(entry, true);
  }

  /**
   * Plans nothing more and cancels every planned run, then waits for the runs in flight (at most
   * STOP_GRACE_MS; the shutdown goes on without those still running then). Idempotent.
   */
  async stop(): Promise<void> {
    this.phase = 'stopped';
    for (const entry of this.entries.values()) this.cancelPlanned(entry);
    const running = [...this.entries.values()].filter((entry) => entry.running);
    if (running.length === 0) return;
    let cancelGrace: (() => void) | undefined;
    const graceOver = new Promise<boolean>((resolve) => {
      cancelGrace = this.timers.after(STOP_GRACE_MS, () => resolve(true));
    });
    const settled = Promise.allSettled(running.map((entry) => entry.running)).then(() => false);
    const timedOut = await Promise.race([settled, graceOver]);
    cancelGrace?.();
    if (timedOut)
      this.logger.warn(
        { jobs: running.filter((entry) => entry.running).map((entry) => entry.job.name) },
        'background jobs still running after the stop grace period; stopping without them',
      );
  }

  onApplicationBootstrap(): Promise<void> {
    return this.start();
  }

  beforeApplicationShutdown(): Promise<void> {
    return this.stop();
  }

  private cancelPlanned(entry: Entry): void {
    entry.cancel?.();
    entry.cancel = undefined;
    entry.nextRunAt = null;
  }

  /** Plans the entry's next run (unless it runs only at start, or nothing is to run any more). */
  private plan(entry: Entry, first: boolean): void {
    if (this.phase !== 'started' || entry.removed || entry.cancel || entry.running) return;
    const { timing, name } = entry.job;
    if ('atStart' in timing) return;
    const now = this.clock.now();
    let at: Date | null;
    if ('everyMs' in timing) {
      const jitter = timing.jitterMs ? Math.floor(this.timers.random() * timing.jitterMs) : 0;
      at = new Date(now.getTime() + (first && timing.immediately ? 0 : timing.everyMs + jitter));
    } else {
      try {
        at = timing.next(now);
      } catch (error) {
        this.logger.error({ job: name, err: error }, 'cannot work out the next run of a job');
        at = null;
      }
    }
    entry.nextRunAt = at;
    if (at) this.arm(entry, at);
  }

  private arm(entry: Entry, at: Date): void {
    const wait = Math.max(0, at.getTime() - this.clock.now().getTime());
    entry.cancel = this.timers.after(Math.min(wait, MAX_TIMER_MS), () => {
      entry.cancel = undefined;
      if (this.phase !== 'started' || entry.removed) return;
      // A run further away than one timer can wait: another step.
      if (wait > MAX_TIMER_MS) return this.arm(entry, at);
      entry.nextRunAt = null;
      void this.execute(entry);
    });
  }

  /** Runs the job (or joins its run in flight); answers the error of a failed run, else undefined. */
  private async execute(entry: Entry): Promise<unknown> {
    let failure: unknown;
    entry.running ??= runInBackground(async () => {
      const started = performance.now();
      let failed = false;
      try {
        await entry.job.run();
        entry.lastError = null;
      } catch (error) {
        failed = true;
        failure = error ?? new Error(`${entry.job.name} failed`);
        entry.failures += 1;
        entry.lastError = error instanceof Error ? error.message : String(error);
        this.logger.error({ job: entry.job.name, err: error }, 'background job failed');
      }
      entry.lastRunAt = this.clock.now();
      this.metrics.observe(
        entry.job.name,
        failed,
        entry.lastRunAt,
        (performance.now() - started) / 1000,
      );
    }, newTraceId()).finally(() => {
      entry.running = undefined;
      this.plan(entry, false);
    });
    await entry.running;
    return failure;
  }
}

/** Where a start job comes among the start jobs (the sort is stable: equal orders keep registration order). */
function startOrder(job: ScheduledJob): number {
  return 'atStart' in job.timing ? (job.timing.order ?? 0) : 0;
}
