import type { Vm__Output, VmSnapshot__Output } from '@debvisor/proto';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it } from 'vitest';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import type { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import type { Caller } from '../authz/caller';
import { testCaller } from '../../test/test-caller';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { RandomRepository } from '../common/random.repository';
import type { ManagerConfig } from '../config/manager-config';
import type { RemotesService } from '../remotes/remotes.service';
import type { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import type { NewTask, TaskContext, TaskHandler, TasksService } from '../tasks/tasks.service';
import type { Reservation, SnapshotsRepository } from './snapshots.repository';
import { SnapshotsService } from './snapshots.service';
import type { VmSnapshotTaskEntity } from './vm-snapshot-task.entity';
import type { VmSnapshotEntity } from './vm-snapshot.entity';

const VM = '11111111-1111-4111-8111-111111111111';
const NOW = new Date('2026-12-07T13:05:09.123Z');
const CONNECTION: AgentConnection = {
  remoteId: 'dc-east',
  endpoints: ['a:1'],
  caCertPem: 'ca',
  apiKey: 'k',
};
const MANAGER: Caller = testCaller([{ path: '/', role: 'Manage' }], {
  principal: 'alice@local',
  display: 'alice@local!ci',
});
const CONFIG = { snapshots: { quotaPerVm: 100, scheduleTickSeconds: 60 } } as ManagerConfig;

function vmSnapshot(name: string, extra: Partial<VmSnapshot__Output> = {}): VmSnapshot__Output {
  return {
    vmUuid: VM,
    snapshot: name,
    createdAt: '2026-12-07T13:05:10Z',
    consistency: 'application',
    consistencyReason: '',
    group: true,
    disks: [
      { pool: 'rbd', image: 'web-1-disk0', snapshot: name, createdAt: '', sizeBytes: '1073741824' },
      { pool: 'rbd', image: 'web-1-data', snapshot: name, createdAt: '', sizeBytes: '2147483648' },
    ],
    ...extra,
  };
}

interface Setup {
  reserve?: (record: VmSnapshotEntity, quota: number) => Promise<Reservation>;
  enqueue?: (task: NewTask) => Promise<{ taskId: string }>;
  agents?: Partial<
    Record<
      'snapshotVm' | 'listVmSnapshots' | 'deleteVmSnapshot' | 'rollbackVm' | 'getVm' | 'vmAction',
      (...args: never[]) => unknown
    >
  >;
  params?: Partial<VmSnapshotTaskEntity>;
  record?: VmSnapshotEntity | null;
  records?: VmSnapshotEntity[];
}

function setup(options: Setup = {}) {
  const handlers = new Map<string, TaskHandler>();
  const enqueued: NewTask[] = [];
  const notes: Record<string, unknown>[] = [];
  const calls: string[] = [];
  const db: string[] = [];
  const repository = strictMock<SnapshotsRepository>('SnapshotsRepository', {
    reserve: options.reserve ?? (async () => ({ ok: true })),
    release: async (id) => void db.push(`release ${id}`),
    markCreated: async (id, at, consistency) =>
      void db.push(`created ${id} ${at.toISOString()} ${consistency}`),
    insertTask: async (params) =>
      void db.push(`task ${params.taskId} ${params.snapshot} ${JSON.stringify(params.options)}`),
    taskParams: async (taskId) => ({
      taskId,
      snapshot: 'snap-1',
      scheduleId: null,
      options: {},
      ...options.params,
    }),
    byName: async () =>
      options.record === undefined
        ? ({ id: 'record-1', name: 'snap-1', state: 'pending' } as VmSnapshotEntity)
        : options.record,
    forget: async (_r, _v, name) => void db.push(`forget ${name}`),
    forgetMissing: async (_r, _v, present) => (db.push(`keep only ${present.join(',')}`), 0),
    forVm: async () => options.records ?? [],
    countFor: async (vm, by) => (db.push(`count ${vm} ${by}`), 7),
  });
  const agents = strictMock<AgentClientRepository>(
    'AgentClientRepository',
    options.agents as never,
  );
  const service = new SnapshotsService(
    CONFIG,
    strictMock<TasksService>('TasksService', {
      registerHandler: (type, handler) => void handlers.set(type, handler),
      enqueue: async (task, enqueueOptions) => {
        const accepted = await (options.enqueue ?? (async () => ({ taskId: 'task-1' })))(task);
        enqueued.push(task);
        await enqueueOptions?.prepare?.(accepted.taskId);
        return accepted;
      },
    }),
    strictMock<RemotesService>('RemotesService', {
      get: async () => ({}) as never,
      connectionFor: async (_remote, _credential, permission) => (
        calls.push(`connect ${permission ?? ''}`),
        CONNECTION
      ),
    }),
    agents,
    strictMock<ResourcesService>('ResourcesService', {
      cachedVm: () => ({ name: 'web-1' }) as never,
      refreshVm: async (remote, uuid) => void calls.push(`refresh ${remote}/${uuid}`),
    }),
    strictMock<AuditService>('AuditService', {
      note: (details) => void notes.push(details),
      runAs: (_principal, work) => work(),
    }),
    new AccessPolicy(),
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
    strictMock<RandomRepository>('RandomRepository', { uuid: () => 'record-1' }),
    repository,
    strictMock<PinoLogger>('PinoLogger', {
      setContext: () => undefined,
      info: () => undefined,
      warn: () => undefined,
    }),
  );
  service.onModuleInit();
  return { service, handlers, enqueued, notes, calls, db, repository };
}

function context(type: string, log: string[]): TaskContext {
  const task = {
    id: 'task-1',
    type,
    remoteId: 'dc-east',
    vmId: VM,
    owner: 'alice@local!ci',
    credentialId: null,
  } as TaskEntity;
  return { task, log: async (message) => void log.push(message), progress: async () => undefined };
}

describe('SnapshotsService', () => {
  it('registers create, delete and rollback as exclusive tasks (one operation per VM, never during a migration)', () => {
    const { handlers } = setup();
    expect([...handlers.keys()]).toEqual([
      'vm.snapshot.create',
      'vm.snapshot.delete',
      'vm.snapshot.rollback',
    ]);
    for (const handler of handlers.values()) expect(handler.exclusive).toBe(true);
  });

  describe('create', () => {
    it("reserves a record counted against the caller's principal (not its token), then queues the task with its parameters", async () => {
      let reserved: VmSnapshotEntity | undefined;
      const { service, enqueued, notes, db } = setup({
        reserve: async (record, quota) => (
          (reserved = record),
          expect(quota).toBe(100),
          { ok: true }
        ),
      });
      await expect(service.create(MANAGER, 'dc-east', VM, { freeze: true })).resolves.toEqual({
        taskId: 'task-1',
        snapshot: 'manual-20261207t130509z',
      });
      expect(reserved).toMatchObject({
        id: 'record-1',
        vmId: VM,
        remoteId: 'dc-east',
        name: 'manual-20261207t130509z',
        createdBy: 'alice@local',
        scheduleId: null,
        state: 'pending',
      });
      expect(enqueued).toEqual([
        {
          type: 'vm.snapshot.create',
          remoteId: 'dc-east',
          vmId: VM,
          owner: 'alice@local!ci',
          credentialId: null,
        },
      ]);
      expect(db).toEqual(['task task-1 manual-20261207t130509z {"freeze":true}']);
      expect(notes).toEqual([
        { taskId: 'task-1', snapshot: 'manual-20261207t130509z', freeze: true },
      ]);
    });

    it('answers 409 naming the limit and how to make room when the principal holds its quota of snapshots of the VM, and queues nothing', async () => {
      const { service, enqueued } = setup({
        reserve: async () => ({ ok: false, reason: 'quota', used: 100 }),
      });
      const refused = await service
        .create(MANAGER, 'dc-east', VM, { name: 'one-more', freeze: true })
        .catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(DomainError);
      expect((refused as DomainError).code).toBe(ErrorCode.Conflict);
      expect((refused as DomainError).message).toMatch(
        /snapshot quota reached: alice@local holds 100 snapshots of VM .* the limit is 100 per VM and principal/,
      );
      expect((refused as DomainError).message).toMatch(
        /DEBVISOR_SNAPSHOT_QUOTA_PER_VM.*delete some of them/,
      );
      expect(enqueued).toEqual([]);
    });

    it('refuses a name the VM already has (409)', async () => {
      const { service } = setup({ reserve: async () => ({ ok: false, reason: 'exists' }) });
      await expect(
        service.create(MANAGER, 'dc-east', VM, { name: 'daily', freeze: true }),
      ).rejects.toThrow(/already has a snapshot named daily/);
    });

    it('gives the reserved place back when the task is refused (the VM is busy)', async () => {
      const { service, db } = setup({
        enqueue: async () => {
          throw new DomainError(
            ErrorCode.Conflict,
            `VM ${VM} is busy with task t (vm.migrate, running)`,
          );
        },
      });
      await expect(service.create(MANAGER, 'dc-east', VM, { freeze: true })).rejects.toThrow(
        /busy with task t \(vm.migrate/,
      );
      expect(db).toEqual(['release record-1']);
    });

    it('logs an application-consistent snapshot as such and fills its record', async () => {
      const taken: unknown[] = [];
      const { handlers, db, calls } = setup({
        params: { options: { freeze: true } },
        agents: {
          snapshotVm: async (_c: never, request: never) => (
            taken.push(request),
            vmSnapshot('snap-1')
          ),
        },
      });
      const log: string[] = [];
      await handlers.get('vm.snapshot.create')!.run(context('vm.snapshot.create', log));
      expect(calls).toEqual(['connect storage:rbd:snapshot']);
      expect(taken).toEqual([{ vmUuid: VM, snapshot: 'snap-1', freeze: true }]);
      expect(log).toEqual([
        `taking snapshot snap-1 of VM web-1 (${VM}), freezing its filesystems first if its guest agent answers`,
        'froze filesystems: application-consistent',
        'one RBD group snapshot of 2 disks: rbd/web-1-disk0, rbd/web-1-data',
      ]);
      expect(db).toEqual(['created record-1 2026-12-07T13:05:10.000Z application']);
    });

    it('logs a crash-consistent snapshot with the reason the agent gave', async () => {
      const { handlers, db } = setup({
        params: { options: { freeze: true } },
        agents: {
          snapshotVm: async () =>
            vmSnapshot('snap-1', {
              consistency: 'crash',
              consistencyReason: 'no guest agent answered within 5 s',
              group: false,
              disks: [],
            }),
        },
      });
      const log: string[] = [];
      await handlers.get('vm.snapshot.create')!.run(context('vm.snapshot.create', log));
      expect(log).toContain('crash-consistent: no guest agent answered within 5 s');
      expect(db).toEqual(['created record-1 2026-12-07T13:05:10.000Z crash']);
    });

    it('releases the record when the agent refuses, and fails the task with its message', async () => {
      const { handlers, db } = setup({
        agents: {
          snapshotVm: async () => {
            throw new DomainError(ErrorCode.Conflict, 'VM web-1 is held by migration m-1');
          },
        },
      });
      await expect(
        handlers.get('vm.snapshot.create')!.run(context('vm.snapshot.create', [])),
      ).rejects.toThrow('VM web-1 is held by migration m-1');
      expect(db).toEqual(['release record-1']);
    });
  });

  describe('rollback', () => {
    const running = async () => ({ runtime: { state: 'running' } }) as Vm__Output;
    const stopped = async () => ({ runtime: { state: 'stopped' } }) as Vm__Output;
    const list = async () => [vmSnapshot('snap-1')];

    it('refuses a running VM without stopFirst (409 saying how), and queues nothing', async () => {
      const { service, enqueued } = setup({ agents: { getVm: running, listVmSnapshots: list } });
      await expect(
        service.rollback(MANAGER, 'dc-east', VM, 'snap-1', { stopFirst: false }),
      ).rejects.toThrow(/is running: a rollback needs it stopped.*stopFirst/);
      expect(enqueued).toEqual([]);
    });

    it('answers 404 for a snapshot the VM does not have', async () => {
      const { service } = setup({ agents: { getVm: stopped, listVmSnapshots: list } });
      await expect(
        service.rollback(MANAGER, 'dc-east', VM, 'nope', { stopFirst: false }),
      ).rejects.toThrow(`snapshot nope of VM ${VM} not found`);
    });

    it('refuses a caller without vm.snapshot on the VM (403) before asking the remote anything', async () => {
      const { service, calls, enqueued } = setup({
        agents: { getVm: running, listVmSnapshots: list },
      });
      const auditor = testCaller([{ path: '/', role: 'Audit' }]);
      await expect(
        service.rollback(auditor, 'dc-east', VM, 'snap-1', { stopFirst: true }),
      ).rejects.toThrow(`permission denied: needs vm.snapshot on /remotes/dc-east/vms/${VM}`);
      expect(calls).toEqual([]);
      expect(enqueued).toEqual([]);
    });

    it('with stopFirst, the task stops a running VM, then rolls back, then re-reads the VM', async () => {
      const order: string[] = [];
      const { handlers, calls } = setup({
        params: { snapshot: 'snap-1', options: { stopFirst: true } },
        agents: {
          getVm: async () => (order.push('get'), { runtime: { state: 'running' } }) as Vm__Output,
          vmAction: async (_c: never, action: never) =>
            (order.push(`power ${action}`), { runtime: { state: 'stopped' } }) as Vm__Output,
          rollbackVm: async (_c: never, ref: { snapshot: string }) => (
            order.push(`rollback ${ref.snapshot}`),
            vmSnapshot('snap-1')
          ),
        },
      });
      const log: string[] = [];
      await handlers.get('vm.snapshot.rollback')!.run(context('vm.snapshot.rollback', log));
      expect(order).toEqual(['get', 'power stop', 'rollback snap-1']);
      expect(calls).toEqual([
        'connect storage:rbd:snapshot',
        'connect vm:instance:power',
        `refresh dc-east/${VM}`,
      ]);
      expect(log).toEqual([
        'VM is running: stopping it first (stopFirst)',
        'VM stopped: now stopped',
        `rolling every disk of VM ${VM} back to snapshot snap-1`,
        'rolled back to snap-1 taken at 2026-12-07T13:05:10Z: what was written since is gone; the VM stays stopped',
      ]);
    });

    it('without stopFirst, the task refuses a VM that was started after the request, and rolls nothing back', async () => {
      const { handlers, calls } = setup({
        params: { snapshot: 'snap-1', options: { stopFirst: false } },
        agents: { getVm: running },
      });
      await expect(
        handlers.get('vm.snapshot.rollback')!.run(context('vm.snapshot.rollback', [])),
      ).rejects.toThrow(/is running: a rollback needs it stopped/);
      expect(calls).toEqual(['connect storage:rbd:snapshot', `refresh dc-east/${VM}`]);
    });
  });

  it('after a restart, records a pending snapshot the remote has as taken and releases one it does not have', async () => {
    const { service, db } = setup({
      agents: { listVmSnapshots: async () => [vmSnapshot('taken', { consistency: 'crash' })] },
    });
    await service.settlePending(
      [
        { id: 'r-taken', remoteId: 'dc-east', vmId: VM, name: 'taken', state: 'pending' },
        { id: 'r-lost', remoteId: 'dc-east', vmId: VM, name: 'lost', state: 'pending' },
        { id: 'r-done', remoteId: 'dc-east', vmId: VM, name: 'done', state: 'created' },
      ] as VmSnapshotEntity[],
      null,
    );
    expect(db).toEqual(['created r-taken 2026-12-07T13:05:10.000Z crash', 'release r-lost']);
  });

  it('lists the remote’s snapshots oldest first with who took them and which schedule, forgets records of vanished ones, and shows the caller’s quota', async () => {
    const records = [
      { name: 'hourly-1', createdBy: 'alice@local', scheduleId: 'sched-1', description: null },
      { name: 'gone', createdBy: 'alice@local', scheduleId: null, description: null },
    ] as VmSnapshotEntity[];
    const { service, db, calls } = setup({
      records,
      agents: {
        listVmSnapshots: async () => [
          vmSnapshot('hourly-1', { createdAt: '2026-12-07T12:00:00Z' }),
          vmSnapshot('outside', {
            createdAt: '2026-12-07T11:00:00Z',
            consistency: 'crash',
            consistencyReason: 'VM stopped',
            group: false,
          }),
        ],
      },
    });
    const answer = await service.list(MANAGER, 'dc-east', VM);
    expect(calls).toEqual(['connect storage:rbd:read']);
    expect(
      answer.items.map((s) => [
        s.name,
        s.consistency,
        s.consistencyReason,
        s.createdBy,
        s.scheduleId,
      ]),
    ).toEqual([
      ['outside', 'crash', 'VM stopped', null, null],
      ['hourly-1', 'application', null, 'alice@local', 'sched-1'],
    ]);
    expect(answer.items[1].disks).toEqual([
      { pool: 'rbd', image: 'web-1-disk0', sizeBytes: 1073741824 },
      { pool: 'rbd', image: 'web-1-data', sizeBytes: 2147483648 },
    ]);
    expect(answer.quota).toEqual({ limit: 100, used: 7 });
    expect(db).toEqual(['keep only hourly-1,outside', `count ${VM} alice@local`]);
  });
});
