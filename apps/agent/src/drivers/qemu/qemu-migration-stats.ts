import { z } from 'zod';
import {
  MIGRATION_STATUSES,
  type MigrationStats,
  type MigrationStatus,
} from '../hypervisor.driver';

const count = z.number().nonnegative().optional();

/** The parts of QEMU's query-migrate answer the driver reads (QEMU 7.2 names). */
export const queryMigrateSchema = z.object({
  status: z.string().optional(),
  'total-time': count,
  'expected-downtime': count,
  downtime: count,
  'error-desc': z.string().optional(),
  ram: z
    .object({
      transferred: count,
      remaining: count,
      total: count,
      'dirty-pages-rate': count,
      'page-size': count,
      mbps: count,
      'dirty-sync-count': count,
    })
    .optional(),
  'socket-address': z
    .array(z.object({ type: z.string(), port: z.union([z.string(), z.number()]).optional() }))
    .optional(),
});

export type QueryMigrate = z.infer<typeof queryMigrateSchema>;

/** Statuses QEMU has beyond the contract's list, mapped to the nearest one. */
const NEAREST: Record<string, MigrationStatus> = {
  'wait-unplug': 'active',
  'postcopy-recover': 'postcopy-paused',
  colo: 'active',
};

/** QEMU's migration status as the contract names it ('none' when QEMU says nothing). */
export function migrationStatus(status: string | undefined): MigrationStatus {
  if (status === undefined) return 'none';
  if ((MIGRATION_STATUSES as readonly string[]).includes(status)) return status as MigrationStatus;
  return NEAREST[status] ?? 'active';
}

/** An outgoing migration's figures from query-migrate. */
export function migrationStats(info: QueryMigrate): MigrationStats {
  const ram = info.ram ?? {};
  let status = migrationStatus(info.status);
  // QEMU says 'completed' a moment before it fills in its total time and downtime: still finishing.
  if (status === 'completed' && !((info['total-time'] ?? 0) > 0)) status = 'device';
  const stats: MigrationStats = {
    status,
    transferredBytes: ram.transferred ?? 0,
    remainingBytes: ram.remaining ?? 0,
    totalBytes: ram.total ?? 0,
    dirtyRateBytes: Math.round((ram['dirty-pages-rate'] ?? 0) * (ram['page-size'] ?? 4096)),
    expectedDowntimeMs: info['expected-downtime'] ?? 0,
    iteration: ram['dirty-sync-count'] ?? 0,
    // mbps is megabits (10^6) per second
    throughputBytes: Math.round(((ram.mbps ?? 0) * 1_000_000) / 8),
  };
  if (info.downtime !== undefined) stats.downtimeMs = info.downtime;
  if (status === 'completed' && info['total-time'] !== undefined)
    stats.totalTimeMs = info['total-time'];
  if (info['error-desc'] !== undefined) stats.error = info['error-desc'];
  return stats;
}
