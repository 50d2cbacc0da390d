import { Column, Entity, JoinColumn, ManyToOne, PrimaryColumn } from 'typeorm';
import { TaskEntity } from '../tasks/task.entity';

/** What a snapshot task was asked to do beyond its type and VM (the task row has no room for it). */
export interface VmSnapshotTaskOptions {
  /** vm.snapshot.create: freeze the guest's filesystems through its agent first. */
  freeze?: boolean;
  /** vm.snapshot.rollback: stop a running VM first. */
  stopFirst?: boolean;
}

/** The parameters of a vm.snapshot.* task: which snapshot (or which schedule) and how. */
@Entity({ name: 'vm_snapshot_tasks' })
export class VmSnapshotTaskEntity {
  @PrimaryColumn({ name: 'task_id', type: 'uuid' })
  taskId!: string;

  /** The snapshot created, deleted or rolled back to; null for a schedule's run. */
  @Column({ type: 'varchar', length: 64, nullable: true })
  snapshot!: string | null;

  /** The schedule a vm.snapshot.schedule task runs. */
  @Column({ name: 'schedule_id', type: 'uuid', nullable: true })
  scheduleId!: string | null;

  @Column({ type: 'jsonb' })
  options!: VmSnapshotTaskOptions;

  @ManyToOne(() => TaskEntity, { onDelete: 'CASCADE', nullable: false })
  @JoinColumn({ name: 'task_id' })
  task?: object;
}
