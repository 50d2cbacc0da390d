import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Brackets, DataSource, type SelectQueryBuilder } from 'typeorm';
import { TaskEntity } from '../tasks/task.entity';

/** Whose tasks a caller may see: those on these remotes ('all': any) or on these VMs (a tenant's own). */
export interface TaskScope {
  readonly remotes: 'all' | ReadonlySet<string>;
  readonly vms?: ReadonlySet<string>;
}

export interface ActiveTasks {
  /** The newest queued or running tasks, newest first. */
  readonly newest: TaskEntity[];
  /** How many queued or running tasks each remote has (null: tasks on no remote). */
  readonly perRemote: ReadonlyMap<string | null, number>;
}

const ACTIVE = ['queued', 'running'];

/** The dashboard's reads of the tasks table: unfinished tasks within the caller's scope. */
@Injectable()
export class DashboardRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Two statements whatever the number of remotes: the newest `limit` tasks, and the counts grouped by remote. */
  async activeTasks(scope: TaskScope, limit: number): Promise<ActiveTasks> {
    const newestQuery = this.scoped(scope);
    const countQuery = this.scoped(scope);
    if (!newestQuery || !countQuery) return { newest: [], perRemote: new Map() };
    const [newest, counts] = await Promise.all([
      newestQuery.orderBy('t.created_at', 'DESC').addOrderBy('t.id', 'DESC').take(limit).getMany(),
      countQuery
        .select('t.remote_id', 'remote')
        .addSelect('count(*)::int', 'count')
        .groupBy('t.remote_id')
        .getRawMany<{ remote: string | null; count: number }>(),
    ]);
    return { newest, perRemote: new Map(counts.map((row) => [row.remote, Number(row.count)])) };
  }

  /** Unfinished tasks within the scope; undefined when the scope holds nothing. */
  private scoped(scope: TaskScope): SelectQueryBuilder<TaskEntity> | undefined {
    const query = this.dataSource
      .getRepository(TaskEntity)
      .createQueryBuilder('t')
      .where('t.state IN (:...active)', { active: ACTIVE });
    if (scope.remotes === 'all') return query;
    const remotes = [...scope.remotes];
    const vms = [...(scope.vms ?? [])];
    if (remotes.length === 0 && vms.length === 0) return undefined;
    return query.andWhere(
      new Brackets((q) => {
        if (remotes.length > 0) q.orWhere('t.remote_id IN (:...remotes)', { remotes });
        if (vms.length > 0) q.orWhere('t.vm_id IN (:...vms)', { vms });
      }),
    );
  }
}
