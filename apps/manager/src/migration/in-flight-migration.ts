import type { MigrateVmRequest, MigrationProgress__Output } from '@debvisor/proto';
import type { PinoLogger } from 'nestjs-pino';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import { preferEndpoint, type AgentConnection } from '../agents/agent-connection';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { MetricsService } from '../health/metrics.service';
import type { ResourcesService } from '../resources/resources.service';
import { TaskCancelled } from '../tasks/task-cancelled';
import { TaskSuspended } from '../tasks/task-suspended';
import type { TaskContext } from '../tasks/tasks.service';
import type { MigrationFigures } from '../task-details/migration-details.dto';
import type { MigrationEvents } from './migration-events';
import {
  isFinalPhase,
  journalLine,
  type FinalPhase,
  type MigrationPhase,
} from './migration-journal';
import type { MigrationEnds } from './migration-preflight.service';
import { MigrationTimeline } from './migration-timeline';
import type { MigrationTimerRepository } from './migration-timer.repository';
import type { VmMigrationEntity } from './migration.entity';
import type { MigrationRepository } from './migration.repository';

/** Figures are written at most this often (about twice a second), and always at the end. */
const PROGRESS_WRITE_INTERVAL_MS = 500;
/** A cancel the source did not take yet (it had not registered the migration) is asked again this often. */
const CANCEL_RETRY_INTERVAL_MS = 1000;
/** Following a migration without its stream: GetMigration this often … */
const FOLLOW_INTERVAL_MS = 1000;
/** … and giving up on an unreachable source after this many failed polls in a row. */
const FOLLOW_MAX_UNREACHABLE = 15;
/** The longest pause between tries to move a migrated VM's grants. */
const GRANT_MOVE_MAX_PAUSE_MS = 30_000;
/** How often the recovery asks again whether both ends answer. */
export const RECOVERY_POLL_MS = 2000;

/** Moves the ACL entries on a VM to its new remote (the acl feature owns them); answers how many moved. */
export type MoveVmGrants = (vmId: string, fromRemote: string, toRemote: string) => Promise<number>;

/** What an in-flight migration uses; InFlightMigrations hands the same to each. */
export interface InFlightDeps {
  readonly repository: MigrationRepository;
  readonly agents: AgentClientRepository;
  readonly resources: ResourcesService;
  readonly metrics: MetricsService;
  readonly clock: ClockRepository;
  readonly timer: MigrationTimerRepository;
  readonly logger: PinoLogger;
  readonly events: MigrationEvents;
  readonly moveGrants: MoveVmGrants;
}

type Sighting =
  | { kind: 'vm'; node: string; state: string }
  | { kind: 'absent' }
  | { kind: 'unknown'; reason: string };

/** Where the VM is, as the agents answered. */
export interface Whereabouts {
  /** It runs (live migration) or is defined (offline) on the target node. */
  readonly atTarget: boolean;
  /** One sentence, for the task's error and journal. */
  readonly text: string;
}

/**
 * One migration this process carries out or settles, and the only holder of its state: the phase
 * reached, who asked to cancel, what the source said, what was last written, whether the outcome is
 * decided. The runner drives its phases, the recovery settles it after a restart; both act through
 * these methods, never on its fields. Created and tracked by InFlightMigrations (cancel and
 * shutdown find it there).
 */
export class InFlightMigration {
  private readonly abort = new AbortController();
  /** Aborted by a cancel request or a shutdown: waits before the transfer end at once. */
  private readonly stop = new AbortController();
  private currentPhase: MigrationPhase;
  /** Who asked to cancel (null: nobody). */
  private cancelledBy: string | null = null;
  /** The source said it is stopping the migration. */
  private sourceCancelling = false;
  private lastCancelAttempt = 0;
  private lastWrite = 0;
  private lastStage: string;
  /** The task's progress as last written: it never goes back (a later pre-copy pass resends dirtied memory). */
  private fraction: number;
  /** The outcome was decided and recorded: errors from here on are final. */
  private settled = false;

  private connected: MigrationEnds | undefined;
  /** When each step happened (logged once the work on the migration ends). */
  readonly timeline = new MigrationTimeline();
  /** The journal's lines still being written, in order. */
  private journalTail: Promise<void> = Promise.resolve();
  /** The phases still being recorded, in order (see enter). */
  private phaseTail: Promise<void> = Promise.resolve();
  /** The figures still being written, in order (see observe); a failure is logged. */
  private figuresTail: Promise<void> = Promise.resolve();
  /** The source's stream being closed behind its last word (its audit record is written then). */
  private streamClosed: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: InFlightDeps,
    private readonly context: TaskContext,
    readonly record: VmMigrationEntity,
    private readonly connectEnds: () => Promise<MigrationEnds>,
  ) {
    this.currentPhase = record.phase;
    this.lastStage = record.progress?.stage ?? '';
    this.fraction = context.task.progress ?? 0;
  }

  /** Connects to both ends with the credentials the task was accepted with (403: one may not migrate). */
  async connect(): Promise<MigrationEnds> {
    this.connected ??= await this.connectEnds();
    return this.connected;
  }

  /**
   * Once the source node is known: each end's connection tries its node's own agent endpoint first
   * (from the resource cache, when it is one of the remote's endpoints), so that calls reach the
   * node without a forwarding hop through another agent. Answers the connections to use.
   */
  aim(sourceNode: string): MigrationEnds {
    const { record, ends } = this;
    const endpointOf = (remote: string, node: string) =>
      this.deps.resources.cachedAgentEndpoint(remote, node);
    this.connected = {
      source: preferEndpoint(ends.source, endpointOf(record.sourceRemote, sourceNode)),
      target: preferEndpoint(ends.target, endpointOf(record.targetRemote, record.targetNode)),
    };
    return this.connected;
  }

  /** The connections to both ends (after connect). */
  get ends(): MigrationEnds {
    if (!this.connected)
      throw new DomainError(ErrorCode.Internal, 'the migration is not connected to its ends');
    return this.connected;
  }

  get phase(): MigrationPhase {
    return this.currentPhase;
  }

  /** Aborts at shutdown: agent streams and waits end at once. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Aborts at a cancel request or a shutdown (a wait before the transfer then ends at once). */
  get stopSignal(): AbortSignal {
    return this.stop.signal;
  }

  /**
   * One line into the task's journal. Lines are written in order behind the migration, which does
   * not wait for them (each is a database write, and the steps between the agents' calls are what
   * a migration's orchestration costs); the work on the migration ends only once all are written
   * (InFlightMigrations.carry). A line that cannot be written goes to the log instead.
   */
  journal(phase: MigrationPhase, message: string): Promise<void> {
    const line = journalLine(phase, message);
    this.journalTail = this.journalTail
      .then(() => this.context.log(line))
      .catch((error: unknown) =>
        this.deps.logger.error(
          { task: this.record.taskId, err: error, line },
          'cannot write a line of the migration journal',
        ),
      );
    return Promise.resolve();
  }

  /** Resolves once what goes on behind the migration is done: its journal lines, the source's stream closed. */
  async behind(): Promise<void> {
    await Promise.all([this.journalTail, this.streamClosed]);
  }

  /** Logs the timeline (when the work on the migration ends). */
  logTimeline(): void {
    this.timeline.log(this.deps.logger, { migrationId: this.record.taskId, role: 'manager' });
  }

  /**
   * The next phase, recorded with what became known on the way (entering the transfer: when it
   * began). The migration is in the phase at once; the records are written in order, and the
   * answer settles once this one is written, so that a step can go on while it is written and wait
   * for it where the record must hold it first (the transfer: a restart follows it at the source).
   */
  enter(phase: MigrationPhase, facts: { sourceNode?: string } = {}): Promise<void> {
    const now = this.deps.clock.now();
    if (facts.sourceNode !== undefined) this.record.sourceNode = facts.sourceNode;
    this.currentPhase = phase;
    return this.recordPhase(() =>
      this.deps.repository.setPhase(
        this.record.taskId,
        phase,
        now,
        phase === 'transfer' ? { ...facts, transferStartedAt: now } : facts,
      ),
    );
  }

  /** A phase write behind those before it (a failed one fails its own caller only). */
  private recordPhase(write: () => Promise<void>): Promise<void> {
    const written = this.phaseTail.then(write);
    this.phaseTail = written.catch(() => undefined);
    return written;
  }

  /** Between steps before the transfer: a shutdown lets go, a cancel stops here. */
  checkpoint(): void {
    if (this.abort.signal.aborted) throw new TaskSuspended();
    if (this.cancelledBy !== null)
      throw new TaskCancelled(`cancelled by ${this.cancelledBy} before the transfer began`);
  }

  /** At shutdown: let go (the task stays running; the next start settles it). */
  suspend(): void {
    this.abort.abort();
    this.stop.abort();
  }

  /**
   * Asks the migration to stop. Before the transfer it stops at the next checkpoint; during it the
   * source is asked (CancelMigration) and the migration ends when the source says how it ended. 409
   * once the outcome is being recorded, or when the source is past the point of no return.
   */
  async cancel(by: string): Promise<void> {
    if (this.settled)
      throw new DomainError(
        ErrorCode.Conflict,
        `migration ${this.record.taskId} is ending (${this.currentPhase}); it can no longer be cancelled`,
      );
    if (this.cancelledBy !== null) return;
    this.cancelledBy = by;
    if (this.currentPhase !== 'transfer') this.stop.abort();
    await this.journal(this.currentPhase, `cancel requested by ${by}`);
    if (this.currentPhase === 'transfer') await this.askSourceToCancel(true);
  }

  /**
   * A step failed (or was cancelled). Before the transfer the VM was not touched: what the target
   * prepared is released, the record ends failed or cancelled, and the error says where the VM is.
   * During the transfer (something went wrong on the manager's side) the VM's whereabouts decide.
   */
  async fail(error: unknown, where: string): Promise<void> {
    if (error instanceof TaskSuspended || this.settled) throw error;
    const { record } = this;
    if (this.currentPhase === 'transfer') {
      this.deps.logger.error(
        { task: record.taskId, err: error },
        'migration transfer interrupted unexpectedly',
      );
      return this.settle(undefined, messageOf(error));
    }
    if (this.currentPhase === 'prepare') await this.releaseTarget();
    const cancelled = error instanceof TaskCancelled;
    await this.finishRecord(cancelled ? 'cancelled' : 'failed');
    await this.journal(cancelled ? 'cancelled' : 'failed', where);
    if (cancelled) throw new TaskCancelled(`${error.message}; ${where}`);
    if (error instanceof DomainError)
      throw new DomainError(error.code, `${error.message}; ${where}`, { cause: error });
    this.deps.logger.error({ task: record.taskId, err: error }, 'migration failed unexpectedly');
    throw new DomainError(
      ErrorCode.Internal,
      `failed unexpectedly (the manager log has the details); ${where}`,
    );
  }

  /** The source's stream, into the task; its last word settles the migration. */
  async transfer(request: MigrateVmRequest): Promise<void> {
    let last: MigrationProgress__Output | undefined;
    let failure: unknown;
    this.timeline.mark('manager: MigrateVm');
    const updates = this.deps.agents.migrateVm(this.ends.source, request, this.abort.signal);
    const stream = updates[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await stream.next();
        if (next.done) break;
        const progress = next.value;
        if (progress.phase !== last?.phase)
          this.timeline.mark(`manager: source says ${progress.phase}`);
        last = progress;
        await this.observe(progress);
        if (isFinalPhase(progress.phase)) {
          // The outcome is settled while the stream closes (and its audit record is written).
          this.streamClosed = Promise.resolve(stream.return?.(undefined)).then(
            () => undefined,
            () => undefined,
          );
          break;
        }
      }
    } catch (error) {
      failure = error;
    }
    if (this.abort.signal.aborted) throw new TaskSuspended();
    if (last && isFinalPhase(last.phase)) return this.settle(last);
    const lost = failure ? messageOf(failure) : 'the stream ended without an outcome';
    await this.journal(
      'transfer',
      `lost the source's progress stream (${lost}); asking the source how the migration stands`,
    );
    return this.settle(await this.follow(), lost);
  }

  /** After a restart during the transfer: the source is asked, and followed to the end. */
  async followToEnd(lost: string): Promise<void> {
    return this.settle(await this.follow(), lost);
  }

  /**
   * After a restart before the transfer began: nothing moved. The target's reservation (made once
   * the phase turned to prepare) is released and the task fails, saying where the VM is.
   */
  async endBeforeTransfer(): Promise<never> {
    const { record } = this;
    if (record.phase === 'prepare') await this.releaseTarget();
    const where = await this.locate();
    this.settled = true;
    await this.finishRecord('failed');
    const message = `the manager restarted before the transfer began; ${where.text}`;
    await this.journal('failed', message);
    await this.refreshCaches();
    throw new DomainError(ErrorCode.Conflict, message);
  }

  /** After a restart with the outcome already recorded: the task ends with it. */
  async endAsRecorded(): Promise<void> {
    const { record } = this;
    const where = await this.locate();
    this.settled = true;
    await this.journal(
      record.phase,
      `the manager restarted after the outcome was recorded; ${where.text}`,
    );
    if (record.phase === 'completed') return;
    if (record.phase === 'cancelled')
      throw new TaskCancelled(`the migration was cancelled; ${where.text}`);
    throw new DomainError(ErrorCode.RemoteError, `the migration had failed; ${where.text}`);
  }

  /**
   * Waits, at most `budgetSeconds`, until both ends answer about the VM (after a restart of a whole
   * site the agents may come back after the manager); the journal says for what and how it ended.
   */
  async awaitBothEnds(budgetSeconds: number): Promise<void> {
    const { phase } = this.record;
    let missing = await this.unanswered();
    if (missing.length === 0) return;
    const { clock, timer } = this.deps;
    const started = clock.now().getTime();
    await this.journal(
      phase,
      `waiting up to ${budgetSeconds} s for ${missing.join(' and ')} to answer before deciding`,
    );
    while (missing.length > 0 && clock.now().getTime() - started < budgetSeconds * 1000) {
      await timer.sleep(RECOVERY_POLL_MS, this.abort.signal);
      if (this.abort.signal.aborted) throw new TaskSuspended();
      missing = await this.unanswered();
    }
    const waited = Math.round((clock.now().getTime() - started) / 1000);
    await this.journal(
      phase,
      missing.length === 0
        ? `both ends answer after ${waited} s; deciding`
        : `${missing.join(' and ')} still ${missing.length === 1 ? 'does' : 'do'} not answer after ${waited} s; deciding with what is known`,
    );
  }

  /** Releases the target's reservation (best effort: an unclaimed one also expires with its cookie). */
  async releaseTarget(): Promise<void> {
    const { record } = this;
    try {
      await this.deps.agents.cancelMigration(this.ends.target, {
        migrationId: record.taskId,
        vmUuid: record.vmId,
        nodeId: record.targetNode,
      });
    } catch (error) {
      await this.journal(
        this.currentPhase,
        `could not release the target's side (${messageOf(error)}); an unclaimed reservation ends when its one-time credential expires`,
      );
    }
  }

  // --- settling ----------------------------------------------------------------------------------

  /**
   * Without the stream (it broke, or the manager restarted): GetMigration at the source until it
   * reports an outcome. Undefined when the source cannot say (it no longer knows the migration, or
   * stays unreachable): the VM's whereabouts then decide.
   */
  private async follow(): Promise<MigrationProgress__Output | undefined> {
    const { record } = this;
    const ref = {
      migrationId: record.taskId,
      vmUuid: record.vmId,
      nodeId: record.sourceNode ?? '',
    };
    let unreachable = 0;
    for (;;) {
      if (this.abort.signal.aborted) throw new TaskSuspended();
      try {
        const progress = await this.deps.agents.getMigration(this.ends.source, ref);
        unreachable = 0;
        await this.observe(progress);
        if (isFinalPhase(progress.phase)) return progress;
      } catch (error) {
        if (!(error instanceof DomainError)) throw error;
        const transient =
          error.code === ErrorCode.RemoteUnreachable || error.code === ErrorCode.RemoteTlsFailed;
        if (!transient || ++unreachable >= FOLLOW_MAX_UNREACHABLE) {
          await this.journal(
            'transfer',
            `the source cannot say how the migration ended (${error.message}); deciding by where the VM is`,
          );
          return undefined;
        }
      }
      await this.deps.timer.sleep(FOLLOW_INTERVAL_MS, this.abort.signal);
    }
  }

  /**
   * Decides and records the outcome from the source's last word (`final`; undefined: it could not
   * say, so the VM's whereabouts decide). Completed: caches refreshed, grants moved. Otherwise the
   * target's side is released and the error (or cancellation) states where the VM is.
   */
  private async settle(final: MigrationProgress__Output | undefined, lost?: string): Promise<void> {
    this.settled = true;
    const { record } = this;
    if (final?.phase === 'completed')
      return this.complete(
        `the VM runs on node ${record.targetNode} of remote ${record.targetRemote}${timing(final)}`,
      );
    const where = await this.locate();
    if (!final && where.atTarget)
      return this.complete(
        `the source could not say how the migration ended; found: ${where.text}`,
      );
    await this.releaseTarget();
    await this.refreshCaches();
    const phase: FinalPhase = final?.phase === 'cancelled' ? 'cancelled' : 'failed';
    await this.finishRecord(phase);
    await this.journal(phase, where.text);
    const reason = final
      ? final.message ||
        (phase === 'cancelled' ? 'the source stopped the migration' : 'the migration failed')
      : `the outcome could not be learned from the source (${lost ?? 'no answer'})`;
    const message = `${reason} — checked: ${where.text}`;
    if (phase === 'cancelled')
      throw new TaskCancelled(
        this.cancelledBy ? `cancelled by ${this.cancelledBy}: ${message}` : message,
      );
    throw new DomainError(ErrorCode.RemoteError, message);
  }

  private async complete(summary: string): Promise<void> {
    const { record } = this;
    await this.journal('completed', summary);
    this.timeline.mark('manager: completing');
    // Within one remote only the VM's node changed: the cache shows it there at once (its full
    // record follows in the background, one GetVm at the node). The figures are written meanwhile.
    if (record.sourceRemote === record.targetRemote)
      this.deps.resources.vmMoved(
        record.targetRemote,
        record.vmId,
        record.targetNode,
        record.options.online ? 'running' : 'stopped',
      );
    await Promise.all([
      record.sourceRemote === record.targetRemote ? undefined : this.refreshCaches(),
      this.figuresTail,
    ]);
    if (record.sourceRemote !== record.targetRemote) {
      const moved = await this.moveGrantsToComplete();
      if (moved > 0)
        await this.journal(
          'completed',
          `moved ${moved} ACL ${moved === 1 ? 'entry' : 'entries'} on the VM to /remotes/${record.targetRemote}/vms/${record.vmId}`,
        );
      await this.tellMoved();
    }
    this.timeline.mark('manager: caches refreshed');
    await this.finishRecord('completed');
    this.timeline.mark('manager: record completed');
  }

  /**
   * The grants on the VM follow it as part of completing the move: the record is completed only
   * once they have moved. A failed write (the database away for a moment) is tried again with a
   * growing pause instead of failing a migration whose VM already runs at the target; at shutdown
   * the task stays as it is and the next start completes it again (moving is idempotent).
   */
  private async moveGrantsToComplete(): Promise<number> {
    const { record } = this;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.deps.moveGrants(record.vmId, record.sourceRemote, record.targetRemote);
      } catch (error) {
        if (this.abort.signal.aborted) throw new TaskSuspended();
        this.deps.logger.error(
          { task: record.taskId, err: error },
          'cannot move the grants of a migrated VM yet',
        );
        const pauseMs = Math.min(GRANT_MOVE_MAX_PAUSE_MS, 500 * 2 ** attempt);
        await this.journal(
          'completed',
          `could not move the grants on the VM to its new remote yet (${messageOf(error)}); trying again in ${Math.round(pauseMs / 1000)} s`,
        ).catch(() => undefined);
        await this.deps.timer.sleep(pauseMs, this.abort.signal);
        if (this.abort.signal.aborted) throw new TaskSuspended();
      }
    }
  }

  /** Other features hear that the VM changed remotes; what they did (or could not do) goes into the journal. */
  private async tellMoved(): Promise<void> {
    const { record } = this;
    const outcomes = await this.deps.events.emit({
      type: 'vm-moved',
      taskId: record.taskId,
      vmId: record.vmId,
      fromRemote: record.sourceRemote,
      toRemote: record.targetRemote,
      online: record.options.online,
    });
    for (const outcome of outcomes) {
      if (outcome.status === 'fulfilled') {
        if (outcome.value) await this.journal('completed', outcome.value);
      } else {
        this.deps.logger.error(
          { task: record.taskId, err: outcome.reason },
          'a listener of the VM’s move failed',
        );
        await this.journal(
          'completed',
          `the VM moved, but recording it elsewhere failed: ${messageOf(outcome.reason)}`,
        );
      }
    }
  }

  private async finishRecord(phase: FinalPhase): Promise<void> {
    await this.figuresTail;
    const now = this.deps.clock.now();
    await this.recordPhase(() =>
      this.deps.repository.setPhase(this.record.taskId, phase, now, { finishedAt: now }),
    );
    this.currentPhase = phase;
    const outcome = phase === 'completed' ? 'succeeded' : phase;
    this.deps.metrics.observeMigration(
      outcome,
      Math.max(0, (now.getTime() - this.record.createdAt.getTime()) / 1000),
    );
  }

  private async refreshCaches(): Promise<void> {
    const remotes = new Set([this.record.sourceRemote, this.record.targetRemote]);
    await Promise.all([...remotes].map((remote) => this.deps.resources.refreshRemote(remote)));
  }

  // --- progress and cancel -----------------------------------------------------------------------

  /** One progress report: the stage into the journal when it changes, figures (throttled), a pending cancel asked again. */
  private async observe(progress: MigrationProgress__Output): Promise<void> {
    const now = this.deps.clock.now();
    if (progress.phase !== this.lastStage) {
      this.lastStage = progress.phase;
      if (!isFinalPhase(progress.phase)) await this.journal('transfer', describeStage(progress));
    }
    const figures = figuresOf(progress);
    if (
      isFinalPhase(progress.phase) ||
      now.getTime() - this.lastWrite >= PROGRESS_WRITE_INTERVAL_MS
    ) {
      this.lastWrite = now.getTime();
      // A second pass finds dirtied memory to send again: the pass counter (iteration) says so; the bar only moves on.
      this.fraction = Math.max(this.fraction, fractionOf(figures));
      // Written in order behind the stream, which is read on meanwhile; settling waits for them.
      const fraction = this.fraction;
      this.figuresTail = this.figuresTail
        .then(async () => {
          await this.deps.repository.setProgress(this.record.taskId, figures, now);
          await this.context.progress(fraction);
        })
        .catch((error: unknown) =>
          this.deps.logger.error(
            { task: this.record.taskId, err: error },
            "cannot write a migration's figures",
          ),
        );
    }
    if (
      this.cancelledBy !== null &&
      !this.sourceCancelling &&
      now.getTime() - this.lastCancelAttempt >= CANCEL_RETRY_INTERVAL_MS
    ) {
      await this.askSourceToCancel(false);
    }
  }

  /** CancelMigration at the source. `strict`: a refusal (past the point of no return) is thrown as 409. */
  private async askSourceToCancel(strict: boolean): Promise<void> {
    const { record } = this;
    this.lastCancelAttempt = this.deps.clock.now().getTime();
    try {
      // False: the source has not registered the migration yet (or it already ended): asked again on the next report.
      this.sourceCancelling = await this.deps.agents.cancelMigration(this.ends.source, {
        migrationId: record.taskId,
        vmUuid: record.vmId,
        nodeId: record.sourceNode ?? '',
      });
    } catch (error) {
      if (error instanceof DomainError && error.code === ErrorCode.Conflict) {
        this.cancelledBy = null;
        await this.journal('transfer', `the source refused to cancel: ${error.message}`);
        if (strict)
          throw new DomainError(
            ErrorCode.Conflict,
            `the migration can no longer be cancelled: ${error.message}`,
            { cause: error },
          );
        return;
      }
      await this.journal(
        'transfer',
        `could not ask the source to cancel (${messageOf(error)}); asking again`,
      );
    }
  }

  // --- where the VM is ---------------------------------------------------------------------------

  /** Where the VM is now, as each remote's agents answer (GetVm). */
  private async locate(): Promise<Whereabouts> {
    const { record, ends } = this;
    const cross = record.sourceRemote !== record.targetRemote;
    const atTargetRemote = await this.sight(ends.target);
    const atSourceRemote = cross ? await this.sight(ends.source) : atTargetRemote;
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
   * The ends that do not answer about the VM now (GetVm on each remote: a VM or "not here" is an
   * answer), each as "remote X (why)": empty when both answer.
   */
  private async unanswered(): Promise<string[]> {
    const { record, ends } = this;
    const sides =
      record.sourceRemote === record.targetRemote
        ? [[record.targetRemote, ends.target] as const]
        : [
            [record.sourceRemote, ends.source] as const,
            [record.targetRemote, ends.target] as const,
          ];
    const missing: string[] = [];
    for (const [remote, connection] of sides) {
      const sighting = await this.sight(connection);
      if (sighting.kind === 'unknown') missing.push(`remote ${remote} (${sighting.reason})`);
    }
    return missing;
  }

  private async sight(connection: AgentConnection): Promise<Sighting> {
    try {
      const vm = await this.deps.agents.getVm(connection, this.record.vmId);
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

export function messageOf(error: unknown): string {
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
