import type {
  HaEvent__Output,
  HaNode__Output,
  HaResource__Output,
  HaStatus__Output,
} from '@debvisor/proto';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it } from 'vitest';
import type { AuditService } from '../audit/audit.service';
import type { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import type { EnqueueOptions, NewTask, TaskHandler, TasksService } from '../tasks/tasks.service';
import { HA_TASKS, HaEpisodesService } from './ha-episodes.service';
import type { HaMetrics } from './ha-metrics';

interface FakeTask {
  id: string;
  input: NewTask;
  log: string[];
  state: 'running' | 'succeeded' | 'failed';
  error: string | null;
  done: Promise<void>;
}

/** The task worker as far as HA events use it: handlers run at once, their journals kept. */
function fakeTasks() {
  const handlers = new Map<string, TaskHandler>();
  const tasks: FakeTask[] = [];
  const service = {
    registerHandler: (type: string, handler: TaskHandler) => handlers.set(type, handler),
    enqueue: async (input: NewTask, options: EnqueueOptions = {}) => {
      const id = `task-${tasks.length + 1}`;
      const task: FakeTask = {
        id,
        input,
        log: [],
        state: 'running',
        error: null,
        done: Promise.resolve(),
      };
      tasks.push(task);
      await options.prepare?.(id);
      task.done = handlers
        .get(input.type)!
        .run({
          task: { id, ...input } as unknown as TaskEntity,
          log: async (message) => void task.log.push(message),
          progress: async () => undefined,
        })
        .then(
          () => void (task.state = 'succeeded'),
          (error: Error) => {
            task.state = 'failed';
            task.error = error.message;
          },
        );
      return { taskId: id };
    },
  };
  return { service: service as unknown as TasksService, tasks, handlers };
}

function setup() {
  const tasks = fakeTasks();
  const events: { outcome: string; details: Record<string, unknown>; target: string | null }[] = [];
  const recoveries: string[] = [];
  const audit = strictMock<AuditService>('AuditService', {
    systemEvent: async (event) => void events.push(event),
  });
  const metrics = strictMock<HaMetrics>('HaMetrics', {
    recoveryEnded: (remote, outcome) => void recoveries.push(`${remote}:${outcome}`),
  });
  const refreshed: string[] = [];
  const resources = strictMock<ResourcesService>('ResourcesService', {
    refreshVm: async (remote, vm) => void refreshed.push(`${remote}/vms/${vm}`),
    refreshRemote: async (remote) => void refreshed.push(remote),
  });
  const logger = strictMock<PinoLogger>('PinoLogger', { setContext: () => undefined });
  const episodes = new HaEpisodesService(tasks.service, audit, metrics, resources, logger);
  episodes.onModuleInit();
  const settle = async () => {
    for (const task of tasks.tasks) await Promise.race([task.done, tick()]);
  };
  return {
    episodes,
    tasks: tasks.tasks,
    handlers: tasks.handlers,
    events,
    recoveries,
    refreshed,
    settle,
  };
}

/** A task a previous manager process left running, settled through its handler's resume(). */
function resumeTask(
  t: ReturnType<typeof setup>,
  type: string,
  vmId: string | null,
  log: { at: string; message: string }[],
) {
  const journal: string[] = [];
  const outcome = t.handlers.get(type)!.resume!({
    task: {
      id: `old-${type}`,
      type,
      remoteId: 'dc',
      vmId,
      log,
      startedAt: new Date('2026-12-07T19:00:00Z'),
      createdAt: new Date('2026-12-07T19:00:00Z'),
    } as unknown as TaskEntity,
    log: async (message) => void journal.push(message),
    progress: async () => undefined,
  }).then(
    () => 'succeeded',
    (error: Error) => `failed: ${error.message}`,
  );
  return { journal, outcome };
}

/** A read that started now (after anything asked for before). */
function follow(
  t: ReturnType<typeof setup>,
  remote: string,
  previous: HaStatus__Output | undefined,
  current: HaStatus__Output,
  readAt = new Date(),
) {
  return t.episodes.follow(remote, previous, current, readAt);
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

function node(nodeId: string, state = 'online', reason = '', fence?: string): HaNode__Output {
  return {
    nodeId,
    state,
    reason,
    alive: state === 'online' || state === 'draining' || state === 'maintenance',
    health: null,
    fence: fence
      ? { state: fence, epoch: '7', blocklisted: ['10.0.0.1:0/0'], locksBroken: [], at: '', reason }
      : null,
  } as unknown as HaNode__Output;
}

function vm(vmUuid: string, state: string, nodeId: string, reason = ''): HaResource__Output {
  return {
    vmUuid,
    vmName: `vm-${vmUuid.slice(0, 4)}`,
    policy: null,
    state,
    nodeId,
    reason,
    relocations: 0,
    restarts: 0,
    epoch: '7',
    updatedAt: '',
  } as unknown as HaResource__Output;
}

function status(
  nodes: HaNode__Output[],
  resources: HaResource__Output[],
  coordinator = 'node-2',
): HaStatus__Output {
  return { clusterId: 'dc', coordinatorNodeId: coordinator, fencingEpoch: '7', nodes, resources };
}

const A = 'aaaaaaaa-0000-4000-8000-000000000001';

describe('HA events as tasks', () => {
  it('follows a node through suspicion and fencing in one ha.fence task that succeeds when the fence is confirmed', async () => {
    const t = setup();
    await follow(t, 'dc', undefined, status([node('node-1'), node('node-2')], []));
    expect(t.tasks).toEqual([]);
    await follow(
      t,
      'dc',
      status([node('node-1'), node('node-2')], []),
      status([node('node-1', 'suspect', 'lease expired'), node('node-2')], []),
    );
    await follow(
      t,
      'dc',
      undefined,
      status([node('node-1', 'fencing', 'blocklisting', 'fencing'), node('node-2')], []),
    );
    await follow(
      t,
      'dc',
      undefined,
      status([node('node-1', 'fenced', 'fenced by node-2', 'fenced'), node('node-2')], []),
    );
    await t.settle();
    expect(t.tasks).toHaveLength(1);
    const [task] = t.tasks;
    expect(task.input).toMatchObject({
      type: HA_TASKS.fence,
      remoteId: 'dc',
      vmId: null,
      owner: 'debvisor-manager',
    });
    expect(task.state).toBe('succeeded');
    expect(task.log[0]).toBe('node node-1 suspect: lease expired');
    expect(task.log.some((line) => line.includes('fence fenced (epoch 7)'))).toBe(true);
    expect(t.events).toContainEqual(
      expect.objectContaining({
        outcome: 'success',
        target: '/remotes/dc',
        details: expect.objectContaining({ kind: 'fenced', node: 'node-1', taskId: task.id }),
      }),
    );
  });

  it("writes the cluster's own events into the journal of the event they belong to, and leaves the others out", async () => {
    const t = setup();
    const before = status([node('node-1'), node('node-2')], [vm(A, 'protected', 'node-1')]);
    const event = (id: string, kind: string, nodeId: string, vmUuid = '', message = '') => ({
      id,
      at: `2026-12-07T20:00:0${id}Z`,
      epoch: '7',
      kind,
      nodeId,
      vmUuid,
      message,
    });
    await t.episodes.follow(
      'dc',
      before,
      status(
        [node('node-1', 'fenced', 'lease expired', 'fenced'), node('node-2')],
        [vm(A, 'recovering', 'node-1')],
      ),
      new Date(),
      [
        event('1', 'node-suspect', 'node-1', '', 'lease expired'),
        event('2', 'fence-started', 'node-1'),
        event('3', 'fenced', 'node-1', '', '2 disk(s) fenced'),
        event('4', 'vm-recovering', 'node-2', A, 'starting on node-2'),
        event('5', 'coordinator-elected', 'node-2'),
        event('6', 'drain-started', 'node-2'),
      ] as unknown as HaEvent__Output[],
    );
    await t.settle();
    const [fence, recovery] = t.tasks;
    expect(fence.log).toEqual([
      'cluster 2026-12-07T20:00:01Z: node-suspect — lease expired (epoch 7)',
      'cluster 2026-12-07T20:00:02Z: fence-started (epoch 7)',
      'cluster 2026-12-07T20:00:03Z: fenced — 2 disk(s) fenced (epoch 7)',
      'node node-1 fenced: lease expired: fence fenced (epoch 7); blocklisted 10.0.0.1:0/0',
    ]);
    expect(recovery.input.vmId).toBe(A);
    expect(recovery.log[0]).toBe(
      'cluster 2026-12-07T20:00:04Z: vm-recovering — starting on node-2 (epoch 7)',
    );
    expect(t.tasks).toHaveLength(2);
  });

  it('keeps the lines of events read before the status showed their change for the next read', async () => {
    const t = setup();
    const event = (id: string, kind: string, message = '') =>
      ({
        id,
        at: `2026-12-07T20:00:0${id}Z`,
        epoch: '7',
        kind,
        nodeId: 'node-1',
        vmUuid: '',
        message,
      }) as unknown as HaEvent__Output;
    const calm = status([node('node-1'), node('node-2')], []);
    // The status was read first and shows nothing yet; the events read after it already started.
    await t.episodes.follow('dc', calm, calm, new Date(), [
      event('1', 'node-suspect', 'lease expired'),
      event('2', 'fence-started'),
    ]);
    await t.settle();
    expect(t.tasks).toHaveLength(0);
    await t.episodes.follow(
      'dc',
      calm,
      status([node('node-1', 'fenced', 'lease expired', 'fenced'), node('node-2')], []),
      new Date(),
      [event('3', 'fenced', '2 disk(s) fenced')],
    );
    await t.settle();
    expect(t.tasks).toHaveLength(1);
    expect(t.tasks[0].log).toEqual([
      'cluster 2026-12-07T20:00:01Z: node-suspect — lease expired (epoch 7)',
      'cluster 2026-12-07T20:00:02Z: fence-started (epoch 7)',
      'cluster 2026-12-07T20:00:03Z: fenced — 2 disk(s) fenced (epoch 7)',
      'node node-1 fenced: lease expired: fence fenced (epoch 7); blocklisted 10.0.0.1:0/0',
    ]);
  });

  it('fails the ha.fence task with the reason when the fence cannot be confirmed', async () => {
    const t = setup();
    const before = status([node('node-1'), node('node-2')], []);
    const fencing = status([node('node-1', 'fencing'), node('node-2')], []);
    await follow(t, 'dc', before, fencing);
    await follow(
      t,
      'dc',
      fencing,
      status(
        [node('node-1', 'fence-failed', 'ceph did not answer', 'unconfirmed'), node('node-2')],
        [],
      ),
    );
    await t.settle();
    expect(t.tasks.map((task) => task.state)).toEqual(['failed']);
    expect(t.tasks[0].error).toContain('ceph did not answer');
    expect(t.events.at(-1)).toMatchObject({
      outcome: 'failure',
      details: { kind: 'fence-unconfirmed', node: 'node-1' },
    });
  });

  it('opens an ha.recovery task on the VM while it is recovered and ends it once the VM runs elsewhere, counting the outcome', async () => {
    const t = setup();
    const healthy = status([node('node-1'), node('node-2')], [vm(A, 'protected', 'node-1')]);
    const recovering = status(
      [node('node-1', 'fenced', '', 'fenced'), node('node-2')],
      [vm(A, 'recovering', 'node-1', 'starting on node-2')],
    );
    const recovered = status(
      [node('node-1', 'fenced', '', 'fenced'), node('node-2')],
      [vm(A, 'protected', 'node-2')],
    );
    await follow(t, 'dc', undefined, healthy);
    await follow(t, 'dc', healthy, recovering);
    await follow(t, 'dc', recovering, recovered);
    await t.settle();
    const recovery = t.tasks.find((task) => task.input.type === HA_TASKS.recovery)!;
    expect(recovery.input).toMatchObject({ remoteId: 'dc', vmId: A, owner: 'debvisor-manager' });
    expect(recovery.state).toBe('succeeded');
    expect(recovery.log[0]).toContain(
      'recovering on node node-1 (node fenced): starting on node-2',
    );
    expect(recovery.log.at(-1)).toContain('protected on node node-2');
    expect(t.recoveries).toEqual(['dc:succeeded']);
    expect(t.refreshed).toEqual(['dc', `dc/vms/${A}`]);
    expect(t.events).toContainEqual(
      expect.objectContaining({
        target: `/remotes/dc/vms/${A}`,
        details: expect.objectContaining({ kind: 'vm-recovered', vm: A }),
      }),
    );
  });

  it('still gives a recovery that happened between two polls its task, opened and ended at once', async () => {
    const t = setup();
    const healthy = status([node('node-1'), node('node-2')], [vm(A, 'protected', 'node-1')]);
    const after = status(
      [node('node-1', 'fenced', 'lease expired', 'fenced'), node('node-2')],
      [vm(A, 'protected', 'node-2')],
    );
    await follow(t, 'dc', undefined, healthy);
    await follow(t, 'dc', healthy, after);
    await t.settle();
    expect(t.tasks.map((task) => [task.input.type, task.state])).toEqual([
      [HA_TASKS.fence, 'succeeded'],
      [HA_TASKS.recovery, 'succeeded'],
    ]);
    expect(t.tasks[1].log[0]).toContain('protected on node node-1 (node fenced)');
    expect(t.tasks[1].log.at(-1)).toContain('protected on node node-2');
    expect(t.recoveries).toEqual(['dc:succeeded']);
  });

  it('fails the recovery task with the cluster reason when HA gives up on the VM', async () => {
    const t = setup();
    const healthy = status([node('node-1'), node('node-2')], [vm(A, 'protected', 'node-1')]);
    const recovering = status(
      [node('node-1', 'fenced', '', 'fenced'), node('node-2')],
      [vm(A, 'pending', 'node-1', 'no node fits')],
    );
    const failed = status(
      [node('node-1', 'fenced', '', 'fenced'), node('node-2')],
      [vm(A, 'error', 'node-1', 'max relocations reached')],
    );
    await follow(t, 'dc', healthy, recovering);
    await follow(t, 'dc', recovering, failed);
    await t.settle();
    const recovery = t.tasks.find((task) => task.input.type === HA_TASKS.recovery)!;
    expect(recovery.state).toBe('failed');
    expect(recovery.error).toContain('max relocations reached');
    expect(t.recoveries).toEqual(['dc:failed']);
  });

  it('opens no task at the first read for events that ended before the manager looked', async () => {
    const t = setup();
    await follow(
      t,
      'dc',
      undefined,
      status(
        [node('node-1', 'fenced', '', 'fenced'), node('node-2'), node('node-3', 'maintenance')],
        [vm(A, 'error', 'node-2', 'gave up')],
      ),
    );
    await t.settle();
    expect(t.tasks).toEqual([]);
    expect(t.recoveries).toEqual([]);
  });

  it("follows a drain asked for through the manager as the operator's ha.drain task, undisturbed by a read from before it", async () => {
    const t = setup();
    const online = status([node('node-1'), node('node-2')], []);
    const readBefore = new Date(Date.now() - 1000);
    const { taskId } = await t.episodes.drainRequested(
      'dc',
      'node-1',
      'op@local!ci',
      () => new Date(),
      async () => node('node-1', 'draining', '2 VMs to move'),
    );
    expect(t.episodes.openTask('drain', 'dc', 'node-1')).toBe(taskId);
    await follow(t, 'dc', online, online, readBefore);
    expect(t.episodes.openTask('drain', 'dc', 'node-1')).toBe(taskId);
    const drained = status([node('node-1', 'maintenance', 'drained'), node('node-2')], []);
    await follow(t, 'dc', online, drained);
    await t.settle();
    expect(t.tasks).toHaveLength(1);
    expect(t.tasks[0].input).toMatchObject({ type: HA_TASKS.drain, owner: 'op@local!ci' });
    expect(t.tasks[0].state).toBe('succeeded');
    expect(t.tasks[0].log[0]).toBe('maintenance asked for: node node-1 draining: 2 VMs to move');
    expect(t.tasks[0].log.at(-1)).toBe('node node-1 maintenance: drained');
    await expect(
      t.episodes.drainRequested(
        'dc',
        'node-2',
        'op@local',
        () => new Date(),
        async () => {
          throw new Error('refused');
        },
      ),
    ).rejects.toThrow('refused');
    expect(t.episodes.openTask('drain', 'dc', 'node-2')).toBeUndefined();
  });

  it('does not end a drain on a read that started before the node answered the request', async () => {
    const t = setup();
    const online = status([node('node-1'), node('node-2')], []);
    let answer!: (node: HaNode__Output) => void;
    const asked = t.episodes.drainRequested(
      'dc',
      'node-1',
      'op@local',
      () => new Date(),
      () => new Promise<HaNode__Output>((resolve) => (answer = resolve)),
    );
    await tick();
    // Started after the request went out, before the node wrote its maintenance: still online
    // (its events, read later, already have the start).
    const started = {
      id: '1',
      at: '2026-12-07T20:00:01Z',
      epoch: '7',
      kind: 'drain-started',
      nodeId: 'node-1',
      vmUuid: '',
      message: '2 VM(s) on the node',
    } as unknown as HaEvent__Output;
    await t.episodes.follow('dc', online, online, new Date(), [started]);
    answer(node('node-1', 'draining', '2 VMs to move'));
    const { taskId } = await asked;
    expect(t.episodes.openTask('drain', 'dc', 'node-1')).toBe(taskId);
    await follow(
      t,
      'dc',
      online,
      status([node('node-1', 'maintenance', 'drained'), node('node-2')], []),
    );
    await t.settle();
    expect(t.tasks.map((task) => task.state)).toEqual(['succeeded']);
    expect(t.tasks[0].log).toContain(
      'cluster 2026-12-07T20:00:01Z: drain-started — 2 VM(s) on the node (epoch 7)',
    );
  });

  it('fails a drain that stops before the node is empty', async () => {
    const t = setup();
    await t.episodes.drainRequested(
      'dc',
      'node-1',
      'op@local',
      () => new Date(0),
      async () => node('node-1', 'draining'),
    );
    await follow(
      t,
      'dc',
      undefined,
      status([node('node-1', 'online', 'drain stopped: no node fits vm-1'), node('node-2')], []),
    );
    await t.settle();
    expect(t.tasks[0].state).toBe('failed');
    expect(t.tasks[0].error).toContain('no node fits vm-1');
  });

  it('records a lost and a new coordinator in the audit log', async () => {
    const t = setup();
    const nodes = [node('node-1'), node('node-2')];
    await follow(t, 'dc', status(nodes, [], 'node-1'), status(nodes, [], ''));
    await follow(t, 'dc', status(nodes, [], ''), status(nodes, [], 'node-2'));
    expect(t.events.map((event) => [event.outcome, event.details.kind])).toEqual([
      ['failure', 'coordinator-lost'],
      ['success', 'coordinator-elected'],
    ]);
  });

  it('takes up a fence left running by a previous process: it follows the node its journal names, with the events since its last line, and ends with it', async () => {
    const t = setup();
    const old = resumeTask(t, HA_TASKS.fence, null, [
      { at: '2026-12-07T20:00:00.000Z', message: 'node node-1 suspect: lease expired' },
    ]);
    await tick();
    // The first read after the restart asks the cluster for the events since the last line.
    expect(t.episodes.resumedSince('dc')).toEqual(new Date('2026-12-07T20:00:00.000Z'));
    expect(t.episodes.resumedSince('other')).toBeUndefined();
    await t.episodes.follow(
      'dc',
      undefined,
      status([node('node-1', 'fenced', 'lease expired', 'fenced'), node('node-2')], []),
      new Date(),
      [
        {
          id: '3',
          at: '2026-12-07T20:00:03Z',
          epoch: '7',
          kind: 'fenced',
          nodeId: 'node-1',
          vmUuid: '',
          message: '2 disk(s) fenced',
        },
      ] as unknown as HaEvent__Output[],
    );
    expect(await old.outcome).toBe('succeeded');
    expect(old.journal).toEqual([
      "the manager restarted: following this fence of node node-1 again from the cluster's HA state",
      'cluster 2026-12-07T20:00:03Z: fenced — 2 disk(s) fenced (epoch 7)',
      'node node-1 fenced: lease expired: fence fenced (epoch 7); blocklisted 10.0.0.1:0/0',
    ]);
    // Followed by the old task: no new one, and its end is audited under the old task's id.
    expect(t.tasks).toHaveLength(0);
    expect(t.events.map((e) => [e.details.kind, e.details.taskId])).toEqual([
      ['fenced', 'old-ha.fence'],
    ]);
    expect(t.episodes.resumedSince('dc')).toBeUndefined();
  });

  it('ends a resumed drain whose node is back in service as failed, saying it ended while the manager restarted', async () => {
    const t = setup();
    const old = resumeTask(t, HA_TASKS.drain, null, [
      {
        at: '2026-12-07T20:00:00.000Z',
        message: 'maintenance asked for: node node-2 draining: 2 VMs to move',
      },
    ]);
    await tick();
    await follow(t, 'dc', undefined, status([node('node-1'), node('node-2')], []));
    expect(await old.outcome).toBe(
      'failed: ended while the manager was restarting; the cluster now shows: node node-2 online',
    );
  });

  it('fails a resumed task that cannot tell what it followed, or whose event a new task follows already', async () => {
    const t = setup();
    const blank = resumeTask(t, HA_TASKS.fence, null, []);
    expect(await blank.outcome).toContain('its journal does not say which node it followed');
    // The first read after the restart came first and opened a task of its own.
    await follow(t, 'dc', undefined, status([node('node-1', 'fencing', 'lease expired')], []));
    await tick();
    expect(t.tasks).toHaveLength(1);
    const late = resumeTask(t, HA_TASKS.fence, null, [
      { at: '2026-12-07T20:00:00.000Z', message: 'node node-1 suspect: lease expired' },
    ]);
    expect(await late.outcome).toBe(
      `failed: the manager restarted; this event is followed on in task ${t.tasks[0].id}, opened by the first HA read after the restart`,
    );
  });

  it('ends the events of a removed remote', async () => {
    const t = setup();
    const old = resumeTask(t, HA_TASKS.recovery, A, [
      { at: '2026-12-07T20:00:00.000Z', message: 'VM vm-aaaa recovering on node node-1' },
    ]);
    await tick();
    await t.episodes.remoteRemoved('dc');
    expect(await old.outcome).toBe(
      'failed: remote dc was removed from the manager; the cluster keeps handling the event',
    );
  });
});
