import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

export const SCHEDULE_TARGET_TYPES = ['vm', 'labels', 'pool'] as const;
export type ScheduleTargetType = (typeof SCHEDULE_TARGET_TYPES)[number];

/**
 * A snapshot schedule: which VMs (one VM, the VMs of a remote whose labels match, or the VMs of a
 * remote with a disk in a pool), when (every N seconds from its creation, or a cron expression in
 * UTC), and how many of its own snapshots each VM keeps. Runs act as the principal that created it,
 * with the remote credential its right came from.
 */
@Entity({ name: 'snapshot_schedules' })
@Index('IDX_snapshot_schedules_next_run_at', ['nextRunAt'])
export class SnapshotScheduleEntity {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ type: 'varchar', length: 64 })
  name!: string;

  @Column({ name: 'target_type', type: 'varchar', length: 8 })
  targetType!: ScheduleTargetType;

  @Column({ name: 'remote_id', type: 'varchar', length: 63 })
  remoteId!: string;

  /** targetType vm */
  @Column({ name: 'vm_id', type: 'uuid', nullable: true })
  vmId!: string | null;

  /** targetType labels: every pair must match the VM's labels. */
  @Column({ type: 'jsonb', nullable: true })
  labels!: Record<string, string> | null;

  /** targetType pool */
  @Column({ type: 'varchar', length: 64, nullable: true })
  pool!: string | null;

  /** Every this many seconds from created_at (exclusive with cron). */
  @Column({ name: 'interval_seconds', type: 'integer', nullable: true })
  intervalSeconds!: number | null;

  /** A five-field cron expression, UTC (exclusive with interval_seconds). */
  @Column({ type: 'varchar', length: 120, nullable: true })
  cron!: string | null;

  /** How many of this schedule's snapshots each VM keeps; older ones are deleted after a run. */
  @Column({ type: 'integer' })
  keep!: number;

  @Column({ type: 'boolean' })
  freeze!: boolean;

  @Column({ type: 'boolean' })
  enabled!: boolean;

  /** Who created it (`principal!token`): its runs are this principal's, within its quota. */
  @Column({ type: 'varchar', length: 255 })
  owner!: string;

  /** The remote credential to act with (a remote group's entry); null: the remote's default. */
  @Column({ name: 'credential_id', type: 'uuid', nullable: true })
  credentialId!: string | null;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;

  /** When the scheduler last started a run (missed runs after a downtime start one run, not one per slot). */
  @Column({ name: 'last_run_at', type: 'timestamptz', nullable: true })
  lastRunAt!: Date | null;

  /** The task of the last run. */
  @Column({ name: 'last_task_id', type: 'uuid', nullable: true })
  lastTaskId!: string | null;

  /** When the next run is due. */
  @Column({ name: 'next_run_at', type: 'timestamptz' })
  nextRunAt!: Date;
}
