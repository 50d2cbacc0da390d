import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/**
 * One entry of the audit log: append-only (a trigger refuses UPDATE, DELETE and TRUNCATE, and the
 * manager's runtime role holds only SELECT and INSERT on it) and hash-chained (see @debvisor/audit).
 */
@Entity({ name: 'audit_log' })
@Index('IDX_audit_log_ts', ['ts'])
@Index('IDX_audit_log_principal_seq', ['principal', 'seq'])
@Index('IDX_audit_log_action_seq', ['action', 'seq'])
export class AuditEntryEntity {
  /** 1, 2, 3 … without gaps; bigint, so TypeORM hands it over as a string. */
  @PrimaryColumn({ type: 'bigint' })
  seq!: string;

  @Column({ type: 'timestamptz' })
  ts!: Date;

  @Column({ type: 'varchar', length: 255, nullable: true })
  principal!: string | null;

  @Column({ type: 'varchar', length: 64 })
  action!: string;

  @Column({ type: 'varchar', length: 1024, nullable: true })
  target!: string | null;

  @Column({ type: 'varchar', length: 16 })
  outcome!: string;

  @Column({ name: 'trace_id', type: 'varchar', length: 128, nullable: true })
  traceId!: string | null;

  @Column({ type: 'varchar', length: 255, nullable: true })
  source!: string | null;

  @Column({ type: 'jsonb' })
  details!: Record<string, unknown>;

  @Column({ name: 'prev_hash', type: 'varchar', length: 64 })
  prevHash!: string;

  @Column({ type: 'varchar', length: 64 })
  hash!: string;
}
