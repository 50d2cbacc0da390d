import { Inject, Injectable } from '@nestjs/common';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import type { TaskContext } from '../tasks/tasks.service';
import type { InFlightMigration } from './in-flight-migration';
import { InFlightMigrations } from './in-flight-migrations.service';

export { RECOVERY_POLL_MS } from './in-flight-migration';

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
    private readonly inFlight: InFlightMigrations,
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
  ) {}

  resume(context: TaskContext): Promise<void> {
    return this.inFlight.carry(context, (migration) => this.settle(migration));
  }

  private async settle(migration: InFlightMigration): Promise<void> {
    await migration.connect();
    await migration.awaitBothEnds(this.config.migrationRecoveryWaitSeconds);
    switch (migration.record.phase) {
      case 'preflight':
      case 'prepare':
        return migration.endBeforeTransfer();
      case 'transfer':
        await migration.journal(
          'transfer',
          'the manager restarted during the transfer; asking the source how the migration stands',
        );
        return migration.followToEnd('the source no longer knows this migration');
      case 'completed':
      case 'failed':
      case 'cancelled':
        // The outcome was recorded just before the restart; the task only needs to end with it.
        return migration.endAsRecorded();
    }
  }
}
