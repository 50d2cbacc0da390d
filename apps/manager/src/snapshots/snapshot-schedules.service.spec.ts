import type { ListVmsResponse__Output, Vm__Output, VmSnapshot__Output } from '@debvisor/proto';
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
import type { SchedulerService } from '../scheduler/scheduler.service';
import type { TaskEntity } from '../tasks/task.entity';
import type { NewTask, TaskContext, TaskHandler, TasksService } from '../tasks/tasks.service';
import type { SnapshotScheduleEntity } from './snapshot-schedule.entity';
import type { SnapshotSchedulesRepository } from './snapshot-schedules.repository';
import { SnapshotSchedulesService } from './snapshot-schedules.service';
import type { SnapshotsRepository } from './snapshots.repository';
import {
  SnapshotQuotaExceeded,
  type SnapshotShot,
  type SnapshotsService,
} from './snapshots.service';
import type { VmSnapshotEntity } from './vm-snapshot.entity';

const VM_A = '11111111-1111-4111-8111-111111111111';
const VM_B = '22222222-2222-4222-8222-222222222222';
const VM_C = '33333333-3333-4333-8333-333333333333';
const CONNECTION: AgentConnection = {
  remoteId: 'dc-east',
  endpoints: ['a:1'],
  caCertPem: 'ca',
  apiKey: 'k',
};
const CONFIG = { snapshots: { quotaPerVm: 50, scheduleTickSeconds: 60 } } as ManagerConfig;
const ADMIN: Caller = testCaller([{ path: '/', role: 'Admin' }], { display: 'root@local!ci' });

function schedule(extra: Partial<SnapshotScheduleEntity> = {}): SnapshotScheduleEntity {
  return {
    id: 'sched-1',
    name: 'hourly',
    targetType: 'vm',
    remoteId: 'dc-east',
    vmId: VM_A,
    labels: null,
    pool: null,
    intervalSeconds: 3600,
    cron: null,
    keep: 3,
    freeze: true,
    enabled: true,
    owner: 'alice@local!ci',
    credentialId: null,
    createdAt: new Date('2026-12-07T10:20:00Z'),
    updatedAt: new Date('2026-12-07T10:20:00Z'),
    lastRunAt: new Date('2026-12-07T10:20:00Z'),
    lastTaskId: null,
    nextRunAt: new Date('2026-12-07T11:20:00Z'),
    ...extra,
  };
}

/** Schedules kept in a map, with the repository's due/claim semantics. */
function memorySchedules(rows: SnapshotScheduleEntity[]) {
  const table = new Map(rows.map((row) => [row.id, { ...row }]));
  const repository = strictMock<SnapshotSchedulesRepository>('SnapshotSchedulesRepository', {
    get: async (id) => (table.has(id) ? { ...table.get(id)! } : null),
    list: async () => [...table.values()],
    insert: async (row) => void table.set(row.id, { ...row }),
    update: async (id, changes) => void Object.assign(table.get(id)!, changes),
    due: async (now) =>
      [...table.values()]
        .filter((row) => row.enabled && row.nextRunAt <= now)
        .map((row) => ({ ...row })),
    claim: async (id, ranAt, nextRunAt) => {
      const row = table.get(id)!;
      if (!row.enabled || row.nextRunAt > ranAt) return false;
      Object.assign(row, { lastRunAt: ranAt, nextRunAt });
      return true;
    },
  });
  return { table, repository };
}

interface Setup {
  rows?: SnapshotScheduleEntity[];
  now?: () => Date;
  enqueue?: (task: NewTask) => Promise<{ taskId: string }>;
  own?: VmSnapshotEntity[];
  vms?: Vm__Output[];
  reserve?: (record: { vmId: string; name: string }) => Promise<string>;
}

function setup(options: Setup = {}) {
  const handlers = new Map<string, TaskHandler>();
  const enqueued: NewTask[] = [];
  const events: string[] = [];
  const { table, repository } = memorySchedules(options.rows ?? [schedule()]);
  let clock = options.now ?? (() => new Date('2026-12-07T17:45:00Z'));
  let taskCount = 0;
  const service = new SnapshotSchedulesService(
    CONFIG,
    strictMock<TasksService>('TasksService', {
      registerHandler: (type, handler) => void handlers.set(type, handler),
      enqueue: async (task, enqueueOptions) => {
        const accepted = options.enqueue
          ? await options.enqueue(task)
          : { taskId: `task-${++taskCount}` };
        enqueued.push(task);
        await enqueueOptions?.prepare?.(accepted.taskId);
        return accepted;
      },
    }),
    strictMock<RemotesService>('RemotesService', {
      get: async () => ({}) as never,
      connectionFor: async () => CONNECTION,
    }),
    strictMock<AgentClientRepository>('AgentClientRepository', {
      listVms: async () => ({ vms: options.vms ?? [] }) as ListVmsResponse__Output,
    }),
    strictMock<AuditService>('AuditService', {
      note: () => undefined,
      runAs: (_principal, work) => work(),
    }),
    new AccessPolicy(),
    strictMock<ClockRepository>('ClockRepository', { now: () => clock() }),
    strictMock<RandomRepository>('RandomRepository', { uuid: () => 'sched-new' }),
    repository,
    strictMock<SnapshotsRepository>('SnapshotsRepository', {
      insertTask: async (params) =>
        void events.push(`params ${params.taskId} ${params.scheduleId}`),
      taskParams: async (taskId) => ({
        taskId,
        snapshot: null,
        scheduleId: 'sched-1',
        options: {},
      }),
      ofSchedule: async (scheduleId, remoteId, vmId) => (
        events.push(`retention looks at ${scheduleId} ${remoteId} ${vmId}`),
        options.own ?? []
      ),
    }),
    strictMock<SnapshotsService>('SnapshotsService', {
      reserve: async (record) => (
        events.push(
          `reserve ${record.vmId} ${record.name} for ${record.createdBy} (schedule ${record.scheduleId})`,
        ),
        options.reserve ? options.reserve(record) : `rec-${record.vmId}`
      ),
      take: async (_context, _connection, shot: SnapshotShot) => (
        events.push(`take ${shot.vmId} ${shot.name} freeze=${shot.freeze}`),
        {} as VmSnapshot__Output
      ),
      deleteSnapshot: async (_connection, _remote, vmId, name) =>
        void events.push(`delete ${vmId} ${name}`),
    }),
    strictMock<PinoLogger>('PinoLogger', {
      setContext: () => undefined,
      warn: () => undefined,
      error: () => undefined,
    }),
    strictMock<SchedulerService>('SchedulerService', { register: () => undefined }),
  );
  service.onModuleInit();
  return {
    service,
    handlers,
    enqueued,
    events,
    table,
    setClock: (now: Date) => (clock = () => now),
  };
}

function context(log: string[]): TaskContext {
  const task = {
    id: 'task-1',
    type: 'vm.snapshot.schedule',
    remoteId: 'dc-east',
    vmId: VM_A,
    owner: 'alice@local!ci',
    credentialId: null,
  } as TaskEntity;
  return { task, log: async (message) => void log.push(message), progress: async () => undefined };
}

function record(name: string, takenAt: string): VmSnapshotEntity {
  return {
    name,
    takenAt: new Date(takenAt),
    scheduleId: 'sched-1',
    state: 'created',
  } as VmSnapshotEntity;
}

function vm(uuid: string, labels: Record<string, string>, pools: string[]): Vm__Output {
  return {
    spec: { uuid, labels, disks: pools.map((pool) => ({ pool, image: `${uuid}-${pool}` })) },
  } as unknown as Vm__Output;
}

describe('SnapshotSchedulesService', () => {
  describe('the scheduler’s tick', () => {
    it('after a downtime that missed six hourly runs, starts exactly one run and plans the next slot after now', async () => {
      const { service, enqueued, table, events, setClock } = setup();
      // Due at 11:20; the manager was down until 17:45.
      await expect(service.runDue()).resolves.toBe(1);
      expect(enqueued).toEqual([
        {
          type: 'vm.snapshot.schedule',
          remoteId: 'dc-east',
          vmId: VM_A,
          owner: 'alice@local!ci',
          credentialId: null,
        },
      ]);
      expect(events).toEqual(['params task-1 sched-1']);
      expect(table.get('sched-1')).toMatchObject({
        lastRunAt: new Date('2026-12-07T17:45:00Z'),
        nextRunAt: new Date('2026-12-07T18:20:00Z'),
        lastTaskId: 'task-1',
      });
      // The next ticks before 18:20 start nothing; the one at 18:20 starts the next run.
      setClock(new Date('2026-12-07T17:46:00Z'));
      await expect(service.runDue()).resolves.toBe(0);
      setClock(new Date('2026-12-07T18:20:00Z'));
      await expect(service.runDue()).resolves.toBe(1);
      expect(enqueued).toHaveLength(2);
      expect(table.get('sched-1')!.nextRunAt).toEqual(new Date('2026-12-07T19:20:00Z'));
    });

    it('skips disabled schedules and those not yet due', async () => {
      const { service, enqueued } = setup({
        rows: [
          schedule({ id: 'off', enabled: false }),
          schedule({ id: 'later', nextRunAt: new Date('2026-12-07T18:00:00Z') }),
        ],
      });
      await expect(service.runDue()).resolves.toBe(0);
      expect(enqueued).toEqual([]);
    });

    it('leaves a run refused because the VM is busy due, to be tried at the next tick', async () => {
      const { service, table } = setup({
        enqueue: async () => {
          throw new DomainError(
            ErrorCode.Conflict,
            `VM ${VM_A} is busy with task t (vm.migrate, running)`,
          );
        },
      });
      await expect(service.runDue()).resolves.toBe(0);
      expect(table.get('sched-1')).toMatchObject({
        nextRunAt: new Date('2026-12-07T11:20:00Z'),
        lastRunAt: new Date('2026-12-07T10:20:00Z'),
      });
    });
  });

  describe('a run', () => {
    it("snapshots the VM as the schedule's owner, then deletes this schedule's oldest snapshots beyond keep, oldest first", async () => {
      // Newest first, as the repository answers: keep 3 of 5.
      const own = [
        record('hourly-5', '2026-12-07T17:45:00Z'),
        record('hourly-4', '2026-12-07T16:20:00Z'),
        record('hourly-3', '2026-12-07T15:20:00Z'),
        record('hourly-2', '2026-12-07T14:20:00Z'),
        record('hourly-1', '2026-12-07T13:20:00Z'),
      ];
      const { handlers, events } = setup({ own });
      const log: string[] = [];
      await handlers.get('vm.snapshot.schedule')!.run(context(log));
      expect(events).toEqual([
        `reserve ${VM_A} hourly-20261207t174500z for alice@local (schedule sched-1)`,
        `take ${VM_A} hourly-20261207t174500z freeze=true`,
        `retention looks at sched-1 dc-east ${VM_A}`,
        `delete ${VM_A} hourly-1`,
        `delete ${VM_A} hourly-2`,
      ]);
      expect(log).toEqual([
        `schedule hourly (VM ${VM_A}): 1 VM(s), keep 3 each`,
        `retention (keep 3): deleted hourly-1 of VM ${VM_A}`,
        `retention (keep 3): deleted hourly-2 of VM ${VM_A}`,
      ]);
    });

    it('deletes nothing while a VM holds no more than keep of its snapshots', async () => {
      const { handlers, events } = setup({
        own: [
          record('hourly-2', '2026-12-07T14:20:00Z'),
          record('hourly-1', '2026-12-07T13:20:00Z'),
        ],
      });
      await handlers.get('vm.snapshot.schedule')!.run(context([]));
      expect(events.filter((e) => e.startsWith('delete'))).toEqual([]);
    });

    it('covers the VMs whose labels match at the time of the run, and those with a disk in a pool', async () => {
      const vms = [
        vm(VM_A, { env: 'prod', tier: 'web' }, ['rbd']),
        vm(VM_B, { env: 'prod' }, ['ssd']),
        vm(VM_C, { env: 'dev', tier: 'web' }, ['rbd', 'ssd']),
      ];
      const labelled = setup({
        vms,
        rows: [
          schedule({ targetType: 'labels', vmId: null, labels: { env: 'prod', tier: 'web' } }),
        ],
      });
      await labelled.handlers.get('vm.snapshot.schedule')!.run(context([]));
      expect(
        labelled.events.filter((e) => e.startsWith('take')).map((e) => e.split(' ')[1]),
      ).toEqual([VM_A]);
      const pooled = setup({
        vms,
        rows: [schedule({ targetType: 'pool', vmId: null, pool: 'ssd' })],
      });
      await pooled.handlers.get('vm.snapshot.schedule')!.run(context([]));
      expect(pooled.events.filter((e) => e.startsWith('take')).map((e) => e.split(' ')[1])).toEqual(
        [VM_B, VM_C],
      );
    });

    it('goes on with the other VMs when one is over its quota, keeps that VM’s old snapshots, and fails the task naming it', async () => {
      const vms = [vm(VM_A, { env: 'prod' }, ['rbd']), vm(VM_B, { env: 'prod' }, ['rbd'])];
      const { handlers, events } = setup({
        vms,
        // Manual snapshots hold VM_A's quota: the schedule's one snapshot there is within keep and stays.
        own: [record('a', '2026-12-07T14:20:00Z')],
        rows: [schedule({ targetType: 'labels', vmId: null, labels: { env: 'prod' }, keep: 2 })],
        reserve: async (r) => {
          if (r.vmId === VM_A)
            throw new SnapshotQuotaExceeded(
              50,
              50,
              'snapshot quota reached: alice@local holds 50 snapshots',
            );
          return 'rec';
        },
      });
      const log: string[] = [];
      await expect(handlers.get('vm.snapshot.schedule')!.run(context(log))).rejects.toThrow(
        `1 of 2 VM(s) not snapshotted: ${VM_A}: snapshot quota reached`,
      );
      expect(events.filter((e) => !e.startsWith('reserve'))).toEqual([
        `retention looks at sched-1 dc-east ${VM_A}`,
        `take ${VM_B} hourly-20261207t174500z freeze=true`,
        `retention looks at sched-1 dc-east ${VM_B}`,
      ]);
      expect(log).toContain(`VM ${VM_A}: snapshot quota reached: alice@local holds 50 snapshots`);
    });

    it("at the quota, makes room from the schedule's own oldest snapshots before taking the new one", async () => {
      let refusals = 1;
      const own = [
        record('hourly-2', '2026-12-07T14:20:00Z'),
        record('hourly-1', '2026-12-07T13:20:00Z'),
      ];
      const { handlers, events } = setup({
        own,
        rows: [schedule({ keep: 2 })],
        reserve: async () => {
          if (refusals-- > 0) throw new SnapshotQuotaExceeded(3, 3, 'snapshot quota reached');
          return 'rec';
        },
      });
      await handlers.get('vm.snapshot.schedule')!.run(context([]));
      expect(events.filter((e) => !e.startsWith('retention looks'))).toEqual([
        `reserve ${VM_A} hourly-20261207t174500z for alice@local (schedule sched-1)`,
        `delete ${VM_A} hourly-1`,
        `reserve ${VM_A} hourly-20261207t174500z for alice@local (schedule sched-1)`,
        `take ${VM_A} hourly-20261207t174500z freeze=true`,
      ]);
    });
  });

  describe('create', () => {
    it('plans the first run one interval after its creation and records its owner', async () => {
      const { service, table } = setup({ rows: [] });
      const view = await service.create(ADMIN, {
        name: 'daily',
        target: { type: 'vm', remote: 'dc-east', vm: VM_A },
        interval: '1d',
        keep: 7,
        freeze: true,
        enabled: true,
      });
      expect(view).toMatchObject({
        id: 'sched-new',
        interval: '1d',
        cron: null,
        keep: 7,
        owner: 'root@local!ci',
        nextRunAt: '2026-12-08T17:45:00.000Z',
        lastRunAt: null,
      });
      expect(table.get('sched-new')).toMatchObject({
        owner: 'root@local!ci',
        credentialId: null,
        intervalSeconds: 86_400,
      });
      const cron = await service.update(ADMIN, 'sched-new', { cron: '0 3 * * *' });
      expect(cron).toMatchObject({
        interval: null,
        cron: '0 3 * * *',
        nextRunAt: '2026-12-08T03:00:00.000Z',
      });
    });

    it('refuses a keep count over the snapshot quota (400)', async () => {
      const { service } = setup({ rows: [] });
      await expect(
        service.create(ADMIN, {
          name: 'x',
          target: { type: 'vm', remote: 'dc-east', vm: VM_A },
          interval: '1h',
          keep: 51,
          freeze: true,
          enabled: true,
        }),
      ).rejects.toThrow(/keep 51 is over the snapshot quota of 50/);
    });

    it('answers a tenant’s schedule for a VM it may not see like a missing VM (404), and one on a whole remote with 403', async () => {
      const tenant = testCaller([{ path: `/remotes/dc-east/vms/${VM_B}`, role: 'Manage' }]);
      const { service } = setup({ rows: [] });
      await expect(
        service.create(tenant, {
          name: 'x',
          target: { type: 'vm', remote: 'dc-east', vm: VM_A },
          interval: '1h',
          keep: 1,
          freeze: true,
          enabled: true,
        }),
      ).rejects.toThrow('virtual machine not found');
      await expect(
        service.create(tenant, {
          name: 'x',
          target: { type: 'pool', remote: 'dc-east', pool: 'rbd' },
          interval: '1h',
          keep: 1,
          freeze: true,
          enabled: true,
        }),
      ).rejects.toThrow('permission denied: needs vm.snapshot on /remotes/dc-east');
      await expect(
        service.create(tenant, {
          name: 'x',
          target: { type: 'vm', remote: 'dc-east', vm: VM_B },
          interval: '1h',
          keep: 1,
          freeze: true,
          enabled: true,
        }),
      ).resolves.toMatchObject({ name: 'x' });
    });

    it('lists only the schedules whose target the caller may see', async () => {
      const tenant = testCaller([{ path: `/remotes/dc-east/vms/${VM_B}`, role: 'Audit' }]);
      const { service } = setup({
        rows: [
          schedule(),
          schedule({ id: 'mine', vmId: VM_B }),
          schedule({ id: 'pool', targetType: 'pool', vmId: null, pool: 'rbd' }),
        ],
      });
      expect((await service.list(tenant)).items.map((s) => s.id)).toEqual(['mine']);
      expect((await service.list(ADMIN)).items.map((s) => s.id)).toEqual([
        'sched-1',
        'mine',
        'pool',
      ]);
      await expect(service.get(tenant, 'sched-1')).rejects.toThrow(
        'snapshot schedule sched-1 not found',
      );
    });
  });
});
