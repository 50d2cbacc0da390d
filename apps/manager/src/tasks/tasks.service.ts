import { BeforeApplicationShutdown, Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../auth/access-policy.service';
import type { Caller } from '../auth/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { RandomRepository } from '../common/random.repository';
import { currentTraceId, runInBackground } from '../common/trace-context';
import { newTraceId } from '../common/trace-id';
import { MetricsService } from '../health/metrics.service';
import type { TaskEntity } from './task.entity';
import type { TaskQuery, TaskView } from './tasks.dto';
import { TasksRepository } from './tasks.repository';

/** What a running task can report. */
export interface TaskContext {
  readonly task: Readonly<TaskEntity>;
  log(message: string): Promise<void>;
  progress(fraction: number): Promise<void>;
}

export interface TaskHandler {
  /** Carries the task out; a thrown DomainError's message becomes the task's error. */
  run(context: TaskContext): Promise<void>;
  /** Called (in the background) for a task of this type that a previous manager process left unfinished. */
  afterInterrupted?(task: Readonly<TaskEntity>): void;
}

export interface NewTask {
  type: string;
  remoteId: string | null;
  vmId: string | null;
  owner: string;
  /** The remote credential to act with (from a remote group); null or absent: the remote's default. */
  credentialId?: string | null;
}

/** How many tasks this manager carries out at once; the rest wait queued. */
const CONCURRENCY = 8;
/** On shutdown, how long running tasks may take to finish before the process goes on stopping. */
const SHUTDOWN_GRACE_MS = 10_000;

/**
 * Persisted tasks and the in-process worker that carries them out. A task is stored queued before
 * the request is answered (202), run by the handler of its type, and ends succeeded or failed with
 * its log. Tasks a previous process left unfinished are failed at start-up (recoverInterrupted).
 */
@Injectable()
export class TasksService implements BeforeApplicationShutdown {
  private readonly handlers = new Map<string, TaskHandler>();
  private readonly queue: string[] = [];
  private readonly running = new Map<string, Promise<void>>();
  /** The trace id of each queued task: the request's that enqueued it, so that one id follows it to the agents. */
  private readonly traceIds = new Map<string, string>();
  private accepting = true;

  constructor(
    private readonly tasks: TasksRepository,
    private readonly auth: AccessPolicy,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    private readonly metrics: MetricsService,
    private readonly logger: PinoLogger,
    private readonly audit: AuditService,
  ) {
    logger.setContext(TasksService.name);
  }

  registerHandler(type: string, handler: TaskHandler): void {
    if (this.handlers.has(type)) throw new Error(`a task handler for ${type} is registered twice`);
    this.handlers.set(type, handler);
    this.metrics.registerTaskType(type);
  }

  /** Stores the task as queued and schedules it; answers its id. */
  async enqueue(input: NewTask): Promise<{ taskId: string }> {
    if (!this.handlers.has(input.type)) throw new Error(`no task handler for ${input.type}`);
    if (!this.accepting) throw new DomainError(ErrorCode.NotReady, 'the manager is shutting down; try again shortly');
    const now = this.clock.now();
    const id = this.random.uuid();
    await this.tasks.insert({
      id,
      type: input.type,
      state: 'queued',
      remoteId: input.remoteId,
      vmId: input.vmId,
      credentialId: input.credentialId ?? null,
      owner: input.owner,
      progress: 0,
      log: [{ at: now.toISOString(), message: `queued by ${input.owner}` }],
      error: null,
      createdAt: now,
      startedAt: null,
      finishedAt: null,
      updatedAt: now,
    });
    this.traceIds.set(id, currentTraceId() ?? newTraceId());
    this.queue.push(id);
    this.pump();
    return { taskId: id };
  }

  async get(caller: Caller, id: string): Promise<TaskView> {
    const task = await this.tasks.get(id);
    if (!task || !this.maySee(caller, task)) throw DomainError.notFound(`task ${id}`);
    return toView(task);
  }

  async list(caller: Caller, query: TaskQuery): Promise<{ items: TaskView[]; total: number; limit: number; offset: number }> {
    const remotes = this.auth.remoteScope(caller, 'task.audit');
    const vms = remotes === 'all' ? undefined : this.auth.vmScope(caller, 'task.audit');
    const { items, total } = await this.tasks.list({ ...query, remotes, vms });
    return { items: items.map(toView), total, limit: query.limit, offset: query.offset };
  }

  /**
   * At start-up, before new tasks run: every task a previous process left queued or running is
   * failed with a log line saying so, and its handler may look at the outcome (refresh the VM).
   */
  async recoverInterrupted(): Promise<number> {
    const interrupted = await this.tasks.failUnfinished(
      (state) =>
        state === 'running'
          ? 'the manager restarted while this task was running; its outcome is unknown (the VM state was re-read)'
          : 'the manager restarted before this task started; it was not carried out',
      this.clock.now(),
    );
    for (const task of interrupted) {
      this.logger.warn({ task: task.id, type: task.type, state: task.state }, 'task failed: interrupted by a manager restart');
      this.metrics.observeTask(task.type, 'interrupted', undefined);
      await this.audit.taskFinished({ ...task, state: 'failed', error: 'interrupted by a manager restart' });
      try {
        this.handlers.get(task.type)?.afterInterrupted?.(task);
      } catch (error) {
        this.logger.error({ task: task.id, err: error }, 'after-restart handling failed');
      }
    }
    return interrupted.length;
  }

  /** Stops taking tasks and gives running ones a grace period to finish. */
  async beforeApplicationShutdown(): Promise<void> {
    this.accepting = false;
    this.queue.length = 0;
    this.traceIds.clear();
    const all = Promise.allSettled([...this.running.values()]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)))]);
    clearTimeout(timer);
  }

  /** Resolves when no task is running or queued (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running.size > 0 || this.queue.length > 0) await Promise.allSettled([...this.running.values()]);
  }

  private pump(): void {
    while (this.accepting && this.running.size < CONCURRENCY && this.queue.length > 0) {
      const id = this.queue.shift()!;
      const traceId = this.traceIds.get(id);
      this.traceIds.delete(id);
      // Detached from whichever request or task happens to call pump(), under the task's own trace id.
      const run = runInBackground(() => this.execute(id), traceId).finally(() => {
        this.running.delete(id);
        this.pump();
      });
      this.running.set(id, run);
    }
    this.metrics.setTaskQueue(this.queue.length, this.running.size);
  }

  private async execute(id: string): Promise<void> {
    try {
      const startedAt = this.clock.now();
      if (!(await this.tasks.markRunning(id, startedAt))) return;
      const task = (await this.tasks.get(id))!;
      const seconds = () => (this.clock.now().getTime() - startedAt.getTime()) / 1000;
      const handler = this.handlers.get(task.type)!;
      const context: TaskContext = {
        task,
        log: (message) => this.tasks.appendLog(id, { at: this.clock.now().toISOString(), message }),
        progress: (fraction) => this.tasks.setProgress(id, Math.min(1, Math.max(0, fraction)), this.clock.now()),
      };
      try {
        await handler.run(context);
        await context.log('succeeded');
        await this.tasks.finish(id, { state: 'succeeded', error: null, progress: 1 }, this.clock.now());
        await this.audit.taskFinished({ ...task, state: 'succeeded', error: null });
        this.metrics.observeTask(task.type, 'succeeded', seconds());
        this.logger.info({ task: id, type: task.type }, 'task succeeded');
      } catch (error) {
        const message = error instanceof DomainError ? error.message : 'failed unexpectedly; the manager log has the details';
        if (!(error instanceof DomainError)) this.logger.error({ task: id, err: error }, 'task failed unexpectedly');
        await context.log(`failed: ${message}`);
        await this.tasks.finish(id, { state: 'failed', error: message }, this.clock.now());
        await this.audit.taskFinished({ ...task, state: 'failed', error: message });
        this.metrics.observeTask(task.type, 'failed', seconds());
        this.logger.info({ task: id, type: task.type, error: message }, 'task failed');
      }
    } catch (error) {
      // The database went away mid-task: the next start fails the task as interrupted.
      this.logger.error({ task: id, err: error }, 'cannot record the progress of a task');
    }
  }

  /** Tasks are seen with task.audit on their VM, else their remote (on `/` for tasks without one). */
  private maySee(caller: Caller, task: TaskEntity): boolean {
    const remote = task.remoteId === null ? '/' : `/remotes/${encodeURIComponent(task.remoteId)}`;
    const path = task.remoteId !== null && task.vmId !== null ? `${remote}/vms/${encodeURIComponent(task.vmId)}` : remote;
    return this.auth.holds(caller, 'task.audit', path);
  }
}

function toView(task: TaskEntity): TaskView {
  return {
    id: task.id,
    type: task.type,
    state: task.state,
    target: { remote: task.remoteId, vm: task.vmId },
    owner: task.owner,
    progress: task.progress,
    log: task.log,
    error: task.error,
    createdAt: task.createdAt.toISOString(),
    startedAt: task.startedAt?.toISOString() ?? null,
    finishedAt: task.finishedAt?.toISOString() ?? null,
    updatedAt: task.updatedAt.toISOString(),
  };
}
