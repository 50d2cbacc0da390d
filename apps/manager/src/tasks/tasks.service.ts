import { BeforeApplicationShutdown, Injectable, OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { remoteAclPath, vmAclPath } from '../authz/acl-paths';
import type { Caller } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError, PermissionDenied } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { RandomRepository } from '../common/random.repository';
import { currentTraceId, runInBackground } from '../common/trace-context';
import { newTraceId } from '../common/trace-id';
import { MetricsService } from '../health/metrics.service';
import { ResourcesService } from '../resources/resources.service';
import { SchedulerService } from '../scheduler/scheduler.service';
import type { TaskEntity } from './task.entity';
import { TaskCancelled } from './task-cancelled';
import { TaskSuspended } from './task-suspended';
import type { TaskDetails, TaskQuery, TaskView } from './tasks.dto';
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
  /**
   * Tasks of this type are the only operation on their VM: one is refused (409) while the VM has any
   * queued or running task, and any task of the VM is refused while one of them is queued or running.
   */
  readonly exclusive?: boolean;
  /**
   * Tasks of this type follow work done elsewhere (the cluster's HA events) and only write their
   * journal: they start at once and hold none of the worker's slots, so that a burst of them (a
   * node with many protected VMs fails) keeps no operator's task waiting.
   */
  readonly follower?: boolean;
  /**
   * Settles a task of this type that a previous process left running, instead of failing it blindly
   * at start-up; it ends like run() (and may throw TaskCancelled).
   */
  resume?(context: TaskContext): Promise<void>;
  /** At shutdown: running tasks of this type should throw TaskSuspended soon (resume() settles them after the next start). */
  suspend?(): void;
  /**
   * Asks a running task of this type to stop (`by`: who asked); its run() then ends, with
   * TaskCancelled when it did stop. Throws a DomainError when it cannot be cancelled now.
   */
  cancel?(task: Readonly<TaskEntity>, by: string): Promise<void>;
  /** What GET /api/v1/tasks/{id} shows of a task of this type beyond the task itself. */
  details?(task: Readonly<TaskEntity>): Promise<TaskDetails>;
}

export interface EnqueueOptions {
  /**
   * Runs after the task is stored and before it can start (store what the handler needs); when it
   * throws, the task is failed with the error and the error is thrown on.
   */
  prepare?(taskId: string): Promise<void>;
}

export interface NewTask {
  type: string;
  remoteId: string | null;
  vmId: string | null;
  owner: string;
  /** The remote credential to act with (from a remote group); null or absent: the remote's default. */
  credentialId?: string | null;
}

/** The scheduler job that fails the tasks a previous process left unfinished. */
export const TASK_RECOVERY_JOB = 'tasks.recover-interrupted';

/** How many tasks this manager carries out at once (followers aside); the rest wait queued. */
const CONCURRENCY = 8;
/** On shutdown, how long running tasks may take to finish before the process goes on stopping. */
const SHUTDOWN_GRACE_MS = 10_000;

/**
 * Persisted tasks and the in-process worker that carries them out. A task is stored queued before
 * the request is answered (202), run by the handler of its type, and ends succeeded or failed with
 * its log. Tasks a previous process left unfinished are failed at start-up (recoverInterrupted, a
 * scheduler job that runs at start, before any other job can enqueue a task).
 */
@Injectable()
export class TasksService implements OnModuleInit, BeforeApplicationShutdown {
  private readonly handlers = new Map<string, TaskHandler>();
  /** Queued tasks in order, each with the trace id of the request that enqueued it (one id follows it to the agents). */
  private readonly queue: { id: string; follower: boolean; traceId: string }[] = [];
  private readonly running = new Map<string, Promise<void>>();
  /** The running tasks that hold a worker slot (of types that are not followers). */
  private readonly working = new Set<string>();
  private accepting = true;

  constructor(
    private readonly tasks: TasksRepository,
    private readonly auth: AccessPolicy,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    private readonly metrics: MetricsService,
    private readonly logger: PinoLogger,
    private readonly audit: AuditService,
    private readonly resources: ResourcesService,
    private readonly scheduler: SchedulerService,
  ) {
    logger.setContext(TasksService.name);
  }

  onModuleInit(): void {
    // At start: the handlers, registered in their modules' onModuleInit, are all known by then.
    // After the other start jobs (order 1): settling interrupted tasks may call agents, which must
    // find the manager's client certificate already replaced (pki.client-certificate.start).
    this.scheduler.register({
      name: TASK_RECOVERY_JOB,
      timing: { atStart: true, order: 1 },
      run: () => this.recoverInterrupted(),
    });
  }

  registerHandler(type: string, handler: TaskHandler): void {
    if (this.handlers.has(type)) throw new Error(`a task handler for ${type} is registered twice`);
    this.handlers.set(type, handler);
    this.metrics.registerTaskType(type);
  }

  /** Stores the task as queued and schedules it; answers its id. 409 when an exclusive task holds the VM. */
  async enqueue(input: NewTask, options: EnqueueOptions = {}): Promise<{ taskId: string }> {
    if (!this.handlers.has(input.type)) throw new Error(`no task handler for ${input.type}`);
    if (!this.accepting)
      throw new DomainError(ErrorCode.NotReady, 'the manager is shutting down; try again shortly');
    const now = this.clock.now();
    const id = this.random.uuid();
    const exclusiveTypes = [...this.handlers]
      .filter(([, handler]) => handler.exclusive)
      .map(([type]) => type);
    const blocking = await this.tasks.insert(
      {
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
      },
      exclusiveTypes,
    );
    if (blocking) {
      throw new DomainError(
        ErrorCode.Conflict,
        `VM ${input.vmId} is busy with task ${blocking.id} (${blocking.type}, ${blocking.state}); one operation per VM at a time — wait for it or cancel it`,
      );
    }
    if (options.prepare) {
      try {
        await options.prepare(id);
      } catch (error) {
        const message =
          error instanceof DomainError
            ? error.message
            : 'could not be prepared; the manager log has the details';
        await this.tasks.finish(id, { state: 'failed', error: message }, this.clock.now());
        throw error;
      }
    }
    this.queue.push({
      id,
      follower: this.handlers.get(input.type)!.follower === true,
      traceId: currentTraceId() ?? newTraceId(),
    });
    this.pump();
    return { taskId: id };
  }

  async get(caller: Caller, id: string): Promise<TaskView> {
    const task = await this.tasks.get(id);
    if (!task || !this.maySee(caller, task)) throw DomainError.notFound(`task ${id}`);
    const details = await this.handlers.get(task.type)?.details?.(task);
    return { ...this.view(caller, task), ...details };
  }

  /**
   * Cancels a task: a queued one at once; a running one through its handler (it ends `cancelled`
   * when it stopped). Needs task.cancel where the task is (its VM, else its remote); 409 when the
   * task has ended or its type cannot be cancelled once started.
   */
  async cancel(caller: Caller, id: string): Promise<TaskView> {
    const task = await this.tasks.get(id);
    if (!task || !this.maySee(caller, task)) throw DomainError.notFound(`task ${id}`);
    const path = taskPath(task);
    if (!this.auth.holds(caller, 'task.cancel', path)) {
      throw new PermissionDenied(
        { privilege: 'task.cancel', path },
        {},
        `permission denied: needs task.cancel on ${path}`,
      );
    }
    if (task.state === 'queued') {
      const message = `cancelled by ${caller.display} before it started`;
      if (await this.tasks.cancelQueued(id, message, this.clock.now())) {
        const index = this.queue.findIndex((queued) => queued.id === id);
        if (index >= 0) this.queue.splice(index, 1);
        await this.audit.taskFinished({ ...task, state: 'cancelled', error: message });
        this.metrics.setTaskQueue(this.queue.length, this.running.size);
        return this.get(caller, id);
      }
    }
    const current = (await this.tasks.get(id))!;
    if (current.state !== 'running')
      throw new DomainError(ErrorCode.Conflict, `task ${id} has already ended (${current.state})`);
    const handler = this.handlers.get(current.type);
    if (!handler?.cancel)
      throw new DomainError(
        ErrorCode.Conflict,
        `a ${current.type} task cannot be cancelled once it has started`,
      );
    await handler.cancel(current, caller.display);
    return this.get(caller, id);
  }

  async list(
    caller: Caller,
    query: TaskQuery,
  ): Promise<{ items: TaskView[]; total: number; limit: number; offset: number }> {
    const remotes = this.auth.remoteScope(caller, 'task.audit');
    const vms = remotes === 'all' ? undefined : this.auth.vmScope(caller, 'task.audit');
    const { items, total } = await this.tasks.list({ ...query, remotes, vms });
    return {
      items: items.map((task) => this.view(caller, task)),
      total,
      limit: query.limit,
      offset: query.offset,
    };
  }

  /** The task with its VM's name and where the VM is now, if the caller may see it there. */
  private view(caller: Caller, task: TaskEntity): TaskView {
    const vm = task.vmId === null ? undefined : this.resources.locateVm(task.vmId);
    const visible = vm && this.auth.holds(caller, 'vm.audit', vmAclPath(vm.remote, vm.id));
    return {
      ...toView(task),
      vm: visible ? { name: vm.name, remote: vm.remote, node: vm.node } : null,
    };
  }

  /**
   * At start-up, before new tasks run: every task a previous process left queued or running is
   * failed with a log line saying so, and its handler may look at the outcome (refresh the VM).
   */
  async recoverInterrupted(): Promise<number> {
    const resumable = [...this.handlers]
      .filter(([, handler]) => handler.resume)
      .map(([type]) => type);
    const interrupted = await this.tasks.failUnfinished(
      (state) =>
        state === 'running'
          ? 'the manager restarted while this task was running; its outcome is unknown (the VM state was re-read)'
          : 'the manager restarted before this task started; it was not carried out',
      this.clock.now(),
      resumable,
    );
    for (const task of interrupted) {
      this.logger.warn(
        { task: task.id, type: task.type, state: task.state },
        'task failed: interrupted by a manager restart',
      );
      this.metrics.observeTask(task.type, 'interrupted', undefined);
      await this.audit.taskFinished({
        ...task,
        state: 'failed',
        error: 'interrupted by a manager restart',
      });
      try {
        this.handlers.get(task.type)?.afterInterrupted?.(task);
      } catch (error) {
        this.logger.error({ task: task.id, err: error }, 'after-restart handling failed');
      }
    }
    // Running tasks whose handlers can settle them: in the background, like new tasks.
    for (const task of resumable.length > 0 ? await this.tasks.listRunning(resumable) : []) {
      this.logger.warn(
        { task: task.id, type: task.type },
        'settling a task left running by a previous process',
      );
      this.start(task.id, this.handlers.get(task.type)?.follower === true, () =>
        runInBackground(() => this.execute(task.id, 'resume'), newTraceId()),
      );
    }
    return interrupted.length;
  }

  /** Stops taking tasks and gives running ones a grace period to finish. */
  async beforeApplicationShutdown(): Promise<void> {
    this.accepting = false;
    this.queue.length = 0;
    for (const handler of this.handlers.values()) handler.suspend?.();
    const all = Promise.allSettled([...this.running.values()]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      all,
      new Promise((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS))),
    ]);
    clearTimeout(timer);
  }

  /** Resolves when no task is running or queued (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running.size > 0 || this.queue.length > 0)
      await Promise.allSettled([...this.running.values()]);
  }

  private pump(): void {
    for (let i = 0; this.accepting && i < this.queue.length;) {
      const { id, follower, traceId } = this.queue[i];
      if (!follower && this.working.size >= CONCURRENCY) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      // Detached from whichever request or task happens to call pump(), under the task's own trace id.
      this.start(id, follower, () => runInBackground(() => this.execute(id), traceId));
    }
    this.metrics.setTaskQueue(this.queue.length, this.running.size);
  }

  private start(id: string, follower: boolean, run: () => Promise<void>): void {
    if (!follower) this.working.add(id);
    const running = run().finally(() => {
      this.running.delete(id);
      this.working.delete(id);
      this.pump();
    });
    this.running.set(id, running);
  }

  private async execute(id: string, mode: 'run' | 'resume' = 'run'): Promise<void> {
    try {
      const startedAt = this.clock.now();
      if (mode === 'run' && !(await this.tasks.markRunning(id, startedAt))) return;
      const task = (await this.tasks.get(id))!;
      const seconds = () => (this.clock.now().getTime() - startedAt.getTime()) / 1000;
      const handler = this.handlers.get(task.type)!;
      const context: TaskContext = {
        task,
        log: (message) => this.tasks.appendLog(id, { at: this.clock.now().toISOString(), message }),
        progress: (fraction) =>
          this.tasks.setProgress(id, Math.min(1, Math.max(0, fraction)), this.clock.now()),
      };
      try {
        await (mode === 'resume' ? handler.resume!(context) : handler.run(context));
        await context.log('succeeded');
        await this.tasks.finish(
          id,
          { state: 'succeeded', error: null, progress: 1 },
          this.clock.now(),
        );
        await this.audit.taskFinished({ ...task, state: 'succeeded', error: null });
        this.metrics.observeTask(task.type, 'succeeded', seconds());
        this.logger.info({ task: id, type: task.type }, 'task succeeded');
      } catch (error) {
        if (error instanceof TaskSuspended) {
          this.logger.info({ task: id, type: task.type }, 'task left running for the next start');
          return;
        }
        if (error instanceof TaskCancelled) {
          await context.log(`cancelled: ${error.message}`);
          await this.tasks.finish(
            id,
            { state: 'cancelled', error: error.message },
            this.clock.now(),
          );
          await this.audit.taskFinished({ ...task, state: 'cancelled', error: error.message });
          this.metrics.observeTask(task.type, 'cancelled', seconds());
          this.logger.info({ task: id, type: task.type, error: error.message }, 'task cancelled');
          return;
        }
        const message =
          error instanceof DomainError
            ? error.message
            : 'failed unexpectedly; the manager log has the details';
        if (!(error instanceof DomainError))
          this.logger.error({ task: id, err: error }, 'task failed unexpectedly');
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
    return this.auth.holds(caller, 'task.audit', taskPath(task));
  }
}

/** Where a task is in the ACL tree: its VM, else its remote, else `/`. */
function taskPath(task: TaskEntity): string {
  const remote = task.remoteId === null ? '/' : remoteAclPath(task.remoteId);
  return task.remoteId !== null && task.vmId !== null
    ? `${remote}/vms/${encodeURIComponent(task.vmId)}`
    : remote;
}

function toView(task: TaskEntity): Omit<TaskView, 'vm'> {
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
