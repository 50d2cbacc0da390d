import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, In, Not } from 'typeorm';
import { isUniqueViolation } from '../database/unique-violation';
import { VmSnapshotTaskEntity, type VmSnapshotTaskOptions } from './vm-snapshot-task.entity';
import { VmSnapshotEntity } from './vm-snapshot.entity';

/** What reserving a snapshot record answered. */
export type Reservation =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'quota'; readonly used: number }
  | { readonly ok: false; readonly reason: 'exists' };

/** The manager's snapshot records (vm_snapshots) and the parameters of snapshot tasks (vm_snapshot_tasks). */
@Injectable()
export class SnapshotsRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /**
   * Adds a pending record unless its principal already holds `quota` records of that VM or the VM
   * has a record of that name. One transaction under an advisory lock per (VM, principal): two
   * requests at once cannot both take the last place.
   */
  async reserve(record: VmSnapshotEntity, quota: number): Promise<Reservation> {
    try {
      return await this.dataSource.transaction(async (manager) => {
        await manager.query('SELECT pg_advisory_xact_lock(hashtext($1))', [
          `vm_snapshots|${record.vmId}|${record.createdBy}`,
        ]);
        const repository = manager.getRepository(VmSnapshotEntity);
        const used = await repository.countBy({ vmId: record.vmId, createdBy: record.createdBy });
        if (used >= quota) return { ok: false, reason: 'quota', used } as const;
        if (
          await repository.existsBy({
            remoteId: record.remoteId,
            vmId: record.vmId,
            name: record.name,
          })
        )
          return { ok: false, reason: 'exists' } as const;
        await repository.insert(record);
        return { ok: true } as const;
      });
    } catch (error) {
      // Another principal's request for the same name won the unique constraint meanwhile.
      if (isUniqueViolation(error)) return { ok: false, reason: 'exists' };
      throw error;
    }
  }

  async release(id: string): Promise<void> {
    await this.dataSource.getRepository(VmSnapshotEntity).delete({ id, state: 'pending' });
  }

  async markCreated(id: string, takenAt: Date, consistency: string): Promise<void> {
    await this.dataSource
      .getRepository(VmSnapshotEntity)
      .update({ id }, { state: 'created', takenAt, consistency });
  }

  byName(remoteId: string, vmId: string, name: string): Promise<VmSnapshotEntity | null> {
    return this.dataSource.getRepository(VmSnapshotEntity).findOneBy({ remoteId, vmId, name });
  }

  async forget(remoteId: string, vmId: string, name: string): Promise<void> {
    await this.dataSource.getRepository(VmSnapshotEntity).delete({ remoteId, vmId, name });
  }

  forVm(remoteId: string, vmId: string): Promise<VmSnapshotEntity[]> {
    return this.dataSource.getRepository(VmSnapshotEntity).findBy({ remoteId, vmId });
  }

  /** Records of taken snapshots that the cluster no longer has (deleted outside the manager): they no longer count. */
  async forgetMissing(remoteId: string, vmId: string, present: readonly string[]): Promise<number> {
    const result = await this.dataSource
      .getRepository(VmSnapshotEntity)
      .delete(
        present.length > 0
          ? { remoteId, vmId, state: 'created', name: Not(In([...present])) }
          : { remoteId, vmId, state: 'created' },
      );
    return result.affected ?? 0;
  }

  /** The records a schedule's runs left pending (a restart interrupted them). */
  pendingOfSchedule(scheduleId: string): Promise<VmSnapshotEntity[]> {
    return this.dataSource.getRepository(VmSnapshotEntity).findBy({ scheduleId, state: 'pending' });
  }

  countFor(vmId: string, createdBy: string): Promise<number> {
    return this.dataSource.getRepository(VmSnapshotEntity).countBy({ vmId, createdBy });
  }

  /** The taken snapshots of one schedule on one VM, newest first (what retention looks at). */
  ofSchedule(scheduleId: string, remoteId: string, vmId: string): Promise<VmSnapshotEntity[]> {
    return this.dataSource.getRepository(VmSnapshotEntity).find({
      where: { scheduleId, remoteId, vmId, state: 'created' },
      order: { takenAt: 'DESC', name: 'DESC' },
    });
  }

  async insertTask(params: {
    taskId: string;
    snapshot: string | null;
    scheduleId: string | null;
    options: VmSnapshotTaskOptions;
  }): Promise<void> {
    await this.dataSource.getRepository(VmSnapshotTaskEntity).insert(params);
  }

  taskParams(taskId: string): Promise<VmSnapshotTaskEntity | null> {
    return this.dataSource.getRepository(VmSnapshotTaskEntity).findOneBy({ taskId });
  }
}
