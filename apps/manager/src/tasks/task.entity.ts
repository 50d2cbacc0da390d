import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

export const TASK_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type TaskState = (typeof TASK_STATES)[number];

export interface TaskLogLine {
  /** RFC 3339 */
  at: string;
  message: string;
}

/** A long operation, persisted so that it outlives the request and is reported after a restart. */
@Entity({ name: 'tasks' })
@Index('IDX_tasks_created_at', ['createdAt'])
@Index('IDX_tasks_state', ['state'])
export class TaskEntity {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  /** `vm.start`, `vm.shutdown`, `vm.reboot`, `vm.stop` … */
  @Column({ type: 'varchar', length: 64 })
  type!: string;

  @Column({ type: 'varchar', length: 16 })
  state!: TaskState;

  @Column({ name: 'remote_id', type: 'varchar', length: 63, nullable: true })
  remoteId!: string | null;

  @Column({ name: 'vm_id', type: 'uuid', nullable: true })
  vmId!: string | null;

  /** Who asked for it (`principal!token`). */
  /** The remote credential the task acts with (a remote group's entry); null: the remote's default. */
  @Column({ name: 'credential_id', type: 'uuid', nullable: true })
  credentialId!: string | null;

  @Column({ type: 'varchar', length: 255 })
  owner!: string;

  /** 0 … 1 */
  @Column({ type: 'double precision', default: 0 })
  progress!: number;

  @Column({ type: 'jsonb' })
  log!: TaskLogLine[];

  @Column({ type: 'text', nullable: true })
  error!: string | null;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'started_at', type: 'timestamptz', nullable: true })
  startedAt!: Date | null;

  @Column({ name: 'finished_at', type: 'timestamptz', nullable: true })
  finishedAt!: Date | null;

  @Column({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
