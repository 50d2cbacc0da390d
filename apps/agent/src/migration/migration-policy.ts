import type { MigrationStats } from '../drivers/hypervisor.driver';

export type MigrationMode = 'precopy' | 'postcopy' | 'auto';

export interface PolicyOptions {
  mode: MigrationMode;
  allowPostcopy: boolean;
  memoryBytes: number;
  /** 0: no completion timeout. */
  completionTimeoutSecondsPerGib: number;
}

/** Never less than this, so that a tiny VM is not judged before its first pass. */
const MIN_COMPLETION_TIMEOUT_MS = 10_000;
/** Pre-copy passes after which 'auto' may judge convergence. */
const AUTO_MIN_ITERATIONS = 4;

export type PolicyDecision =
  | { action: 'continue' }
  | { action: 'postcopy'; reason: string }
  | { action: 'abort'; reason: string };

/** The completion timeout of a migration, from its memory size. */
export function completionTimeoutMs(options: PolicyOptions): number | undefined {
  if (options.completionTimeoutSecondsPerGib === 0) return undefined;
  return Math.max(
    MIN_COMPLETION_TIMEOUT_MS,
    (options.memoryBytes / 1024 ** 3) * options.completionTimeoutSecondsPerGib * 1000,
  );
}

/**
 * What the source does next with a pre-copy migration under way: go on, switch to post-copy (an
 * explicit post-copy once the first pass is done; 'auto' when pre-copy will not converge; at the
 * completion timeout when post-copy is allowed) or abort (at the timeout otherwise).
 */
export function decide(
  stats: MigrationStats,
  elapsedMs: number,
  options: PolicyOptions,
): PolicyDecision {
  if (stats.status !== 'active') return { action: 'continue' };
  const postcopyAllowed = options.allowPostcopy || options.mode === 'postcopy';
  if (options.mode === 'postcopy' && stats.iteration >= 2)
    return {
      action: 'postcopy',
      reason: 'post-copy was asked for: switching after the first pass',
    };
  if (
    options.mode === 'auto' &&
    postcopyAllowed &&
    stats.iteration >= AUTO_MIN_ITERATIONS &&
    stats.throughputBytes > 0 &&
    stats.dirtyRateBytes >= stats.throughputBytes * 0.9
  ) {
    return {
      action: 'postcopy',
      reason: `pre-copy does not converge: the guest dirties ${rate(stats.dirtyRateBytes)} and the link moves ${rate(stats.throughputBytes)}; switching to post-copy`,
    };
  }
  const timeout = completionTimeoutMs(options);
  if (timeout !== undefined && elapsedMs > timeout) {
    const why = `pre-copy did not complete within ${Math.round(timeout / 1000)} s (guest dirties ${rate(stats.dirtyRateBytes)}, link moves ${rate(stats.throughputBytes)})`;
    if (postcopyAllowed) return { action: 'postcopy', reason: `${why}; switching to post-copy` };
    return {
      action: 'abort',
      reason: `${why}; allow post-copy, enable auto-converge or raise the bandwidth limit`,
    };
  }
  return { action: 'continue' };
}

/** Seconds until the migration is done at the current pace (0 when unknown). */
export function etaSeconds(stats: MigrationStats): number {
  if (stats.throughputBytes <= 0) return 0;
  const net =
    stats.status === 'postcopy-active'
      ? stats.throughputBytes
      : stats.throughputBytes - stats.dirtyRateBytes;
  if (net <= 0) return 0;
  return Math.ceil(stats.remainingBytes / net);
}

function rate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1024 ** 2).toFixed(1)} MiB/s`;
}
