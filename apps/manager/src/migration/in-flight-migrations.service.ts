import { Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { AclService } from '../acl/acl.service';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MetricsService } from '../health/metrics.service';
import { RemotesService } from '../remotes/remotes.service';
import { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import type { TaskContext } from '../tasks/tasks.service';
import { InFlightMigration, type InFlightDeps } from './in-flight-migration';
import { MigrationEvents } from './migration-events';
import type { MigrationEnds } from './migration-preflight.service';
import { MigrationTimerRepository } from './migration-timer.repository';
import type { VmMigrationEntity } from './migration.entity';
import { MigrationRepository } from './migration.repository';

/** The cluster permission of the agents' migration RPCs (apps/agent/src/rpc/permissions.ts). */
export const MIGRATE_PERMISSION = 'migration:vm:migrate';

/** A remote and the credential to act on it with (null: the remote's default). */
export interface EndCredential {
  readonly remote: string;
  readonly credentialId: string | null;
}

/**
 * The one owner of the migrations this process carries out or settles: it opens each (its record
 * and the connections to both ends), keeps it while work runs on it, and lets cancel and shutdown
 * find it. The runner and the recovery each get the migration for the length of their work.
 */
@Injectable()
export class InFlightMigrations {
  private readonly active = new Map<string, InFlightMigration>();
  private readonly deps: InFlightDeps;

  constructor(
    repository: MigrationRepository,
    agents: AgentClientRepository,
    private readonly remotes: RemotesService,
    resources: ResourcesService,
    private readonly acl: AclService,
    metrics: MetricsService,
    clock: ClockRepository,
    timer: MigrationTimerRepository,
    logger: PinoLogger,
    events: MigrationEvents,
  ) {
    logger.setContext(InFlightMigrations.name);
    this.deps = {
      repository,
      agents,
      resources,
      metrics,
      clock,
      timer,
      logger,
      events,
      // Grants follow the VM through the acl feature that owns them; tenant ownership is by VM id.
      moveGrants: (vmId, from, to) => this.acl.moveVmGrants(vmId, from, to),
    };
  }

  /**
   * Runs `work` on the migration of this task (its record as stored, or `record` when the caller
   * holds it), tracked for cancel and shutdown until the work ends. The work connects to the ends
   * first (`migration.connect()`), so that it decides what a refused credential means.
   */
  async carry<T>(
    context: TaskContext,
    work: (migration: InFlightMigration) => Promise<T>,
    record?: VmMigrationEntity,
  ): Promise<T> {
    const stored = record ?? (await this.record(context.task.id));
    const migration = new InFlightMigration(this.deps, context, stored, () =>
      this.connect(
        { remote: stored.sourceRemote, credentialId: context.task.credentialId },
        { remote: stored.targetRemote, credentialId: stored.targetCredentialId },
      ),
    );
    this.active.set(stored.taskId, migration);
    migration.timeline.mark('manager: task started');
    try {
      return await work(migration);
    } finally {
      if (this.active.get(stored.taskId) === migration) this.active.delete(stored.taskId);
      // the task ends (and logs its end) only after the migration's own lines
      await migration.behind();
      migration.timeline.mark('manager: journal written');
      migration.logTimeline();
    }
  }

  /** Asks the migration of this task to stop (409 when none is under way here). */
  async cancel(task: Readonly<TaskEntity>, by: string): Promise<void> {
    const migration = this.active.get(task.id);
    if (!migration)
      throw new DomainError(
        ErrorCode.Conflict,
        `migration ${task.id} is not under way in this manager`,
      );
    await migration.cancel(by);
  }

  /** At shutdown: every migration lets go (its task stays running; the next start settles it). */
  suspend(): void {
    for (const migration of this.active.values()) migration.suspend();
  }

  /**
   * Connections to both ends with these credentials (one connection when they are the same); 403
   * when a credential's cluster permissions do not allow migrating.
   */
  async connect(source: EndCredential, target: EndCredential): Promise<MigrationEnds> {
    const sourceConnection = await this.remotes.connectionFor(
      source.remote,
      source.credentialId,
      MIGRATE_PERMISSION,
    );
    const targetConnection: AgentConnection =
      target.remote === source.remote && target.credentialId === source.credentialId
        ? sourceConnection
        : await this.remotes.connectionFor(target.remote, target.credentialId, MIGRATE_PERMISSION);
    return { source: sourceConnection, target: targetConnection };
  }

  private async record(taskId: string): Promise<VmMigrationEntity> {
    const record = await this.deps.repository.get(taskId);
    if (!record)
      throw new DomainError(
        ErrorCode.Internal,
        'the migration record of this task is missing; nothing was done',
      );
    return record;
  }
}
