import type { MigrationFigures } from '../task-details/migration-details.dto';
import type { TransferEstimate } from './migration.dto';

/** How many of the last completed migrations between two remotes the measured rate is taken from. */
export const MEASURED_MIGRATIONS = 5;

/**
 * How long a live migration's transfer should take: the guest's memory at the lowest of the rate
 * measured over recent migrations between the same remotes (median of transferred bytes / QEMU's
 * total time), the migration's own bandwidth limit and the link's cap. No rate to go by: null.
 */
export function transferEstimate(
  memoryBytes: number,
  recent: readonly MigrationFigures[],
  ownLimitBytes: number,
  linkCapBytes: number | null,
): TransferEstimate {
  const rates = recent
    .filter((f) => f.transferredBytes > 0 && (f.totalTimeMs ?? 0) > 0)
    .map((f) => f.transferredBytes / (f.totalTimeMs! / 1000))
    .sort((x, y) => x - y);
  const measured = rates.length === 0 ? null : median(rates);
  const bounds = [measured, ownLimitBytes > 0 ? ownLimitBytes : null, linkCapBytes].filter(
    (rate): rate is number => rate !== null && rate > 0,
  );
  const bytesPerSecond = bounds.length === 0 ? null : Math.min(...bounds);
  return {
    memoryBytes,
    measuredBytesPerSecond: measured === null ? null : Math.round(measured),
    measuredMigrations: rates.length,
    linkCapBytesPerSecond: linkCapBytes,
    bytesPerSecond: bytesPerSecond === null ? null : Math.round(bytesPerSecond),
    seconds: bytesPerSecond === null ? null : Math.ceil(memoryBytes / bytesPerSecond),
  };
}

function median(sorted: readonly number[]): number {
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
