import { Injectable } from '@nestjs/common';

/** Timers and jitter for the scheduler, behind a seam so that its tests run without real time passing. */
@Injectable()
export class SchedulerTimerRepository {
  /** Calls `callback` after `ms`; answers a function that cancels the call. */
  after(ms: number, callback: () => void): () => void {
    const timer = setTimeout(callback, ms);
    // A planned run never keeps the process alive on its own; stop() clears the timers anyway.
    timer.unref();
    return () => clearTimeout(timer);
  }

  /** A number in [0, 1), for jitter (not for secrets). */
  random(): number {
    return Math.random();
  }
}
