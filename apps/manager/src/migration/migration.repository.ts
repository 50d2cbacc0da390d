import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AclEntryEntity } from '../acl/acl-entry.entity';
import { TaskEntity } from '../tasks/task.entity';
import type { MigrationFigures } from './migration-details.dto';
import type { MigrationPhase } from './migration-journal';
import { VmMigrationEntity } from './migration.entity';

/** Migration records in PostgreSQL, and the few other rows a migration reads or moves. */
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

  /** The source's latest figures and the task's progress, in one statement (the caller throttles). */
  async setProgress(
    taskId: string,
    figures: MigrationFigures,
    fraction: number,
    at: Date,
  ): Promise<void> {
    await this.dataSource.query(
      `WITH record AS (UPDATE vm_migrations SET progress = $2::jsonb, updated_at = $4 WHERE task_id = $1)
       UPDATE tasks SET progress = $3, updated_at = $4 WHERE id = $1 AND state = 'running'`,
      [taskId, JSON.stringify(figures), fraction, at],
    );
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

  /**
   * After a move to another remote: ACL entries granted on the VM's path at the old remote now name
   * it at the new one. An entry whose principal already has one on the new path is left as it was.
   * Answers how many moved.
   */
  async moveVmGrants(vmId: string, fromRemote: string, toRemote: string): Promise<number> {
    const from = `/remotes/${encodeURIComponent(fromRemote)}/vms/${encodeURIComponent(vmId)}`;
    const to = `/remotes/${encodeURIComponent(toRemote)}/vms/${encodeURIComponent(vmId)}`;
    const result = await this.dataSource
      .createQueryBuilder()
      .update(AclEntryEntity)
      .set({ path: to })
      .where('path = :from', { from })
      .andWhere(
        'NOT EXISTS (SELECT 1 FROM acl_entries other WHERE other.path = :to AND other.principal_type = acl_entries.principal_type AND other.principal = acl_entries.principal)',
        { to },
      )
      .execute();
    return result.affected ?? 0;
  }
}
