import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { TaskEntity } from '../tasks/task.entity';
import type { MigrationFigures } from '../task-details/migration-details.dto';
import type { MigrationPhase } from './migration-journal';
import { VmMigrationEntity } from './migration.entity';

/** Migration records in PostgreSQL (the table vm_migrations), and the task rows a migration reads. */
@Injectable()
export class MigrationRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  async insert(record: VmMigrationEntity): Promise<void> {
    await this.dataSource.getRepository(VmMigrationEntity).insert(record);
  }

  /** Inserts the record, or replaces the one of the same task (a DR task resumed after a restart moves its VM again). */
  async upsert(record: VmMigrationEntity): Promise<void> {
    await this.dataSource.getRepository(VmMigrationEntity).upsert(record, ['taskId']);
  }

  get(taskId: string): Promise<VmMigrationEntity | null> {
    return this.dataSource.getRepository(VmMigrationEntity).findOneBy({ taskId });
  }

  /** The phase reached, with what became known on the way. */
  async setPhase(
    taskId: string,
    phase: MigrationPhase,
    at: Date,
    facts: { sourceNode?: string; transferStartedAt?: Date; finishedAt?: Date } = {},
  ): Promise<void> {
    await this.dataSource
      .getRepository(VmMigrationEntity)
      .update({ taskId }, { phase, updatedAt: at, ...facts });
  }

  /** The source's latest figures (the caller throttles; the task's own progress is the tasks feature's). */
  async setProgress(taskId: string, figures: MigrationFigures, at: Date): Promise<void> {
    await this.dataSource
      .getRepository(VmMigrationEntity)
      .update({ taskId }, { progress: figures, updatedAt: at });
  }

  /**
   * The figures of the last `limit` completed live migrations between two remotes (either
   * direction; the same remote twice: within it), newest first.
   */
  async recentTransfers(a: string, b: string, limit: number): Promise<MigrationFigures[]> {
    const rows = await this.dataSource
      .getRepository(VmMigrationEntity)
      .createQueryBuilder('m')
      .select(['m.progress'])
      .where(
        '((m.source_remote = :a AND m.target_remote = :b) OR (m.source_remote = :b AND m.target_remote = :a))',
        { a, b },
      )
      .andWhere("m.phase = 'completed' AND m.progress IS NOT NULL")
      .andWhere("(m.options ->> 'online')::boolean")
      .orderBy('m.finished_at', 'DESC')
      .limit(limit)
      .getMany();
    return rows.map((row) => row.progress!);
  }

  /** A queued or running task of the VM (any type), the oldest first; undefined when it is free. */
  async activeTaskOf(vmId: string): Promise<Pick<TaskEntity, 'id' | 'type' | 'state'> | undefined> {
    const task = await this.dataSource
      .getRepository(TaskEntity)
      .createQueryBuilder('t')
      .select(['t.id', 't.type', 't.state'])
      .where('t.vm_id = :vm', { vm: vmId })
      .andWhere('t.state IN (:...active)', { active: ['queued', 'running'] })
      .orderBy('t.created_at', 'ASC')
      .getOne();
    return task ?? undefined;
  }
}
