export interface CallLoadResult {
  ok: number;
  failed: number;
  /** The first few failures, for the test's message. */
  errors: string[];
  /** Latency of every successful call, in milliseconds. */
  latenciesMs: number[];
}

export interface CallLoad {
  /** Counts so far (the load goes on). */
  snapshot(): CallLoadResult;
  /** Stops starting calls, waits for those in flight and answers the counts. */
  stop(): Promise<CallLoadResult>;
}

/**
 * Starts `ratePerSecond` calls per second, taking `calls` in turn, each without waiting for the
 * previous one (as a busy client does), until stop().
 */
export function startCallLoad(
  calls: readonly (() => Promise<unknown>)[],
  ratePerSecond: number,
): CallLoad {
  if (calls.length === 0) throw new Error('startCallLoad needs at least one call');
  const result: CallLoadResult = { ok: 0, failed: 0, errors: [], latenciesMs: [] };
  const inFlight = new Set<Promise<unknown>>();
  const started = performance.now();
  let issued = 0;
  // A 10 ms tick issues the calls due by now, so that the rate holds on a busy machine too.
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - started) / 1000) * ratePerSecond);
    for (; issued < due; issued++) {
      const call = calls[issued % calls.length];
      const t0 = performance.now();
      const running = call().then(
        () => {
          result.ok++;
          result.latenciesMs.push(performance.now() - t0);
        },
        (error: Error) => {
          result.failed++;
          if (result.errors.length < 10) result.errors.push(error.message);
        },
      );
      inFlight.add(running);
      void running.finally(() => inFlight.delete(running));
    }
  }, 10);
  return {
    snapshot: () => ({
      ...result,
      errors: [...result.errors],
      latenciesMs: [...result.latenciesMs],
    }),
    async stop() {
      clearInterval(timer);
      await Promise.all([...inFlight]);
      return result;
    },
  };
}
