import type { MigrateVmRequest, MigrationProgress__Output } from '@debvisor/proto';
import { Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { AuthService } from '../auth/auth.service';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MetricsService } from '../health/metrics.service';
import { RemotesService } from '../remotes/remotes.service';
import { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import { TaskCancelled } from '../tasks/task-cancelled';
import { TaskSuspended } from '../tasks/task-suspended';
import type { TaskContext } from '../tasks/tasks.service';
import type { MigrationFigures } from './migration-details.dto';
import { MigrationEvents } from './migration-events';
import {
  isFinalPhase,
  journalLine,
  type FinalPhase,
  type MigrationPhase,
} from './migration-journal';
import {
  checkView,
  failingChecks,
  MigrationPreflightService,
  type MigrationEnds,
  type MigrationPlan,
} from './migration-preflight.service';
import { MigrationTimerRepository } from './migration-timer.repository';
import type { VmMigrationEntity } from './migration.entity';
import { MigrationRepository } from './migration.repository';

/** The cluster permission of the agents' migration RPCs (apps/agent/src/rpc/permissions.ts). */
export const MIGRATE_PERMISSION = 'migration:vm:migrate';
/** Figures are written at most this often (about twice a second), and always at the end. */
const PROGRESS_WRITE_INTERVAL_MS = 500;
/** A cancel the source did not take yet (it had not registered the migration) is asked again this often. */
const CANCEL_RETRY_INTERVAL_MS = 1000;
/** Following a migration without its stream: GetMigration this often … */
const FOLLOW_INTERVAL_MS = 1000;
/** … and giving up on an unreachable source after this many failed polls in a row. */
const FOLLOW_MAX_UNREACHABLE = 15;

/** A migration this process is carrying out or settling. */
export interface ActiveMigration {
  readonly record: VmMigrationEntity;
  readonly context: TaskContext;
  readonly abort: AbortController;
  phase: MigrationPhase;
  ends: MigrationEnds | undefined;
  /** Who asked to cancel (null: nobody). */
  cancelledBy: string | null;
  /** The source said it is stopping the migration. */
  sourceCancelling: boolean;
  lastCancelAttempt: number;
  lastWrite: number;
  lastStage: string;
  /** The task's progress as last written: it never goes back (a later pre-copy pass resends dirtied memory). */
  fraction: number;
  /** The outcome was decided and recorded: errors from here on are final. */
  settled: boolean;
}

/** A remote and the credential to act on it with (null: the remote's default). */
export interface EndCredential {
  readonly remote: string;
  readonly credentialId: string | null;
}

/** Where the VM is, as the agents answered. */
export interface Whereabouts {
  /** It runs (live migration) or is defined (offline) on the target node. */
  readonly atTarget: boolean;
  /** One sentence, for the task's error and journal. */
  readonly text: string;
}

type Sighting =
  | { kind: 'vm'; node: string; state: string }
  | { kind: 'absent' }
  | { kind: 'unknown'; reason: string };

/**
 * Carries out one migration task: pre-flight on both ends, the target's reservation (its one-time
 * cookie goes from the target's answer straight into the source's request and nowhere else), the
 * source's progress stream into the task, and the settlement — caches refreshed, grants moved to
 * the new remote, or the target's side released and the VM's true whereabouts written into the task.
 */
/** The longest pause between tries to move a migrated VM's grants. */
const GRANT_MOVE_MAX_PAUSE_MS = 30_000;

@Injectable()
export class MigrationRunnerService {
  private readonly active = new Map<string, ActiveMigration>();

  constructor(
    private readonly repository: MigrationRepository,
    private readonly preflight: MigrationPreflightService,
    private readonly agents: AgentClientRepository,
    private readonly remotes: RemotesService,
    private readonly resources: ResourcesService,
    private readonly auth: AuthService,
    private readonly metrics: MetricsService,
    private readonly clock: ClockRepository,
    private readonly timer: MigrationTimerRepository,
    private readonly logger: PinoLogger,
    private readonly events: MigrationEvents,
  ) {
    logger.setContext(MigrationRunnerService.name);
  }

  async run(context: TaskContext): Promise<void> {
    const active = this.track(context, await this.record(context.task.id));
    try {
      await this.carryOut(active);
    } finally {
      this.release(context.task.id);
    }
  }

  /**
   * Asks the migration to stop. Before the transfer the task stops at the next step; during it the
   * source is asked (CancelMigration) and the task ends when its stream says how it ended. 409 when
   * the source answers that it is past the point of no return.
   */
  async cancel(task: Readonly<TaskEntity>, by: string): Promise<void> {
    const active = this.active.get(task.id);
    if (!active)
      throw new DomainError(
        ErrorCode.Conflict,
        `migration ${task.id} is not under way in this manager`,
      );
    if (active.settled)
      throw new DomainError(
        ErrorCode.Conflict,
        `migration ${task.id} is ending (${active.phase}); it can no longer be cancelled`,
      );
    if (active.cancelledBy !== null) return;
    active.cancelledBy = by;
    await this.journal(active, active.phase, `cancel requested by ${by}`);
    if (active.phase === 'transfer') await this.askSourceToCancel(active, true);
  }

  /** At shutdown: every migration lets go (its task stays running; the next start settles it). */
  suspend(): void {
    for (const active of this.active.values()) active.abort.abort();
  }

  /** Registers a migration this process now carries out or settles (cancel finds it). */
  track(context: TaskContext, record: VmMigrationEntity): ActiveMigration {
    const active: ActiveMigration = {
      record,
      context,
      abort: new AbortController(),
      phase: record.phase,
      ends: undefined,
      cancelledBy: null,
      sourceCancelling: false,
      lastCancelAttempt: 0,
      lastWrite: 0,
      lastStage: record.progress?.stage ?? '',
      fraction: context.task.progress ?? 0,
      settled: false,
    };
    this.active.set(record.taskId, active);
    return active;
  }

  release(taskId: string): void {
    this.active.delete(taskId);
  }

  async record(taskId: string): Promise<VmMigrationEntity> {
    const record = await this.repository.get(taskId);
    if (!record)
      throw new DomainError(
        ErrorCode.Internal,
        'the migration record of this task is missing; nothing was done',
      );
    return record;
  }

  /** The connections to both ends, with the credentials the task was accepted with. */
  ends(task: Readonly<TaskEntity>, record: VmMigrationEntity): Promise<MigrationEnds> {
    return this.connect(
      { remote: record.sourceRemote, credentialId: task.credentialId },
      { remote: record.targetRemote, credentialId: record.targetCredentialId },
    );
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

  /**
   * Without the stream (it broke, or the manager restarted): GetMigration at the source until it
   * reports an outcome. Undefined when the source cannot say (it no longer knows the migration, or
   * stays unreachable): the caller then decides by where the VM is.
   */
  async follow(active: ActiveMigration): Promise<MigrationProgress__Output | undefined> {
    const { record } = active;
    const ref = {
      migrationId: record.taskId,
      vmUuid: record.vmId,
      nodeId: record.sourceNode ?? '',
    };
    let unreachable = 0;
    for (;;) {
      if (active.abort.signal.aborted) throw new TaskSuspended();
      try {
        const progress = await this.agents.getMigration(active.ends!.source, ref);
        unreachable = 0;
        await this.observe(active, progress);
        if (isFinalPhase(progress.phase)) return progress;
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        const transient =
          error.code === ErrorCode.RemoteUnreachable || error.code === ErrorCode.RemoteTlsFailed;
        if (!transient || ++unreachable >= FOLLOW_MAX_UNREACHABLE) {
          await this.journal(
            active,
            'transfer',
            `the source cannot say how the migration ended (${error.message}); deciding by where the VM is`,
          );
          return undefined;
        }
      }
      await this.timer.sleep(FOLLOW_INTERVAL_MS, active.abort.signal);
    }
  }

  /**
   * Decides and records the outcome from the source's last word (`final`; undefined: it could not
   * say, so the VM's whereabouts decide). Completed: caches refreshed, grants moved. Otherwise the
   * target's side is released and the error (or cancellation) states where the VM is.
   */
  async settle(
    active: ActiveMigration,
    final: MigrationProgress__Output | undefined,
    lost?: string,
  ): Promise<void> {
    active.settled = true;
    const { record } = active;
    if (final?.phase === 'completed')
      return this.complete(
        active,
        `the VM runs on node ${record.targetNode} of remote ${record.targetRemote}${timing(final)}`,
      );
    const where = await this.locate(record, active.ends!);
    if (!final && where.atTarget)
      return this.complete(
        active,
        `the source could not say how the migration ended; found: ${where.text}`,
      );
    await this.releaseTarget(active);
    await this.refreshCaches(record);
    const phase: FinalPhase = final?.phase === 'cancelled' ? 'cancelled' : 'failed';
    await this.finishRecord(active, phase);
    await this.journal(active, phase, where.text);
    const reason = final
      ? final.message ||
        (phase === 'cancelled' ? 'the source stopped the migration' : 'the migration failed')
      : `the outcome could not be learned from the source (${lost ?? 'no answer'})`;
    const message = `${reason} — checked: ${where.text}`;
    if (phase === 'cancelled')
      throw new TaskCancelled(
        active.cancelledBy ? `cancelled by ${active.cancelledBy}: ${message}` : message,
      );
    throw new DomainError(ErrorCode.RemoteError, message);
  }

  /**
   * The ends that do not answer about the VM now (GetVm on each remote: a VM or "not here" is an
   * answer), each as "remote X (why)": empty when both answer.
   */
  async unanswered(record: VmMigrationEntity, ends: MigrationEnds): Promise<string[]> {
    const sides =
      record.sourceRemote === record.targetRemote
        ? [[record.targetRemote, ends.target] as const]
        : [
            [record.sourceRemote, ends.source] as const,
            [record.targetRemote, ends.target] as const,
          ];
    const missing: string[] = [];
    for (const [remote, connection] of sides) {
      const sighting = await this.sight(connection, record.vmId);
      if (sighting.kind === 'unknown') missing.push(`remote ${remote} (${sighting.reason})`);
    }
    return missing;
  }

  /** Where the VM is now, as each remote's agents answer (GetVm). */
  async locate(record: VmMigrationEntity, ends: MigrationEnds): Promise<Whereabouts> {
    const cross = record.sourceRemote !== record.targetRemote;
    const atTargetRemote = await this.sight(ends.target, record.vmId);
    const atSourceRemote = cross ? await this.sight(ends.source, record.vmId) : atTargetRemote;
    const atTarget =
      atTargetRemote.kind === 'vm' &&
      atTargetRemote.node === record.targetNode &&
      (!record.options.online || atTargetRemote.state === 'running');
    const text = cross
      ? `the VM is ${describe(record.sourceRemote, atSourceRemote)} and ${describe(record.targetRemote, atTargetRemote)}`
      : `the VM is ${describe(record.sourceRemote, atSourceRemote)}`;
    return { atTarget, text };
  }

  /**
   * Before a task moves its VM again (a DR task resumed after a restart, the VM still at the
   * source): the target's reservation of the move the restart interrupted is released, so that it
   * does not hold the VM until its one-time credential expires. Best effort, journalled.
   */
  async releaseInterrupted(context: TaskContext, record: VmMigrationEntity): Promise<void> {
    const active = this.track(context, record);
    try {
      active.ends = await this.ends(context.task, record);
      await this.journal(
        active,
        record.phase,
        `releasing the target's side of the move a manager restart interrupted (${record.phase})`,
      );
      await this.releaseTarget(active);
    } finally {
      this.release(record.taskId);
    }
  }

  /** Releases the target's reservation (best effort: an unclaimed one also expires with its cookie). */
  async releaseTarget(active: ActiveMigration): Promise<void> {
    const { record } = active;
    try {
      await this.agents.cancelMigration(active.ends!.target, {
        migrationId: record.taskId,
        vmUuid: record.vmId,
        nodeId: record.targetNode,
      });
    } catch (error) {
      await this.journal(
        active,
        active.phase,
        `could not release the target's side (${messageOf(error)}); an unclaimed reservation ends when its one-time credential expires`,
      );
    }
  }

  async finishRecord(active: ActiveMigration, phase: FinalPhase): Promise<void> {
    const now = this.clock.now();
    await this.repository.setPhase(active.record.taskId, phase, now, { finishedAt: now });
    active.phase = phase;
    const outcome = phase === 'completed' ? 'succeeded' : phase;
    this.metrics.observeMigration(
      outcome,
      Math.max(0, (now.getTime() - active.record.createdAt.getTime()) / 1000),
    );
  }

  async journal(active: ActiveMigration, phase: MigrationPhase, message: string): Promise<void> {
    await active.context.log(journalLine(phase, message));
  }

  async refreshCaches(record: VmMigrationEntity): Promise<void> {
    const remotes = new Set([record.sourceRemote, record.targetRemote]);
    await Promise.all([...remotes].map((remote) => this.resources.refreshRemote(remote)));
  }

  // --- the phases -------------------------------------------------------------------------------

  private async carryOut(active: ActiveMigration): Promise<void> {
    const { record } = active;
    const options = record.options;
    const plan: MigrationPlan = {
      vmId: record.vmId,
      sourceRemote: record.sourceRemote,
      targetRemote: record.targetRemote,
      targetNode: record.targetNode,
      options,
    };
    let where = 'nothing was changed';
    try {
      const ends = (active.ends = await this.ends(active.context.task, record));
      await this.journal(
        active,
        'preflight',
        `checking both ends: VM ${record.vmId} of remote ${record.sourceRemote} to node ${record.targetNode} of remote ${record.targetRemote} (${options.online ? 'live' : 'offline'}, ${options.transport}, ${options.mode})`,
      );
      const found = await this.preflight.run(plan, ends);
      record.sourceNode = found.sourceNode;
      await this.repository.setPhase(record.taskId, 'preflight', this.clock.now(), {
        sourceNode: found.sourceNode,
      });
      where = `the VM was not moved: it is still ${found.vm.runtime?.state || 'where it was'} on node ${found.sourceNode} of remote ${record.sourceRemote}`;
      for (const check of found.checks)
        if (check.result !== 'pass')
          await this.journal(
            active,
            'preflight',
            `${check.side} ${check.name}: ${check.result} — ${check.reason}`,
          );
      if (!found.ok)
        throw new DomainError(
          ErrorCode.Conflict,
          `pre-flight failed: ${failingChecks(found.checks)}`,
        );
      await this.journal(
        active,
        'preflight',
        `all ${found.checks.length} checks passed on node ${found.sourceNode} and node ${record.targetNode}`,
      );
      this.stopIfAsked(active);

      await this.enter(active, 'prepare');
      await this.journal(
        active,
        'prepare',
        `asking node ${record.targetNode} of remote ${record.targetRemote} to prepare the incoming side`,
      );
      const reservation = await this.agents.prepareMigration(
        ends.target,
        this.preflight.targetRequest(plan, ends, found, record.taskId, false),
      );
      if (!reservation.ok || !reservation.cookie) {
        const checks = reservation.checks.map((check) => checkView('target', check));
        throw new DomainError(
          ErrorCode.Conflict,
          `the target prepared nothing: ${failingChecks(checks) || 'it gave no reason'}`,
        );
      }
      await this.journal(
        active,
        'prepare',
        `node ${reservation.nodeId || record.targetNode} is ready to receive; its one-time credential expires at ${reservation.cookieExpiresAt || 'soon'}`,
      );
      this.stopIfAsked(active);

      await this.enter(active, 'transfer', { transferStartedAt: this.clock.now() });
      await this.journal(
        active,
        'transfer',
        `asking node ${found.sourceNode} of remote ${record.sourceRemote} to ${options.online ? 'migrate the running VM' : 'move the stopped VM'}`,
      );
      // The cookie lives only in this request object, which goes to the source agent and is then dropped.
      const request: MigrateVmRequest = {
        uuid: record.vmId,
        migrationId: record.taskId,
        targetEndpoint: reservation.endpoint,
        cookie: reservation.cookie,
        transport: options.transport,
        mode: options.mode,
        autoConverge: options.autoConverge,
        downtimeLimitMs: options.downtimeLimitMs,
        bandwidthLimitBytes: String(options.bandwidthLimitBytes),
        completionTimeoutSecondsPerGib: options.completionTimeoutSecondsPerGib,
        allowPostcopy: options.allowPostcopy,
        targetCaPem: reservation.caPem || ends.target.caCertPem,
        targetNodeId: reservation.nodeId || record.targetNode,
        offline: !options.online,
        targetDataEndpoint: reservation.dataEndpoint,
      };
      await this.transfer(active, request);
    } catch (error) {
      if (error instanceof TaskSuspended || active.settled) throw error;
      if (active.phase === 'transfer') {
        // Something went wrong on the manager's side during the transfer: the VM's whereabouts decide.
        this.logger.error(
          { task: record.taskId, err: error },
          'migration transfer interrupted unexpectedly',
        );
        return this.settle(active, undefined, messageOf(error));
      }
      // Before the transfer the VM was not touched: release what the target prepared, if anything.
      if (active.phase === 'prepare') await this.releaseTarget(active);
      const cancelled = error instanceof TaskCancelled;
      await this.finishRecord(active, cancelled ? 'cancelled' : 'failed');
      await this.journal(active, cancelled ? 'cancelled' : 'failed', where);
      if (cancelled) throw new TaskCancelled(`${error.message}; ${where}`);
      if (error instanceof DomainError)
        throw new DomainError(error.code, `${error.message}; ${where}`, { cause: error });
      this.logger.error({ task: record.taskId, err: error }, 'migration failed unexpectedly');
      throw new DomainError(
        ErrorCode.Internal,
        `failed unexpectedly (the manager log has the details); ${where}`,
      );
    }
  }

  /** The source's stream, into the task; its last word settles the migration. */
  private async transfer(active: ActiveMigration, request: MigrateVmRequest): Promise<void> {
    let last: MigrationProgress__Output | undefined;
    let failure: unknown;
    try {
      for await (const progress of this.agents.migrateVm(
        active.ends!.source,
        request,
        active.abort.signal,
      )) {
        last = progress;
        await this.observe(active, progress);
        if (isFinalPhase(progress.phase)) break;
      }
    } catch (error) {
      failure = error;
    }
    if (active.abort.signal.aborted) throw new TaskSuspended();
    if (last && isFinalPhase(last.phase)) return this.settle(active, last);
    const lost = failure ? messageOf(failure) : 'the stream ended without an outcome';
    await this.journal(
      active,
      'transfer',
      `lost the source's progress stream (${lost}); asking the source how the migration stands`,
    );
    return this.settle(active, await this.follow(active), lost);
  }

  /** One progress report: the stage into the journal when it changes, figures (throttled), a pending cancel asked again. */
  private async observe(
    active: ActiveMigration,
    progress: MigrationProgress__Output,
  ): Promise<void> {
    const now = this.clock.now();
    if (progress.phase !== active.lastStage) {
      active.lastStage = progress.phase;
      if (!isFinalPhase(progress.phase))
        await this.journal(active, 'transfer', describeStage(progress));
    }
    const figures = figuresOf(progress);
    if (
      isFinalPhase(progress.phase) ||
      now.getTime() - active.lastWrite >= PROGRESS_WRITE_INTERVAL_MS
    ) {
      active.lastWrite = now.getTime();
      // A second pass finds dirtied memory to send again: the pass counter (iteration) says so; the bar only moves on.
      active.fraction = Math.max(active.fraction, fractionOf(figures));
      await this.repository.setProgress(active.record.taskId, figures, active.fraction, now);
    }
    if (
      active.cancelledBy !== null &&
      !active.sourceCancelling &&
      now.getTime() - active.lastCancelAttempt >= CANCEL_RETRY_INTERVAL_MS
    ) {
      await this.askSourceToCancel(active, false);
    }
  }

  /** CancelMigration at the source. `strict`: a refusal (past the point of no return) is thrown as 409. */
  private async askSourceToCancel(active: ActiveMigration, strict: boolean): Promise<void> {
    const { record } = active;
    active.lastCancelAttempt = this.clock.now().getTime();
    try {
      // False: the source has not registered the migration yet (or it already ended): asked again on the next report.
      active.sourceCancelling = await this.agents.cancelMigration(active.ends!.source, {
        migrationId: record.taskId,
        vmUuid: record.vmId,
        nodeId: record.sourceNode ?? '',
      });
    } catch (error) {
      if (error instanceof DomainError && error.code === ErrorCode.Conflict) {
        active.cancelledBy = null;
        await this.journal(active, 'transfer', `the source refused to cancel: ${error.message}`);
        if (strict)
          throw new DomainError(
            ErrorCode.Conflict,
            `the migration can no longer be cancelled: ${error.message}`,
            { cause: error },
          );
        return;
      }
      await this.journal(
        active,
        'transfer',
        `could not ask the source to cancel (${messageOf(error)}); asking again`,
      );
    }
  }

  private async complete(active: ActiveMigration, summary: string): Promise<void> {
    const { record } = active;
    await this.journal(active, 'completed', summary);
    await this.refreshCaches(record);
    if (record.sourceRemote !== record.targetRemote) {
      const moved = await this.moveGrantsToComplete(active);
      if (moved > 0)
        await this.journal(
          active,
          'completed',
          `moved ${moved} ACL ${moved === 1 ? 'entry' : 'entries'} on the VM to /remotes/${record.targetRemote}/vms/${record.vmId}`,
        );
      await this.tellMoved(active);
    }
    await this.finishRecord(active, 'completed');
  }

  /**
   * The grants on the VM follow it as part of completing the move: the record is completed only
   * once they have moved. A failed write (the database away for a moment) is tried again with a
   * growing pause instead of failing a migration whose VM already runs at the target; at shutdown
   * the task stays as it is and the next start completes it again (moving is idempotent).
   */
  private async moveGrantsToComplete(active: ActiveMigration): Promise<number> {
    const { record } = active;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.moveGrants(record.vmId, record.sourceRemote, record.targetRemote);
      } catch (error) {
        if (active.abort.signal.aborted) throw new TaskSuspended();
        this.logger.error(
          { task: record.taskId, err: error },
          'cannot move the grants of a migrated VM yet',
        );
        const pauseMs = Math.min(GRANT_MOVE_MAX_PAUSE_MS, 500 * 2 ** attempt);
        await this.journal(
          active,
          'completed',
          `could not move the grants on the VM to its new remote yet (${messageOf(error)}); trying again in ${Math.round(pauseMs / 1000)} s`,
        ).catch(() => undefined);
        await this.timer.sleep(pauseMs, active.abort.signal);
        if (active.abort.signal.aborted) throw new TaskSuspended();
      }
    }
  }

  /** Other features hear that the VM changed remotes; what they did (or could not do) goes into the journal. */
  private async tellMoved(active: ActiveMigration): Promise<void> {
    const { record } = active;
    const outcomes = await this.events.emit({
      type: 'vm-moved',
      taskId: record.taskId,
      vmId: record.vmId,
      fromRemote: record.sourceRemote,
      toRemote: record.targetRemote,
      online: record.options.online,
    });
    for (const outcome of outcomes) {
      if (outcome.status === 'fulfilled') {
        if (outcome.value) await this.journal(active, 'completed', outcome.value);
      } else {
        this.logger.error(
          { task: record.taskId, err: outcome.reason },
          'a listener of the VM’s move failed',
        );
        await this.journal(
          active,
          'completed',
          `the VM moved, but recording it elsewhere failed: ${messageOf(outcome.reason)}`,
        );
      }
    }
  }

  /**
   * Grants on the VM follow it to its new remote (a migration, a DR failover); tenant ownership is
   * by VM id and follows by itself. Answers how many moved.
   */
  async moveGrants(vmId: string, fromRemote: string, toRemote: string): Promise<number> {
    const moved = await this.repository.moveVmGrants(vmId, fromRemote, toRemote);
    if (moved > 0) this.auth.invalidate();
    return moved;
  }

  private async enter(
    active: ActiveMigration,
    phase: MigrationPhase,
    facts: { transferStartedAt?: Date } = {},
  ): Promise<void> {
    await this.repository.setPhase(active.record.taskId, phase, this.clock.now(), facts);
    active.phase = phase;
  }

  /** Between steps before the transfer: a shutdown lets go, a cancel stops here. */
  private stopIfAsked(active: ActiveMigration): void {
    if (active.abort.signal.aborted) throw new TaskSuspended();
    if (active.cancelledBy !== null)
      throw new TaskCancelled(`cancelled by ${active.cancelledBy} before the transfer began`);
  }

  private async sight(connection: AgentConnection, vmId: string): Promise<Sighting> {
    try {
      const vm = await this.agents.getVm(connection, vmId);
      return {
        kind: 'vm',
        node: vm.runtime?.nodeId || 'unknown',
        state: vm.runtime?.state || 'unknown',
      };
    } catch (error) {
      if (error instanceof DomainError && error.code === ErrorCode.NotFound)
        return { kind: 'absent' };
      return { kind: 'unknown', reason: messageOf(error) };
    }
  }
}

function describe(remote: string, sighting: Sighting): string {
  switch (sighting.kind) {
    case 'vm':
      return `${sighting.state} on node ${sighting.node} of remote ${remote}`;
    case 'absent':
      return `not on remote ${remote}`;
    case 'unknown':
      return `of unknown state on remote ${remote} (${sighting.reason})`;
  }
}

function messageOf(error: unknown): string {
  return error instanceof DomainError ? error.message : 'an unexpected error (see the manager log)';
}

/** uint64 figures arrive as decimal strings; byte counts fit a double exactly up to 8 PiB. */
function num(value: string | number | undefined): number {
  const n = Number(value ?? 0);
  return Number.isFinite(n) ? n : 0;
}

function figuresOf(progress: MigrationProgress__Output): MigrationFigures {
  const final = isFinalPhase(progress.phase);
  return {
    stage: progress.phase,
    transferredBytes: num(progress.transferredBytes),
    remainingBytes: num(progress.remainingBytes),
    totalBytes: num(progress.totalBytes),
    dirtyRateBytes: num(progress.dirtyRateBytes),
    expectedDowntimeMs: progress.expectedDowntimeMs,
    etaSeconds: progress.etaSeconds,
    iteration: progress.iteration,
    downtimeMs: final && progress.downtimeMs > 0 ? progress.downtimeMs : null,
    totalTimeMs: final && progress.totalTimeMs > 0 ? progress.totalTimeMs : null,
    message: progress.message,
  };
}

/** The task's progress during the transfer: 5 % for the steps before, then memory sent of the total. */
function fractionOf(figures: MigrationFigures): number {
  if (figures.stage === 'completed') return 1;
  if (figures.totalBytes <= 0) return 0.05;
  const sent = Math.min(
    1,
    Math.max(0, (figures.totalBytes - figures.remainingBytes) / figures.totalBytes),
  );
  return 0.05 + 0.9 * sent;
}

function describeStage(progress: MigrationProgress__Output): string {
  const mib = (value: string) => `${(num(value) / 1024 ** 2).toFixed(1)} MiB`;
  const figures =
    num(progress.totalBytes) > 0
      ? ` (${mib(progress.transferredBytes)} sent, ${mib(progress.remainingBytes)} of ${mib(progress.totalBytes)} left)`
      : '';
  return `source: ${progress.phase}${progress.message ? ` — ${progress.message}` : ''}${figures}`;
}

function timing(final: MigrationProgress__Output): string {
  if (!final.totalTimeMs) return '';
  return ` (${final.totalTimeMs} ms in all, ${final.downtimeMs} ms of downtime)`;
}
