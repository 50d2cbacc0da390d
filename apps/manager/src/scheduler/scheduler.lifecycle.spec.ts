import { Global, Injectable, Module, type OnModuleInit } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { PinoLogger } from 'nestjs-pino';
import { describe, expect, it, vi } from 'vitest';
import { ClockRepository } from '../common/clock.repository';
import { MetricsService } from '../health/metrics.service';
import { SchedulerTimerRepository } from './scheduler-timer.repository';
import { SchedulerService } from './scheduler.service';

/** Real timers, counted: how many are planned and not yet fired or cancelled. */
@Injectable()
class CountedTimers extends SchedulerTimerRepository {
  live = 0;

  override after(ms: number, callback: () => void): () => void {
    this.live += 1;
    let done = false;
    const settle = () => {
      if (!done) this.live -= 1;
      done = true;
    };
    const cancel = super.after(ms, () => {
      settle();
      callback();
    });
    return () => {
      settle();
      cancel();
    };
  }
}

/** A feature that registers its background work as the manager's features do. */
@Injectable()
class Feature implements OnModuleInit {
  runs = 0;
  slowRunStarted = false;
  private release: (() => void) | undefined;

  constructor(private readonly scheduler: SchedulerService) {}

  onModuleInit(): void {
    this.scheduler.register({
      name: 'test.poll',
      timing: { everyMs: 5, immediately: true },
      run: () => void (this.runs += 1),
    });
    this.scheduler.register({
      name: 'test.slow',
      timing: { everyMs: 1, immediately: true },
      run: () => {
        this.slowRunStarted = true;
        return new Promise<void>((resolve) => (this.release = resolve));
      },
    });
  }

  finishSlowRun(): void {
    this.release?.();
  }
}

@Global()
@Module({
  providers: [
    SchedulerService,
    CountedTimers,
    { provide: SchedulerTimerRepository, useExisting: CountedTimers },
    ClockRepository,
    { provide: MetricsService, useValue: new MetricsService() },
    {
      provide: PinoLogger,
      // A plain object: Nest probes provider values for lifecycle hooks, which a strict mock refuses.
      useValue: { setContext: () => undefined, warn: vi.fn(), error: vi.fn() },
    },
    Feature,
  ],
})
class TestApp {}

describe('SchedulerService in a Nest application', () => {
  it('starts the jobs when the application boots, and leaves no timer behind when it closes', async () => {
    // Creating the context initialises it: module init (the jobs registered), then the bootstrap.
    const app = await NestFactory.createApplicationContext(TestApp, { logger: false });
    const timers = app.get(CountedTimers);
    const feature = app.get(Feature);
    const scheduler = app.get(SchedulerService);
    expect(scheduler.status().map((job) => job.name)).toEqual(['test.poll', 'test.slow']);
    await vi.waitFor(() => expect(feature.runs).toBeGreaterThanOrEqual(3), { timeout: 10_000 });
    await vi.waitFor(() => expect(feature.slowRunStarted).toBe(true));
    let closed = false;
    const closing = app.close().then(() => (closed = true));
    // The shutdown waits for the run in flight (only the stop's grace timer is left meanwhile).
    await vi.waitFor(() => expect(timers.live).toBe(1));
    expect(closed).toBe(false);
    feature.finishSlowRun();
    await closing;
    expect(timers.live).toBe(0);
    expect(scheduler.isActive('test.poll')).toBe(false);
    expect(scheduler.status().every((job) => job.nextRunAt === null && !job.running)).toBe(true);
  });
});
