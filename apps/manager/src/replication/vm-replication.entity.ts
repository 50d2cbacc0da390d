import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import type { PendingAction, ReplicatedDisk, ReplicationPhase, SiteRole } from './dr-state';
import { ReplicationPairEntity } from './replication-pair.entity';

/**
 * One mirrored VM: its disks (all mirrored together), the two sites and each site's DR role
 * (primary | secondary | resync; exactly one is primary), the RPO target and mirror-snapshot
 * schedule, and the DR action under way. The source is where mirroring was enabled; it stays the
 * source when the VM moves (its role becomes secondary).
 */
@Entity({ name: 'vm_replications' })
@Index('IDX_vm_replications_pair', ['pairId'])
export class VmReplicationEntity {
  @PrimaryColumn({ name: 'vm_id', type: 'uuid' })
  vmId!: string;

  /** The VM's name when mirroring was enabled (for people; the id is what counts). */
  @Column({ name: 'vm_name', type: 'varchar', length: 255 })
  vmName!: string;

  @Column({ name: 'pair_id', type: 'uuid' })
  pairId!: string;

  @Column({ name: 'source_remote', type: 'varchar', length: 63 })
  sourceRemote!: string;

  @Column({ name: 'source_pool', type: 'varchar', length: 63 })
  sourcePool!: string;

  @Column({ name: 'target_remote', type: 'varchar', length: 63 })
  targetRemote!: string;

  @Column({ name: 'target_pool', type: 'varchar', length: 63 })
  targetPool!: string;

  @Column({ name: 'source_state', type: 'varchar', length: 16 })
  sourceState!: SiteRole;

  @Column({ name: 'target_state', type: 'varchar', length: 16 })
  targetState!: SiteRole;

  /** enabling (the enable task runs) | active | disabling */
  @Column({ type: 'varchar', length: 16 })
  phase!: ReplicationPhase;

  /** The VM's disks at the source (same image names at the target, in the paired pool). */
  @Column({ type: 'jsonb' })
  disks!: ReplicatedDisk[];

  /**
   * The VM's definition as its primary site last answered it (no secrets: name, CPUs, memory, disks,
   * NICs, labels): what an unplanned failover defines at the survivor when the lost site is gone.
   */
  @Column({ type: 'jsonb' })
  spec!: object;

  @Column({ name: 'rpo_target_seconds', type: 'integer' })
  rpoTargetSeconds!: number;

  /** Mirror-snapshot interval ("5m", "1h"). */
  @Column({ name: 'schedule_interval', type: 'varchar', length: 16 })
  scheduleInterval!: string;

  /** The DR action a queued or running task carries out, with its options; null when none. */
  @Column({ type: 'jsonb', nullable: true })
  pending!: PendingAction | null;

  /** What last changed the DR state (enabled, switchover, failover, resync …), in words. */
  @Column({ name: 'last_change', type: 'text' })
  lastChange!: string;

  @Column({ name: 'last_change_at', type: 'timestamptz' })
  lastChangeAt!: Date;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @ManyToOne(() => ReplicationPairEntity, { onDelete: 'RESTRICT', nullable: false })
  @JoinColumn({ name: 'pair_id' })
  pair?: object;
}
