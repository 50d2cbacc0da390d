import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Brackets, DataSource } from 'typeorm';
import { TaskEntity, type TaskLogLine, type TaskState } from './task.entity';

export interface TaskFilter {
  state?: TaskState;
  type?: string;
  remote?: string;
  vm?: string;
  owner?: string;
  /** Only tasks on these remotes ('all': no restriction) … */
  remotes: 'all' | ReadonlySet<string>;
  /** … or on these VMs (a tenant's own). */
  vms?: ReadonlySet<string>;
  limit: number;
  offset: number;
}

/** Tasks in PostgreSQL. Log lines are appended in place (no read-modify-write). */
@Injectable()
export class TasksRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /**
   * Stores a new task. With `exclusiveTypes` and a VM, the check and the insert are one transaction
   * under a lock on the VM id, so that two requests cannot both pass: a task is not stored — and the
   * blocking task is answered — when the VM has a queued or running task of an exclusive type, or
   * when the new task is itself of an exclusive type and the VM has any queued or running task.
   */
  async insert(
    task: TaskEntity,
    exclusiveTypes: readonly string[] = [],
  ): Promise<TaskEntity | undefined> {
    if (task.vmId === null || exclusiveTypes.length === 0) {
      await this.dataSource.getRepository(TaskEntity).insert(task);
      return undefined;
    }
    return this.dataSource.transaction(async (tx) => {
      // Released at commit; the check below then sees every task committed by an earlier holder.
      await tx.query(
        `SELECT pg_advisory_xact_lock(hashtextextended('debvisor.tasks.vm:' || $1, 0))`,
        [task.vmId],
      );
      const blocking = await tx
        .getRepository(TaskEntity)
        .createQueryBuilder('t')
        .where('t.vm_id = :vm', { vm: task.vmId })
        .andWhere('t.state IN (:...active)', { active: ['queued', 'running'] })
        .andWhere(exclusiveTypes.includes(task.type) ? 'TRUE' : 't.type IN (:...exclusive)', {
          exclusive: exclusiveTypes,
        })
        .orderBy('t.created_at', 'ASC')
        .getOne();
      if (blocking) return blocking;
      await tx.getRepository(TaskEntity).insert(task);
      return undefined;
    });
  }

  get(id: string): Promise<TaskEntity | null> {
    return this.dataSource.getRepository(TaskEntity).findOneBy({ id });
  }

  /** Newest first. */
  async list(filter: TaskFilter): Promise<{ items: TaskEntity[]; total: number }> {
    const query = this.dataSource.getRepository(TaskEntity).createQueryBuilder('t');
    if (filter.state) query.andWhere('t.state = :state', { state: filter.state });
    if (filter.type) query.andWhere('t.type = :type', { type: filter.type });
    if (filter.remote) query.andWhere('t.remote_id = :remote', { remote: filter.remote });
    if (filter.vm) query.andWhere('t.vm_id = :vm', { vm: filter.vm });
    if (filter.owner) query.andWhere('t.owner = :owner', { owner: filter.owner });
    if (filter.remotes !== 'all') {
      const allowed = [...filter.remotes];
      const vms = [...(filter.vms ?? [])];
      if (allowed.length === 0 && vms.length === 0) return { items: [], total: 0 };
      query.andWhere(
        new Brackets((q) => {
          if (allowed.length > 0) q.orWhere('t.remote_id IN (:...allowed)', { allowed });
          if (vms.length > 0) q.orWhere('t.vm_id IN (:...vms)', { vms });
        }),
      );
    }
    const [items, total] = await query
      .orderBy('t.created_at', 'DESC')
      .addOrderBy('t.id', 'DESC')
      .take(filter.limit)
      .skip(filter.offset)
      .getManyAndCount();
    return { items, total };
  }

  /** queued → running; false when the task was not queued any more. */
  async markRunning(id: string, at: Date): Promise<boolean> {
    const result = await this.dataSource
      .getRepository(TaskEntity)
      .update({ id, state: 'queued' }, { state: 'running', startedAt: at, updatedAt: at });
    return (result.affected ?? 0) > 0;
  }

  async appendLog(id: string, line: TaskLogLine): Promise<void> {
    await this.dataSource.query(
      'UPDATE tasks SET log = log || $1::jsonb, updated_at = $2 WHERE id = $3',
      [JSON.stringify([line]), new Date(line.at), id],
    );
  }

  async setProgress(id: string, progress: number, at: Date): Promise<void> {
    await this.dataSource.getRepository(TaskEntity).update({ id }, { progress, updatedAt: at });
  }

  async finish(
    id: string,
    outcome: { state: TaskState; error: string | null; progress?: number },
    at: Date,
  ): Promise<void> {
    await this.dataSource.getRepository(TaskEntity).update(
      { id },
      {
        state: outcome.state,
        error: outcome.error,
        finishedAt: at,
        updatedAt: at,
        ...(outcome.progress !== undefined ? { progress: outcome.progress } : {}),
      },
    );
  }

  /** queued → cancelled with `message` in the log; false when the task was not queued any more. */
  async cancelQueued(id: string, message: string, at: Date): Promise<boolean> {
    const result = await this.dataSource
      .createQueryBuilder()
      .update(TaskEntity)
      .set({
        state: 'cancelled',
        error: message,
        finishedAt: at,
        updatedAt: at,
        log: () => 'log || :line::jsonb',
      })
      .setParameter(
        'line',
        JSON.stringify([{ at: at.toISOString(), message: `cancelled: ${message}` }]),
      )
      .where('id = :id AND state = :queued', { id, queued: 'queued' })
      .execute();
    return (result.affected ?? 0) > 0;
  }

  /** Tasks of these types still marked running (left by a previous process), oldest first. */
  listRunning(types: readonly string[]): Promise<TaskEntity[]> {
    if (types.length === 0) return Promise.resolve([]);
    return this.dataSource
      .getRepository(TaskEntity)
      .createQueryBuilder('t')
      .where("t.state = 'running'")
      .andWhere('t.type IN (:...types)', { types })
      .orderBy('t.created_at', 'ASC')
      .getMany();
  }

  /**
   * Fails every task left queued or running by a previous manager process, appending `message(state)`
   * to its log; answers the tasks as they were before. Running tasks of the `resumable` types are left
   * alone (their handlers settle them).
   */
  async failUnfinished(
    message: (state: TaskState) => string,
    at: Date,
    resumable: readonly string[] = [],
  ): Promise<TaskEntity[]> {
    return this.dataSource.transaction(async (tx) => {
      const query = tx
        .getRepository(TaskEntity)
        .createQueryBuilder('t')
        .setLock('pessimistic_write')
        .where('t.state IN (:...states)', { states: ['queued', 'running'] });
      if (resumable.length > 0)
        query.andWhere("NOT (t.state = 'running' AND t.type IN (:...resumable))", { resumable });
      const unfinished = await query.getMany();
      for (const task of unfinished) {
        const text = message(task.state);
        await tx.query(
          `UPDATE tasks SET state = 'failed', error = $1, finished_at = $2, updated_at = $2, log = log || $3::jsonb WHERE id = $4`,
          [text, at, JSON.stringify([{ at: at.toISOString(), message: text }]), task.id],
        );
      }
      return unfinished;
    });
  }
}
