import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

export const PAIR_STATES = ['pairing', 'paired', 'failed'] as const;
export type PairState = (typeof PAIR_STATES)[number];

/**
 * Two remotes' pools paired for snapshot-based RBD mirroring. The peer bootstrap token that paired
 * them is never stored: it passed from one agent to the other in the pairing task's memory only.
 */
@Entity({ name: 'replication_pairs' })
@Index('IDX_replication_pairs_ends', ['remoteA', 'poolA', 'remoteB', 'poolB'], { unique: true })
export class ReplicationPairEntity {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'remote_a', type: 'varchar', length: 63 })
  remoteA!: string;

  @Column({ name: 'pool_a', type: 'varchar', length: 63 })
  poolA!: string;

  @Column({ name: 'remote_b', type: 'varchar', length: 63 })
  remoteB!: string;

  @Column({ name: 'pool_b', type: 'varchar', length: 63 })
  poolB!: string;

  @Column({ type: 'varchar', length: 16 })
  state!: PairState;

  /** Why the last pairing failed (safe text, never the token). */
  @Column({ type: 'text', nullable: true })
  error!: string | null;

  /** The task that paired (or is pairing) them. */
  @Column({ name: 'task_id', type: 'uuid' })
  taskId!: string;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
