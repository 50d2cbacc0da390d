import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it, vi } from 'vitest';
import type { ClockRepository } from '../common/clock.repository';
import { MetricsService } from '../health/metrics.service';
import type { ScheduledJob } from './scheduled-job';
import type { SchedulerTimerRepository } from './scheduler-timer.repository';
import { SchedulerService, STOP_GRACE_MS } from './scheduler.service';

const MAX_TIMER_MS = 2 ** 31 - 1;

interface Timer {
  at: number;
  ms: number;
  callback: () => void;
}

/** A scheduler on a clock and timers that move only when the test says so. */
function setup(random = 0.5) {
  const clock = fakeClock();
  const pending = new Set<Timer>();
  const timers = strictMock<SchedulerTimerRepository>('SchedulerTimerRepository', {
    after: (ms, callback) => {
      const timer = { at: clock.now().getTime() + ms, ms, callback };
      pending.add(timer);
      return () => pending.delete(timer);
    },
    random: () => random,
  });
  const logger = strictMock<PinoLogger>('PinoLogger', {
    setContext: () => undefined,
    error: () => undefined,
    warn: () => undefined,
  });
  const metrics = new MetricsService();
  const scheduler = new SchedulerService(
    timers,
    strictMock<ClockRepository>('ClockRepository', { now: clock.now }),
    logger,
    metrics,
  );
  const start = clock.now().getTime();
  return {
    scheduler,
    logger,
    metrics,
    clock,
    /** Planned timers as [ms from the start of the test, the wait asked for], soonest first. */
    planned: () => [...pending].map((t) => [t.at - start, t.ms]).sort((a, b) => a[0]! - b[0]!),
    /** Moves the clock to the soonest timer and fires it. */
    fireNext() {
      const timer = [...pending].sort((a, b) => a.at - b.at)[0];
      if (!timer) throw new Error('no timer is planned');
      pending.delete(timer);
      clock.advance(Math.max(0, timer.at - clock.now().getTime()));
      timer.callback();
    },
  };
}

/** A job whose runs the test can count and hold open. */
function job(name: string, timing: ScheduledJob['timing'], work?: () => Promise<void>) {
  const runs: number[] = [];
  const spec: ScheduledJob = {
    name,
    timing,
    run: vi.fn(async () => {
      runs.push(runs.length + 1);
      if (work) await work();
    }),
  };
  return { spec, runs };
}

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('SchedulerService', () => {
  it('runs an interval job one interval after the start, then one interval after each run ended', async () => {
    const t = setup();
    const j = job('test.every', { everyMs: 60_000 });
    t.scheduler.register(j.spec);
    expect(t.planned()).toEqual([]);
    await t.scheduler.start();
    expect(t.planned()).toEqual([[60_000, 60_000]]);
    t.fireNext();
    await vi.waitFor(() => expect(t.planned()).toEqual([[120_000, 60_000]]));
    expect(j.runs).toEqual([1]);
    t.fireNext();
    await vi.waitFor(() => expect(j.runs).toEqual([1, 2]));
  });

  it('runs a job marked immediately right at the start', async () => {
    const t = setup();
    const j = job('test.now', { everyMs: 30_000, immediately: true });
    t.scheduler.register(j.spec);
    await t.scheduler.start();
    expect(t.planned()).toEqual([[0, 0]]);
    t.fireNext();
    await vi.waitFor(() => expect(t.planned()).toEqual([[30_000, 30_000]]));
    expect(j.runs).toEqual([1]);
  });

  it('adds the jitter, up to jitterMs, to every wait', async () => {
    const t = setup(0.5);
    t.scheduler.register(job('test.jitter', { everyMs: 10_000, jitterMs: 2_000 }).spec);
    await t.scheduler.start();
    expect(t.planned()).toEqual([[11_000, 11_000]]);
  });

  it('never runs a job twice at once: a run asked for meanwhile joins the one in flight', async () => {
    const t = setup();
    const gate = deferred();
    const j = job('test.slow', { everyMs: 1_000 }, () => gate.promise);
    t.scheduler.register(j.spec);
    await t.scheduler.start();
    t.fireNext();
    await vi.waitFor(() => expect(j.runs).toEqual([1]));
    // While it runs, no timer is planned, and asking again joins the run in flight.
    expect(t.planned()).toEqual([]);
    const joined = t.scheduler.runNow('test.slow');
    expect(t.scheduler.status()[0]).toMatchObject({ running: true, nextRunAt: null });
    gate.resolve();
    await joined;
    expect(j.runs).toEqual([1]);
    expect(t.planned()).toEqual([[2_000, 1_000]]);
  });

  it('runs a job at once when asked, and plans its next run from the end of that run', async () => {
    const t = setup();
    const j = job('test.manual', { everyMs: 5_000 });
    t.scheduler.register(j.spec);
    await t.scheduler.start();
    t.clock.advance(3_000);
    await t.scheduler.runNow('test.manual');
    expect(j.runs).toEqual([1]);
    expect(t.planned()).toEqual([[8_000, 5_000]]);
    await expect(t.scheduler.runNow('test.unknown')).rejects.toThrow('no job named test.unknown');
  });

  it('logs and counts a failed run without throwing, and runs the job again at its next time', async () => {
    const t = setup();
    let fail = true;
    const failing: ScheduledJob = {
      name: 'test.failing',
      timing: { everyMs: 1_000 },
      run: () => {
        if (fail) throw new Error('database unreachable');
      },
    };
    t.scheduler.register(failing);
    await t.scheduler.start();
    await expect(t.scheduler.runNow('test.failing')).resolves.toBeUndefined();
    expect(t.logger.error).toHaveBeenCalledWith(
      expect.objectContaining({ job: 'test.failing', err: expect.any(Error) }),
      'background job failed',
    );
    expect(t.scheduler.status()[0]).toMatchObject({
      failures: 1,
      lastError: 'database unreachable',
      nextRunAt: new Date(t.clock.now().getTime() + 1_000),
    });
    fail = false;
    t.fireNext();
    await vi.waitFor(() => expect(t.scheduler.status()[0]?.lastError).toBeNull());
    const text = await t.metrics.render();
    expect(text).toContain('debvisor_scheduler_runs_total{job="test.failing",outcome="failed"} 1');
    expect(text).toContain(
      'debvisor_scheduler_runs_total{job="test.failing",outcome="succeeded"} 1',
    );
    expect(text).toContain(
      `debvisor_scheduler_last_success_timestamp_seconds{job="test.failing"} ${t.clock.now().getTime() / 1000}`,
    );
  });

  it('runs the start jobs by order then registration, before any periodic job is planned, and the start waits for them', async () => {
    const t = setup();
    const order: string[] = [];
    const gate = deferred();
    t.scheduler.register({
      name: 'test.periodic',
      timing: { everyMs: 1_000, immediately: true },
      run: () => void order.push('periodic'),
    });
    t.scheduler.register({
      name: 'test.recover',
      timing: { atStart: true },
      run: async () => {
        order.push('recover');
        await gate.promise;
      },
    });
    t.scheduler.register({
      name: 'test.recover-more',
      timing: { atStart: true },
      run: () => void order.push('recover-more'),
    });
    t.scheduler.register({
      name: 'test.first',
      timing: { atStart: true, order: -1 },
      run: () => void order.push('first'),
    });
    let started = false;
    const starting = t.scheduler.start().then(() => (started = true));
    await vi.waitFor(() => expect(order).toEqual(['first', 'recover']));
    expect(started).toBe(false);
    expect(t.planned()).toEqual([]);
    gate.resolve();
    await starting;
    expect(order).toEqual(['first', 'recover', 'recover-more']);
    expect(t.planned()).toEqual([[0, 0]]);
    expect(t.scheduler.isActive('test.periodic')).toBe(true);
  });

  it('fails the start when a start job fails, and plans nothing', async () => {
    const t = setup();
    t.scheduler.register({
      name: 'test.recover',
      timing: { atStart: true },
      run: () => Promise.reject(new Error('cannot read the tasks')),
    });
    const periodic = job('test.periodic', { everyMs: 1_000 });
    t.scheduler.register(periodic.spec);
    await expect(t.scheduler.start()).rejects.toThrow('cannot read the tasks');
    expect(t.planned()).toEqual([]);
    expect(t.scheduler.isActive('test.periodic')).toBe(false);
    expect(() =>
      t.scheduler.register({ name: 'test.late', timing: { atStart: true }, run: () => undefined }),
    ).toThrow('registered after the start');
  });

  it('runs a job at the times its due-time function answers, until it answers null', async () => {
    const t = setup();
    const times = [5_000, 65_000];
    const base = t.clock.now().getTime();
    const j = job('test.due', {
      next: () => {
        const at = times.shift();
        return at === undefined ? null : new Date(base + at);
      },
    });
    t.scheduler.register(j.spec);
    await t.scheduler.start();
    expect(t.planned()).toEqual([[5_000, 5_000]]);
    t.fireNext();
    await vi.waitFor(() => expect(t.planned()).toEqual([[65_000, 60_000]]));
    t.fireNext();
    await vi.waitFor(() => expect(j.runs).toEqual([1, 2]));
    await vi.waitFor(() => expect(t.scheduler.status()[0]?.running).toBe(false));
    expect(t.planned()).toEqual([]);
    expect(t.scheduler.status()[0]?.nextRunAt).toBeNull();
  });

  it('reaches a run further away than one timer can wait in several steps', async () => {
    const t = setup();
    const j = job('test.far', { everyMs: MAX_TIMER_MS + 1_000 });
    t.scheduler.register(j.spec);
    await t.scheduler.start();
    expect(t.planned()).toEqual([[MAX_TIMER_MS, MAX_TIMER_MS]]);
    t.fireNext();
    expect(j.runs).toEqual([]);
    expect(t.planned()).toEqual([[MAX_TIMER_MS + 1_000, 1_000]]);
    t.fireNext();
    await vi.waitFor(() => expect(j.runs).toEqual([1]));
  });

  it('stop cancels every planned run and waits for the runs in flight; nothing runs after it', async () => {
    const t = setup();
    const gate = deferred();
    const slow = job('test.slow', { everyMs: 1_000 }, () => gate.promise);
    const idle = job('test.idle', { everyMs: 60_000 });
    t.scheduler.register(slow.spec);
    t.scheduler.register(idle.spec);
    await t.scheduler.start();
    t.fireNext();
    await vi.waitFor(() => expect(slow.runs).toEqual([1]));
    let stopped = false;
    const stopping = t.scheduler.stop().then(() => (stopped = true));
    // Only the grace timer of the stop is left.
    expect(t.planned()).toEqual([[1_000 + STOP_GRACE_MS, STOP_GRACE_MS]]);
    await Promise.resolve();
    expect(stopped).toBe(false);
    gate.resolve();
    await stopping;
    expect(t.planned()).toEqual([]);
    expect(t.scheduler.isActive('test.idle')).toBe(false);
    t.scheduler.register(job('test.after', { everyMs: 1_000 }).spec);
    expect(t.planned()).toEqual([]);
    expect(idle.runs).toEqual([]);
  });

  it('stop goes on without a run that outlasts the grace period, saying which', async () => {
    const t = setup();
    const never = new Promise<void>(() => undefined);
    t.scheduler.register(job('test.stuck', { everyMs: 1_000 }, () => never).spec);
    await t.scheduler.start();
    t.fireNext();
    await vi.waitFor(() => expect(t.scheduler.status()[0]?.running).toBe(true));
    const stopping = t.scheduler.stop();
    t.fireNext();
    await stopping;
    expect(t.logger.warn).toHaveBeenCalledWith(
      { jobs: ['test.stuck'] },
      'background jobs still running after the stop grace period; stopping without them',
    );
  });

  it('plans a job registered after the start at once, and unregister cancels it and awaits its run', async () => {
    const t = setup();
    await t.scheduler.start();
    const gate = deferred();
    const late = job('test.late', { everyMs: 2_000 }, () => gate.promise);
    t.scheduler.register(late.spec);
    expect(t.planned()).toEqual([[2_000, 2_000]]);
    t.fireNext();
    await vi.waitFor(() => expect(late.runs).toEqual([1]));
    let gone = false;
    const removing = t.scheduler.unregister('test.late').then(() => (gone = true));
    await Promise.resolve();
    expect(gone).toBe(false);
    gate.resolve();
    await removing;
    expect(t.scheduler.has('test.late')).toBe(false);
    expect(t.planned()).toEqual([]);
  });

  it('refuses a name registered twice, a name that is not a fixed name, and an interval of 0', () => {
    const t = setup();
    t.scheduler.register(job('test.once', { everyMs: 1 }).spec);
    expect(() => t.scheduler.register(job('test.once', { everyMs: 1 }).spec)).toThrow(
      'registered twice',
    );
    expect(() => t.scheduler.register(job('Test Job', { everyMs: 1 }).spec)).toThrow(
      'not a job name',
    );
    expect(() => t.scheduler.register(job('test.zero', { everyMs: 0 }).spec)).toThrow(
      'must be positive',
    );
  });
});
