import { Injectable } from '@nestjs/common';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { TaskCancelled } from '../tasks/task-cancelled';
import type { TaskContext } from '../tasks/tasks.service';
import { MigrationRunnerService } from './migration-runner.service';

/**
 * Settles a migration task that a previous manager process left running, by the phase it had
 * reached — the way libvirt recovers its migration jobs after a daemon restart:
 * - before the transfer, nothing moved: the target's reservation is released and the task fails,
 *   saying where the VM is;
 * - during the transfer, the source knows best: GetMigration, followed to the end when it still
 *   runs; when the source no longer knows it, where the VM actually is decides (running at the
 *   target: succeeded; otherwise failed) and the task says so;
 * - with an outcome already recorded, the task ends with it.
 */
@Injectable()
export class MigrationRecoveryService {
  constructor(private readonly runner: MigrationRunnerService) {}

  async resume(context: TaskContext): Promise<void> {
    const record = await this.runner.record(context.task.id);
    const active = this.runner.track(context, record);
    try {
      active.ends = await this.runner.ends(context.task, record);
      switch (record.phase) {
        case 'preflight':
        case 'prepare': {
          // The reservation is made after the phase turned to prepare: in preflight there is none.
          if (record.phase === 'prepare') await this.runner.releaseTarget(active);
          const where = await this.runner.locate(record, active.ends);
          active.settled = true;
          await this.runner.finishRecord(active, 'failed');
          await this.runner.journal(active, 'failed', `the manager restarted before the transfer began; ${where.text}`);
          await this.runner.refreshCaches(record);
          throw new DomainError(ErrorCode.Conflict, `the manager restarted before the transfer began; ${where.text}`);
        }
        case 'transfer': {
          await this.runner.journal(active, 'transfer', 'the manager restarted during the transfer; asking the source how the migration stands');
          const final = await this.runner.follow(active);
          return await this.runner.settle(active, final, 'the source no longer knows this migration');
        }
        case 'completed':
        case 'failed':
        case 'cancelled': {
          // The outcome was recorded just before the restart; the task only needs to end with it.
          const where = await this.runner.locate(record, active.ends);
          active.settled = true;
          await this.runner.journal(active, record.phase, `the manager restarted after the outcome was recorded; ${where.text}`);
          if (record.phase === 'completed') return;
          if (record.phase === 'cancelled') throw new TaskCancelled(`the migration was cancelled; ${where.text}`);
          throw new DomainError(ErrorCode.RemoteError, `the migration had failed; ${where.text}`);
        }
      }
    } finally {
      this.runner.release(record.taskId);
    }
  }
}
