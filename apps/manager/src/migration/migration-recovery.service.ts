import { Inject, Injectable } from '@nestjs/common';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { TaskCancelled } from '../tasks/task-cancelled';
import { TaskSuspended } from '../tasks/task-suspended';
import type { TaskContext } from '../tasks/tasks.service';
import type { VmMigrationEntity } from './migration.entity';
import { MigrationRunnerService, type ActiveMigration } from './migration-runner.service';
import { MigrationTimerRepository } from './migration-timer.repository';

/** How often the recovery asks again whether both ends answer. */
export const RECOVERY_POLL_MS = 2000;

/**
 * Settles a migration task that a previous manager process left running, by the phase it had
 * reached — the way libvirt recovers its migration jobs after a daemon restart:
 * - before the transfer, nothing moved: the target's reservation is released and the task fails,
 *   saying where the VM is;
 * - during the transfer, the source knows best: GetMigration, followed to the end when it still
 *   runs; when the source no longer knows it, where the VM actually is decides (running at the
 *   target: succeeded; otherwise failed) and the task says so;
 * - with an outcome already recorded, the task ends with it.
 * Before deciding, it waits (at most DEBVISOR_MIGRATION_RECOVERY_WAIT_SECONDS) for both ends to
 * answer — after a restart of the whole site the agents may come back after the manager — and says
 * in the task's journal what it waits for.
 */
@Injectable()
export class MigrationRecoveryService {
  constructor(
    private readonly runner: MigrationRunnerService,
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    private readonly clock: ClockRepository,
    private readonly timer: MigrationTimerRepository,
  ) {}

  async resume(context: TaskContext): Promise<void> {
    const record = await this.runner.record(context.task.id);
    const active = this.runner.track(context, record);
    try {
      active.ends = await this.runner.ends(context.task, record);
      await this.awaitEnds(active, record);
      switch (record.phase) {
        case 'preflight':
        case 'prepare': {
          // The reservation is made after the phase turned to prepare: in preflight there is none.
          if (record.phase === 'prepare') await this.runner.releaseTarget(active);
          const where = await this.runner.locate(record, active.ends);
          active.settled = true;
          await this.runner.finishRecord(active, 'failed');
          await this.runner.journal(
            active,
            'failed',
            `the manager restarted before the transfer began; ${where.text}`,
          );
          await this.runner.refreshCaches(record);
          throw new DomainError(
            ErrorCode.Conflict,
            `the manager restarted before the transfer began; ${where.text}`,
          );
        }
        case 'transfer': {
          await this.runner.journal(
            active,
            'transfer',
            'the manager restarted during the transfer; asking the source how the migration stands',
          );
          const final = await this.runner.follow(active);
          return await this.runner.settle(
            active,
            final,
            'the source no longer knows this migration',
          );
        }
        case 'completed':
        case 'failed':
        case 'cancelled': {
          // The outcome was recorded just before the restart; the task only needs to end with it.
          const where = await this.runner.locate(record, active.ends);
          active.settled = true;
          await this.runner.journal(
            active,
            record.phase,
            `the manager restarted after the outcome was recorded; ${where.text}`,
          );
          if (record.phase === 'completed') return;
          if (record.phase === 'cancelled')
            throw new TaskCancelled(`the migration was cancelled; ${where.text}`);
          throw new DomainError(ErrorCode.RemoteError, `the migration had failed; ${where.text}`);
        }
      }
    } finally {
      this.runner.release(record.taskId);
    }
  }

  /** Waits, at most the configured time, until both ends answer about the VM; the journal says for what and how it ended. */
  private async awaitEnds(active: ActiveMigration, record: VmMigrationEntity): Promise<void> {
    let missing = await this.runner.unanswered(record, active.ends!);
    if (missing.length === 0) return;
    const budgetSeconds = this.config.migrationRecoveryWaitSeconds;
    const started = this.clock.now().getTime();
    await this.runner.journal(
      active,
      record.phase,
      `waiting up to ${budgetSeconds} s for ${missing.join(' and ')} to answer before deciding`,
    );
    while (missing.length > 0 && this.clock.now().getTime() - started < budgetSeconds * 1000) {
      await this.timer.sleep(RECOVERY_POLL_MS, active.abort.signal);
      if (active.abort.signal.aborted) throw new TaskSuspended();
      missing = await this.runner.unanswered(record, active.ends!);
    }
    const waited = Math.round((this.clock.now().getTime() - started) / 1000);
    await this.runner.journal(
      active,
      record.phase,
      missing.length === 0
        ? `both ends answer after ${waited} s; deciding`
        : `${missing.join(' and ')} still ${missing.length === 1 ? 'does' : 'do'} not answer after ${waited} s; deciding with what is known`,
    );
  }
}
