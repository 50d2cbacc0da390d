import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, LessThanOrEqual } from 'typeorm';
import { SnapshotScheduleEntity } from './snapshot-schedule.entity';

/** Snapshot schedules in PostgreSQL (snapshot_schedules). */
@Injectable()
export class SnapshotSchedulesRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  async insert(schedule: SnapshotScheduleEntity): Promise<void> {
    await this.dataSource.getRepository(SnapshotScheduleEntity).insert(schedule);
  }

  get(id: string): Promise<SnapshotScheduleEntity | null> {
    return this.dataSource.getRepository(SnapshotScheduleEntity).findOneBy({ id });
  }

  list(): Promise<SnapshotScheduleEntity[]> {
    return this.dataSource
      .getRepository(SnapshotScheduleEntity)
      .find({ order: { remoteId: 'ASC', name: 'ASC', createdAt: 'ASC' } });
  }

  async update(id: string, changes: Partial<Omit<SnapshotScheduleEntity, 'id'>>): Promise<void> {
    await this.dataSource.getRepository(SnapshotScheduleEntity).update({ id }, changes);
  }

  async delete(id: string): Promise<boolean> {
    return (
      ((await this.dataSource.getRepository(SnapshotScheduleEntity).delete({ id })).affected ?? 0) >
      0
    );
  }

  /** Enabled schedules whose next run is due at `now`, the most overdue first. */
  due(now: Date): Promise<SnapshotScheduleEntity[]> {
    return this.dataSource.getRepository(SnapshotScheduleEntity).find({
      where: { enabled: true, nextRunAt: LessThanOrEqual(now) },
      order: { nextRunAt: 'ASC' },
    });
  }

  /**
   * Moves a schedule that is still due at `ranAt` on to its next run: of two managers (or ticks)
   * looking at once, one starts the run (the other finds it no longer due).
   */
  async claim(id: string, ranAt: Date, nextRunAt: Date): Promise<boolean> {
    const result = await this.dataSource
      .createQueryBuilder()
      .update(SnapshotScheduleEntity)
      .set({ lastRunAt: ranAt, nextRunAt })
      .where('id = :id AND next_run_at <= :ranAt AND enabled', { id, ranAt })
      .execute();
    return (result.affected ?? 0) > 0;
  }
}
