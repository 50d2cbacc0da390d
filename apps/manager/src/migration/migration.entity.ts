import { Column, Entity, Index, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { TaskEntity } from '../tasks/task.entity';
import type { MigrationFigures, MigrationOptions } from '../task-details/migration-details.dto';
import type { MigrationPhase } from './migration-journal';

/**
 * The migration a vm.migrate task carries out: where from, where to, with which options, the phase
 * it reached and the last figures the source reported. Its journal is the task's log. The one-time
 * cookie is never stored.
 */
@Entity({ name: 'vm_migrations' })
@Index('IDX_vm_migrations_vm_id', ['vmId'])
export class VmMigrationEntity {
  /** The task's id, which is also the migration id the agents know it by. */
  @PrimaryColumn({ name: 'task_id', type: 'uuid' })
  taskId!: string;

  @Column({ name: 'vm_id', type: 'uuid' })
  vmId!: string;

  @Column({ name: 'source_remote', type: 'varchar', length: 63 })
  sourceRemote!: string;

  /** Null until the pre-flight found the node the VM runs on. */
  @Column({ name: 'source_node', type: 'varchar', length: 63, nullable: true })
  sourceNode!: string | null;

  @Column({ name: 'target_remote', type: 'varchar', length: 63 })
  targetRemote!: string;

  @Column({ name: 'target_node', type: 'varchar', length: 63 })
  targetNode!: string;

  /** The target remote's credential to act with (a remote group's entry); null: the remote's default. */
  @Column({ name: 'target_credential_id', type: 'uuid', nullable: true })
  targetCredentialId!: string | null;

  @Column({ type: 'jsonb' })
  options!: MigrationOptions;

  @Column({ type: 'varchar', length: 16 })
  phase!: MigrationPhase;

  /** The last progress the source reported (written at most about twice a second). */
  @Column({ type: 'jsonb', nullable: true })
  progress!: MigrationFigures | null;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'transfer_started_at', type: 'timestamptz', nullable: true })
  transferStartedAt!: Date | null;

  @Column({ name: 'finished_at', type: 'timestamptz', nullable: true })
  finishedAt!: Date | null;

  @Column({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;

  @ManyToOne(() => TaskEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'task_id' })
  task?: object;
}
