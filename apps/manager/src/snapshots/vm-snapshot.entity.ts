import { Column, Entity, Index, PrimaryColumn, Unique } from 'typeorm';

export const VM_SNAPSHOT_RECORD_STATES = ['pending', 'created'] as const;
export type VmSnapshotRecordState = (typeof VM_SNAPSHOT_RECORD_STATES)[number];

/**
 * A snapshot the manager took (by hand or by a schedule): who took it and which schedule, for the
 * per-principal quota and for retention. The snapshot itself lives on the cluster; a record is
 * `pending` from the request until the agent took it (a failed attempt removes it).
 */
@Entity({ name: 'vm_snapshots' })
@Unique('UQ_vm_snapshots_remote_vm_name', ['remoteId', 'vmId', 'name'])
@Index('IDX_vm_snapshots_vm_created_by', ['vmId', 'createdBy'])
@Index('IDX_vm_snapshots_schedule_id', ['scheduleId'])
export class VmSnapshotEntity {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'remote_id', type: 'varchar', length: 63 })
  remoteId!: string;

  @Column({ name: 'vm_id', type: 'uuid' })
  vmId!: string;

  /** The snapshot's name on every disk of the VM. */
  @Column({ type: 'varchar', length: 64 })
  name!: string;

  /** The principal whose quota it counts against (`alice@local`, `@ops` for a group's token). */
  @Column({ name: 'created_by', type: 'varchar', length: 255 })
  createdBy!: string;

  /** The schedule that took it (retention applies to it); null: taken by hand (never removed by retention). */
  @Column({ name: 'schedule_id', type: 'uuid', nullable: true })
  scheduleId!: string | null;

  @Column({ type: 'varchar', length: 200, nullable: true })
  description!: string | null;

  @Column({ type: 'varchar', length: 16 })
  state!: VmSnapshotRecordState;

  /** `application` | `crash`, once taken. */
  @Column({ type: 'varchar', length: 16, nullable: true })
  consistency!: string | null;

  /** When it was asked for. */
  @Column({ name: 'requested_at', type: 'timestamptz' })
  requestedAt!: Date;

  /** When the agent took it; null while pending. */
  @Column({ name: 'taken_at', type: 'timestamptz', nullable: true })
  takenAt!: Date | null;
}
