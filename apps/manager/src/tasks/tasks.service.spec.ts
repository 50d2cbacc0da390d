import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it, vi } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import { AccessPolicy } from '../authz/access-policy.service';
import { testCaller } from '../../test/test-caller';
import type { Caller } from '../authz/caller';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { RandomRepository } from '../common/random.repository';
import type { TaskEntity, TaskLogLine, TaskState } from './task.entity';
import type { TasksRepository } from './tasks.repository';
import { TasksService } from './tasks.service';
import type { MetricsService } from '../health/metrics.service';
import type { AuditService } from '../audit/audit.service';
import type { ResourcesService } from '../resources/resources.service';
import type { SchedulerService } from '../scheduler/scheduler.service';
import type { VmResource } from '../resources/resources.dto';
import { currentTraceId, runWithTraceId } from '../common/trace-context';
import { TaskCancelled } from './task-cancelled';
import { TaskSuspended } from './task-suspended';

const NOW = new Date('2026-05-01T12:00:00Z');
const ID = '9d7f2a44-7a3c-4d2e-9f11-5c0f2b1a7e01';

/** An in-memory stand-in for the tasks table that records the order of writes. */
function memoryRepository() {
  const rows = new Map<string, TaskEntity>();
  const writes: string[] = [];
  const repository = strictMock<TasksRepository>('TasksRepository', {
    insert: async (task: TaskEntity) =>
      void (
        rows.set(task.id, { ...task, log: [...task.log] }),
        writes.push(`insert ${task.state}`)
      ),
    get: async (id: string) => rows.get(id) ?? null,
    markRunning: async (id: string, at: Date) => {
      const row = rows.get(id)!;
      if (row.state !== 'queued') return false;
      Object.assign(row, { state: 'running', startedAt: at });
      writes.push('running');
      return true;
    },
    appendLog: async (id: string, line: TaskLogLine) => void rows.get(id)!.log.push(line),
    setProgress: async (id: string, progress: number) => void (rows.get(id)!.progress = progress),
    finish: async (
      id: string,
      outcome: { state: TaskState; error: string | null; progress?: number },
      at: Date,
    ) => {
      Object.assign(
        rows.get(id)!,
        { state: outcome.state, error: outcome.error, finishedAt: at },
        outcome.progress !== undefined ? { progress: outcome.progress } : {},
      );
      writes.push(`finish ${outcome.state}`);
    },
    cancelQueued: async (id: string, message: string, at: Date) => {
      const row = rows.get(id)!;
      if (row.state !== 'queued') return false;
      Object.assign(row, { state: 'cancelled', error: message, finishedAt: at });
      row.log.push({ at: at.toISOString(), message: `cancelled: ${message}` });
      writes.push('cancelled while queued');
      return true;
    },
  });
  return { rows, writes, repository };
}

function taskMetrics() {
  return strictMock<MetricsService>('MetricsService', {
    registerTaskType: () => undefined,
    observeTask: () => undefined,
    setTaskQueue: () => undefined,
  });
}

function taskAudit(finished: unknown[] = []) {
  return strictMock<AuditService>('AuditService', {
    taskFinished: async (task) =>
      void finished.push({ id: task.id, state: task.state, error: task.error, owner: task.owner }),
  });
}

/** The resource cache's answer to "where is this VM now": none unless a test places one. */
function vmLocator(
  placed: Record<string, Pick<VmResource, 'id' | 'name' | 'remote' | 'node'>> = {},
) {
  return strictMock<ResourcesService>('ResourcesService', {
    locateVm: (uuid: string) => placed[uuid] as VmResource | undefined,
  });
}

function service(
  repository: TasksRepository,
  metrics = taskMetrics(),
  audit = taskAudit(),
  resources = vmLocator(),
  uuid = () => ID,
) {
  const auth = new AccessPolicy();
  return new TasksService(
    repository,
    auth,
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
    strictMock<RandomRepository>('RandomRepository', { uuid }),
    metrics,
    strictMock<PinoLogger>('PinoLogger', {
      setContext: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
    }),
    audit,
    resources,
    strictMock<SchedulerService>('SchedulerService'),
  );
}

const ADMIN: Caller = testCaller([{ path: '/', role: 'Admin' }]);

describe('TasksService', () => {
  it('stores the task queued before answering, runs it, and records its log and success', async () => {
    const { rows, writes, repository } = memoryRepository();
    const tasks = service(repository);
    tasks.registerHandler('vm.start', {
      run: async (context) => {
        await context.log('asking the agent');
        await context.progress(0.5);
      },
    });
    await expect(
      tasks.enqueue({ type: 'vm.start', remoteId: 'dc-east', vmId: 'v', owner: 'root@local!b' }),
    ).resolves.toEqual({ taskId: ID });
    expect(writes[0]).toBe('insert queued');
    await tasks.idle();
    expect(writes).toEqual(['insert queued', 'running', 'finish succeeded']);
    const task = await tasks.get(ADMIN, ID);
    expect(task).toMatchObject({
      state: 'succeeded',
      progress: 1,
      error: null,
      owner: 'root@local!b',
      target: { remote: 'dc-east', vm: 'v' },
    });
    expect(task.log.map((l) => l.message)).toEqual([
      'queued by root@local!b',
      'asking the agent',
      'succeeded',
    ]);
    expect(rows.size).toBe(1);
  });

  it("fails the task with the domain error's message, and hides unexpected errors", async () => {
    const { repository } = memoryRepository();
    const tasks = service(repository);
    let error: Error = new DomainError(ErrorCode.Conflict, 'VM web-1 is busy');
    tasks.registerHandler('vm.stop', {
      run: async () => {
        throw error;
      },
    });
    await tasks.enqueue({ type: 'vm.stop', remoteId: 'r', vmId: 'v', owner: 'o' });
    await tasks.idle();
    expect(await tasks.get(ADMIN, ID)).toMatchObject({
      state: 'failed',
      error: 'VM web-1 is busy',
    });

    const second = memoryRepository();
    const other = service(second.repository);
    error = new Error('ECONNRESET at socket.js:42 password=hunter2');
    other.registerHandler('vm.stop', {
      run: async () => {
        throw error;
      },
    });
    await other.enqueue({ type: 'vm.stop', remoteId: 'r', vmId: 'v', owner: 'o' });
    await other.idle();
    const failed = await other.get(ADMIN, ID);
    expect(failed.error).toBe('failed unexpectedly; the manager log has the details');
    expect(JSON.stringify(failed)).not.toContain('hunter2');
  });

  it('fails tasks a previous process left unfinished and lets their handler look at the outcome', async () => {
    const interrupted: string[] = [];
    const left = [
      { id: 'a', type: 'vm.start', state: 'running', remoteId: 'dc-east' },
    ] as TaskEntity[];
    let messages: string[] = [];
    const tasks = service(
      strictMock<TasksRepository>('TasksRepository', {
        failUnfinished: async (message: (state: TaskState) => string) => {
          messages = [message('running'), message('queued')];
          return left;
        },
      }),
    );
    tasks.registerHandler('vm.start', {
      run: async () => undefined,
      afterInterrupted: (task) => void interrupted.push(task.remoteId!),
    });
    expect(await tasks.recoverInterrupted()).toBe(1);
    expect(messages[0]).toContain('the manager restarted while this task was running');
    expect(messages[1]).toContain('the manager restarted before this task started');
    expect(interrupted).toEqual(['dc-east']);
  });

  it("records every task's outcome in the audit log, interrupted ones included", async () => {
    const finished: unknown[] = [];
    const { repository } = memoryRepository();
    const tasks = service(repository, taskMetrics(), taskAudit(finished));
    tasks.registerHandler('vm.stop', {
      run: async () => {
        throw new DomainError(ErrorCode.Conflict, 'VM web-1 is busy');
      },
    });
    await tasks.enqueue({ type: 'vm.stop', remoteId: 'r', vmId: 'v', owner: 'alice@ldap!ci' });
    await tasks.idle();
    expect(finished).toEqual([
      { id: ID, state: 'failed', error: 'VM web-1 is busy', owner: 'alice@ldap!ci' },
    ]);

    const restarted: unknown[] = [];
    const left = [
      { id: 'a', type: 'vm.start', state: 'running', remoteId: 'dc-east', owner: 'root@local!b' },
    ] as TaskEntity[];
    const recovering = service(
      strictMock<TasksRepository>('TasksRepository', { failUnfinished: async () => left }),
      taskMetrics(),
      taskAudit(restarted),
    );
    recovering.registerHandler('vm.start', { run: async () => undefined });
    await recovering.recoverInterrupted();
    expect(restarted).toEqual([
      {
        id: 'a',
        state: 'failed',
        error: 'interrupted by a manager restart',
        owner: 'root@local!b',
      },
    ]);
  });

  it('counts finished and interrupted tasks by type and outcome, with their duration', async () => {
    const metrics = taskMetrics();
    const { repository } = memoryRepository();
    const tasks = service(repository, metrics);
    tasks.registerHandler('vm.start', { run: async () => undefined });
    expect(metrics.registerTaskType).toHaveBeenCalledWith('vm.start');
    await tasks.enqueue({ type: 'vm.start', remoteId: 'r', vmId: 'v', owner: 'o' });
    expect(metrics.setTaskQueue).toHaveBeenLastCalledWith(0, 1);
    await tasks.idle();
    expect(metrics.observeTask).toHaveBeenCalledWith('vm.start', 'succeeded', 0);

    const restarted = service(
      strictMock<TasksRepository>('TasksRepository', {
        failUnfinished: async () =>
          [{ id: 'a', type: 'vm.stop', state: 'queued', remoteId: 'r' }] as TaskEntity[],
      }),
      metrics,
    );
    await restarted.recoverInterrupted();
    expect(metrics.observeTask).toHaveBeenCalledWith('vm.stop', 'interrupted', undefined);
  });

  it('runs a task under the trace id of the request that enqueued it, and one without a request under a new one', async () => {
    const { repository } = memoryRepository();
    const tasks = service(repository);
    const seen: (string | undefined)[] = [];
    tasks.registerHandler('vm.start', { run: async () => void seen.push(currentTraceId()) });
    await runWithTraceId('request-trace-0001', () =>
      tasks.enqueue({ type: 'vm.start', remoteId: 'r', vmId: 'v', owner: 'o' }),
    );
    await tasks.idle();
    const other = service(memoryRepository().repository);
    other.registerHandler('vm.start', { run: async () => void seen.push(currentTraceId()) });
    await other.enqueue({ type: 'vm.start', remoteId: 'r', vmId: 'v', owner: 'o' });
    await other.idle();
    expect(seen).toEqual(['request-trace-0001', expect.stringMatching(/^[0-9a-f]{32}$/)]);
  });

  it('hides tasks of remotes the caller may not see', async () => {
    const { repository } = memoryRepository();
    const tasks = service(repository);
    tasks.registerHandler('vm.start', { run: async () => undefined });
    await tasks.enqueue({ type: 'vm.start', remoteId: 'dc-east', vmId: 'v', owner: 'o' });
    await tasks.idle();
    const outsider: Caller = testCaller([{ path: '/remotes/dc-west', role: 'Audit' }]);
    await expect(tasks.get(outsider, ID)).rejects.toMatchObject({ code: ErrorCode.NotFound });
  });

  it('names the VM and where it is now, where the caller may see it there', async () => {
    const { repository } = memoryRepository();
    const placed = { v: { id: 'v', name: 'web-1', remote: 'dc-west', node: 'west-2' } };
    const tasks = service(repository, taskMetrics(), taskAudit(), vmLocator(placed));
    tasks.registerHandler('vm.migrate', { run: async () => undefined });
    await tasks.enqueue({ type: 'vm.migrate', remoteId: 'dc-east', vmId: 'v', owner: 'o' });
    await tasks.idle();
    const where = { name: 'web-1', remote: 'dc-west', node: 'west-2' };
    expect((await tasks.get(ADMIN, ID)).vm).toEqual(where);
    // It may follow the task on dc-east, but not see where the VM went.
    const eastOnly = testCaller([{ path: '/remotes/dc-east', role: 'Audit' }]);
    expect((await tasks.get(eastOnly, ID)).vm).toBeNull();
  });

  it('refuses new tasks while shutting down', async () => {
    const { repository } = memoryRepository();
    const tasks = service(repository);
    tasks.registerHandler('vm.start', { run: async () => undefined });
    await tasks.beforeApplicationShutdown();
    await expect(
      tasks.enqueue({ type: 'vm.start', remoteId: 'r', vmId: 'v', owner: 'o' }),
    ).rejects.toMatchObject({ code: ErrorCode.NotReady });
  });
});

describe('TasksService: exclusive, cancellable and resumable tasks', () => {
  const MANAGER: Caller = testCaller([{ path: '/', role: 'Manage' }], {
    display: 'alice@local!ci',
  });

  it('refuses with 409 a task whose VM is held by an exclusive task, naming that task, and passes the exclusive types to the insert', async () => {
    const blocking = { id: 'b1', type: 'vm.migrate', state: 'running' } as TaskEntity;
    const insert = vi.fn(
      async (_task: TaskEntity, _exclusive?: readonly string[]): Promise<TaskEntity | undefined> =>
        blocking,
    );
    const tasks = service(strictMock<TasksRepository>('TasksRepository', { insert }));
    tasks.registerHandler('vm.start', { run: async () => undefined });
    tasks.registerHandler('vm.migrate', { exclusive: true, run: async () => undefined });
    const refused = tasks.enqueue({ type: 'vm.start', remoteId: 'r', vmId: 'v', owner: 'o' });
    await expect(refused).rejects.toMatchObject({ code: ErrorCode.Conflict });
    await expect(refused).rejects.toThrow('VM v is busy with task b1 (vm.migrate, running)');
    expect(insert.mock.calls[0][1]).toEqual(['vm.migrate']);
  });

  it('stores what a task needs before it can start, and fails the task when that cannot be stored', async () => {
    const { rows, repository } = memoryRepository();
    const tasks = service(repository);
    const order: string[] = [];
    tasks.registerHandler('vm.migrate', {
      exclusive: true,
      run: async () => void order.push('run'),
    });
    await tasks.enqueue(
      { type: 'vm.migrate', remoteId: 'r', vmId: 'v', owner: 'o' },
      { prepare: async (id) => void order.push(`prepare ${id}`) },
    );
    await tasks.idle();
    expect(order).toEqual([`prepare ${ID}`, 'run']);

    const second = memoryRepository();
    const failing = service(second.repository);
    const run = vi.fn(async () => undefined);
    failing.registerHandler('vm.migrate', { run });
    const refused = failing.enqueue(
      { type: 'vm.migrate', remoteId: 'r', vmId: 'v', owner: 'o' },
      { prepare: async () => Promise.reject(new DomainError(ErrorCode.Conflict, 'no room')) },
    );
    await expect(refused).rejects.toThrow('no room');
    await failing.idle();
    expect(run).not.toHaveBeenCalled();
    expect(second.rows.get(ID)).toMatchObject({ state: 'failed', error: 'no room' });
    expect(rows.get(ID)?.state).toBe('succeeded');
  });

  it('cancels a running task through its handler; the task ends cancelled with the reason the handler gives', async () => {
    const { rows, repository } = memoryRepository();
    const finished: unknown[] = [];
    const tasks = service(repository, taskMetrics(), taskAudit(finished));
    let stop: (() => void) | undefined;
    const asked: string[] = [];
    tasks.registerHandler('vm.migrate', {
      run: () =>
        new Promise<void>(
          (_resolve, reject) =>
            (stop = () => reject(new TaskCancelled('the VM keeps running on node-1'))),
        ),
      cancel: async (task, by) => {
        asked.push(`${task.id} by ${by}`);
        stop!();
      },
    });
    await tasks.enqueue({ type: 'vm.migrate', remoteId: 'r', vmId: 'v', owner: 'o' });
    await vi.waitFor(() => expect(stop).toBeDefined());
    await tasks.cancel(MANAGER, ID);
    await tasks.idle();
    expect(asked).toEqual([`${ID} by alice@local!ci`]);
    expect(rows.get(ID)).toMatchObject({
      state: 'cancelled',
      error: 'the VM keeps running on node-1',
    });
    expect(rows.get(ID)!.log.at(-1)!.message).toBe('cancelled: the VM keeps running on node-1');
    expect(finished).toEqual([
      { id: ID, state: 'cancelled', error: 'the VM keeps running on node-1', owner: 'o' },
    ]);
  });

  it('cancels a queued task at once; refuses tasks that ended, tasks that cannot be cancelled, and callers without task.cancel', async () => {
    const { rows, repository } = memoryRepository();
    const tasks = service(repository);
    let release: (() => void) | undefined;
    tasks.registerHandler('vm.start', {
      run: () => new Promise<void>((resolve) => (release = resolve)),
    });
    // A task stored queued that the worker has not picked up.
    rows.set('queued-1', {
      id: 'queued-1',
      type: 'vm.start',
      state: 'queued',
      remoteId: 'r',
      vmId: 'v',
      owner: 'o',
      log: [],
      createdAt: NOW,
      updatedAt: NOW,
    } as unknown as TaskEntity);
    const cancelled = await tasks.cancel(MANAGER, 'queued-1');
    expect(cancelled).toMatchObject({
      state: 'cancelled',
      error: 'cancelled by alice@local!ci before it started',
    });

    await tasks.enqueue({ type: 'vm.start', remoteId: 'r', vmId: 'v', owner: 'o' });
    await vi.waitFor(() => expect(release).toBeDefined());
    await expect(tasks.cancel(MANAGER, ID)).rejects.toThrow(
      'a vm.start task cannot be cancelled once it has started',
    );
    await expect(
      tasks.cancel(testCaller([{ path: '/', role: 'Audit' }]), ID),
    ).rejects.toMatchObject({ code: ErrorCode.Forbidden });
    await expect(
      tasks.cancel(testCaller([{ path: '/remotes/other', role: 'Manage' }]), ID),
    ).rejects.toMatchObject({ code: ErrorCode.NotFound });
    release!();
    await tasks.idle();
    await expect(tasks.cancel(MANAGER, ID)).rejects.toThrow('has already ended (succeeded)');
  });

  it('runs at most 8 tasks at once, the rest queued in order, while tasks that only follow events elsewhere start at once', async () => {
    const { rows, repository } = memoryRepository();
    let next = 0;
    const tasks = service(repository, taskMetrics(), taskAudit(), vmLocator(), () => `t-${++next}`);
    const held: (() => void)[] = [];
    tasks.registerHandler('vm.start', {
      run: () => new Promise<void>((resolve) => held.push(resolve)),
    });
    tasks.registerHandler('ha.fence', { follower: true, run: async () => undefined });
    const enqueue = (type: string) =>
      tasks.enqueue({ type, remoteId: 'r', vmId: null, owner: 'o' });
    for (let i = 0; i < 10; i++) await enqueue('vm.start');
    await vi.waitFor(() => expect(held).toHaveLength(8));
    const followed = await enqueue('ha.fence');
    await vi.waitFor(() => expect(rows.get(followed.taskId)!.state).toBe('succeeded'));
    expect([rows.get('t-9')!.state, rows.get('t-10')!.state]).toEqual(['queued', 'queued']);
    held.shift()!();
    await vi.waitFor(() => expect(rows.get('t-9')!.state).toBe('running'));
    expect(rows.get('t-10')!.state).toBe('queued');
    while (held.length > 0 || rows.get('t-10')!.state === 'queued') {
      held.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await tasks.idle();
    expect([...rows.values()].every((task) => task.state === 'succeeded')).toBe(true);
  });

  it('leaves running tasks of resumable types to their handlers at start-up and settles them in the background', async () => {
    const left = {
      id: ID,
      type: 'vm.migrate',
      state: 'running',
      remoteId: 'dc-east',
      vmId: 'v',
      owner: 'o',
      log: [],
    } as unknown as TaskEntity;
    const writes: string[] = [];
    let resumable: readonly string[] = [];
    const repository = strictMock<TasksRepository>('TasksRepository', {
      failUnfinished: async (
        _message: (state: TaskState) => string,
        _at: Date,
        types?: readonly string[],
      ) => ((resumable = types ?? []), []),
      listRunning: async () => [left],
      get: async () => left,
      appendLog: async (_id: string, line: TaskLogLine) => void writes.push(line.message),
      finish: async (_id: string, outcome: { state: TaskState }) =>
        void writes.push(`finish ${outcome.state}`),
    });
    const tasks = service(repository);
    tasks.registerHandler('vm.start', { run: async () => undefined });
    tasks.registerHandler('vm.migrate', {
      run: async () => undefined,
      resume: async (context) => context.log('settled: the VM runs on node-2'),
    });
    expect(await tasks.recoverInterrupted()).toBe(0);
    await tasks.idle();
    expect(resumable).toEqual(['vm.migrate']);
    expect(writes).toEqual(['settled: the VM runs on node-2', 'succeeded', 'finish succeeded']);
  });

  it('asks resumable tasks to let go at shutdown and leaves a task that does so running, untouched', async () => {
    const { rows, writes, repository } = memoryRepository();
    const tasks = service(repository);
    let letGo: (() => void) | undefined;
    const suspend = vi.fn(() => letGo?.());
    tasks.registerHandler('vm.migrate', {
      run: () =>
        new Promise<void>((_resolve, reject) => (letGo = () => reject(new TaskSuspended()))),
      resume: async () => undefined,
      suspend,
    });
    await tasks.enqueue({ type: 'vm.migrate', remoteId: 'r', vmId: 'v', owner: 'o' });
    await vi.waitFor(() => expect(letGo).toBeDefined());
    await tasks.beforeApplicationShutdown();
    expect(suspend).toHaveBeenCalledOnce();
    expect(rows.get(ID)!.state).toBe('running');
    expect(writes).toEqual(['insert queued', 'running']);
  });
});
