import type { PrepareMigrationRequest } from '@debvisor/proto';
import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import type { AuditService } from '../audit/audit.service';
import type { AclService } from '../acl/acl.service';
import type { MetricsService } from '../health/metrics.service';
import type { PinoLogger } from 'nestjs-pino';
import type { MigrationTimerRepository } from './migration-timer.repository';
import type { MigrationEvents } from './migration-events';
import { AccessPolicy } from '../authz/access-policy.service';
import type { Caller } from '../authz/caller';
import { testCaller } from '../../test/test-caller';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { RemotesService } from '../remotes/remotes.service';
import type { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import type { EnqueueOptions, NewTask, TaskHandler, TasksService } from '../tasks/tasks.service';
import { MigrationPreflightService } from './migration-preflight.service';
import type { MigrationRecoveryService } from './migration-recovery.service';
import { InFlightMigrations, MIGRATE_PERMISSION } from './in-flight-migrations.service';
import { MigrationLinks } from './migration-links.service';
import { MigrationRunnerService } from './migration-runner.service';
import type { MigrationFigures } from '../task-details/migration-details.dto';
import { migrateBodySchema } from './migration.dto';
import type { VmMigrationEntity } from './migration.entity';
import type { MigrationRepository } from './migration.repository';
import { MigrationService } from './migration.service';
import {
  answer,
  EAST,
  migrationRecord,
  OPTIONS,
  TASK_ID,
  VM,
  vmOn,
  WEST,
} from '../../test/migration-fixtures';

const NOW = new Date('2026-05-01T12:00:00Z');
const ADMIN: Caller = testCaller([{ path: '/', role: 'Admin' }], { display: 'root@local!b' });

function setup(
  options: {
    busy?: Pick<TaskEntity, 'id' | 'type' | 'state'>;
    enqueue?: (task: NewTask, opts?: EnqueueOptions) => Promise<{ taskId: string }>;
    recent?: MigrationFigures[];
    linkCapBytes?: number;
  } = {},
) {
  const handlers = new Map<string, TaskHandler>();
  const inserted: VmMigrationEntity[] = [];
  const enqueued: NewTask[] = [];
  const notes: Record<string, unknown>[] = [];
  const connections: string[] = [];
  const prepared: PrepareMigrationRequest[] = [];
  const agents = strictMock<AgentClientRepository>('AgentClientRepository', {
    getVm: async () => vmOn('node-1'),
    prepareMigration: async (_c: AgentConnection, request: PrepareMigrationRequest) => {
      prepared.push(request);
      return request.role === 'source'
        ? answer({ checks: [{ name: 'vm-state', result: 'pass', reason: 'running' }] })
        : answer({ checks: [{ name: 'memory', result: 'warn', reason: 'tight' }] });
    },
  });
  const remotes = strictMock<RemotesService>('RemotesService', {
    get: async (id: string) => {
      if (id === 'nowhere') throw DomainError.notFound(`remote ${id}`);
      return {} as never;
    },
    connectionFor: async (
      remote: string,
      credentialId: string | null = null,
      permission?: string,
    ) => {
      connections.push(`${remote} ${credentialId} ${permission}`);
      return remote === 'dc-west' ? WEST : EAST;
    },
  });
  const repository = strictMock<MigrationRepository>('MigrationRepository', {
    insert: async (record: VmMigrationEntity) => void inserted.push(record),
    activeTaskOf: async () => options.busy,
    recentTransfers: async () => options.recent ?? [],
    get: async () => migrationRecord({ sourceNode: 'node-1', phase: 'transfer', progress: null }),
  });
  // The runner only lends its connect() here; its other collaborators are never reached.
  const inFlight = new InFlightMigrations(
    repository,
    agents,
    remotes,
    strictMock<ResourcesService>('ResourcesService'),
    strictMock<AclService>('AclService'),
    strictMock<MetricsService>('MetricsService'),
    strictMock<ClockRepository>('ClockRepository'),
    strictMock<MigrationTimerRepository>('MigrationTimerRepository'),
    strictMock<PinoLogger>('PinoLogger', { setContext: () => undefined }),
    strictMock<MigrationEvents>('MigrationEvents'),
  );
  const links = new MigrationLinks({ migrationLinkCapBytes: options.linkCapBytes ?? 0 });
  const runner = new MigrationRunnerService(
    inFlight,
    new MigrationPreflightService(agents),
    agents,
    links,
  );
  const service = new MigrationService(
    strictMock<TasksService>('TasksService', {
      registerHandler: (type: string, handler: TaskHandler) => void handlers.set(type, handler),
      enqueue:
        options.enqueue ??
        (async (task: NewTask, opts: EnqueueOptions = {}) => {
          enqueued.push(task);
          await opts.prepare?.(TASK_ID);
          return { taskId: TASK_ID };
        }),
    }),
    remotes,
    strictMock<ResourcesService>('ResourcesService'),
    new AccessPolicy(),
    strictMock<AuditService>('AuditService', {
      note: (details: Record<string, unknown>) => void notes.push(details),
    }),
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
    repository,
    new MigrationPreflightService(agents),
    runner,
    strictMock<MigrationRecoveryService>('MigrationRecoveryService'),
    links,
  );
  service.onModuleInit();
  return { service, handlers, inserted, enqueued, notes, connections, prepared };
}

const body = (extra: Record<string, unknown> = {}) =>
  migrateBodySchema.parse({ targetNode: 'node-2', ...extra });

describe('MigrationService', () => {
  it('registers vm.migrate as an exclusive, cancellable, resumable task type', () => {
    const { handlers } = setup();
    const handler = handlers.get('vm.migrate')!;
    expect(handler.exclusive).toBe(true);
    expect(
      [handler.resume, handler.cancel, handler.suspend, handler.details].every(
        (f) => typeof f === 'function',
      ),
    ).toBe(true);
  });

  it('queues the migration as a task of the caller and stores its record with the defaults filled in, before the task can start', async () => {
    const { service, enqueued, inserted, notes, connections } = setup();
    await expect(service.request(ADMIN, 'dc-east', VM, body())).resolves.toEqual({
      taskId: TASK_ID,
    });
    expect(enqueued).toEqual([
      {
        type: 'vm.migrate',
        remoteId: 'dc-east',
        vmId: VM,
        owner: 'root@local!b',
        credentialId: null,
      },
    ]);
    expect(inserted).toEqual([
      expect.objectContaining({
        taskId: TASK_ID,
        vmId: VM,
        sourceRemote: 'dc-east',
        sourceNode: null,
        targetRemote: 'dc-east',
        targetNode: 'node-2',
        phase: 'preflight',
        options: OPTIONS,
        createdAt: NOW,
      }),
    ]);
    expect(connections).toEqual([`dc-east null ${MIGRATE_PERMISSION}`]);
    expect(notes).toEqual([
      {
        taskId: TASK_ID,
        targetRemote: 'dc-east',
        targetNode: 'node-2',
        online: true,
        transport: 'direct',
        mode: 'precopy',
      },
    ]);
  });

  it('tunnels across remotes by default and checks both remotes’ credentials', async () => {
    const { service, inserted, connections } = setup();
    await service.request(
      ADMIN,
      'dc-east',
      VM,
      body({
        targetRemote: 'dc-west',
        bandwidthLimitBytes: 1_000_000,
        storageMap: { rbd: 'rbd-dr' },
      }),
    );
    expect(inserted[0]).toMatchObject({
      targetRemote: 'dc-west',
      options: {
        transport: 'tunnel',
        bandwidthLimitBytes: 1_000_000,
        storageMap: { rbd: 'rbd-dr' },
      },
    });
    expect(connections).toEqual([
      `dc-east null ${MIGRATE_PERMISSION}`,
      `dc-west null ${MIGRATE_PERMISSION}`,
    ]);
  });

  it('needs vm.migrate on the target remote too: 403 without it, before revealing whether the remote exists', async () => {
    const { service, enqueued } = setup();
    const vmOnly = testCaller([{ path: `/remotes/dc-east/vms/${VM}`, role: 'Manage' }]);
    await expect(service.request(vmOnly, 'dc-east', VM, body())).rejects.toMatchObject({
      code: ErrorCode.Forbidden,
      message: 'permission denied: needs vm.migrate on /remotes/dc-east',
    });
    const eastOnly = testCaller([{ path: '/remotes/dc-east', role: 'Manage' }]);
    await expect(
      service.request(eastOnly, 'dc-east', VM, body({ targetRemote: 'nowhere' })),
    ).rejects.toMatchObject({ code: ErrorCode.Forbidden });
    await expect(
      service.request(ADMIN, 'dc-east', VM, body({ targetRemote: 'nowhere' })),
    ).rejects.toMatchObject({ code: ErrorCode.NotFound });
    expect(enqueued).toEqual([]);
  });

  it('passes on the 409 of a VM that is busy', async () => {
    const { service, inserted } = setup({
      enqueue: async () =>
        Promise.reject(
          new DomainError(ErrorCode.Conflict, 'VM … is busy with task t1 (vm.stop, running)'),
        ),
    });
    await expect(service.request(ADMIN, 'dc-east', VM, body())).rejects.toMatchObject({
      code: ErrorCode.Conflict,
    });
    expect(inserted).toEqual([]);
  });

  it("pre-flight: answers both ends' checks and the manager's, reserving nothing", async () => {
    const { service, prepared } = setup({ busy: { id: 't1', type: 'vm.stop', state: 'running' } });
    const answered = await service.preflight(ADMIN, 'dc-east', VM, body());
    expect(answered).toEqual({
      ok: false,
      source: { remote: 'dc-east', node: 'node-1' },
      target: { remote: 'dc-east', node: 'node-2' },
      transport: 'direct',
      checks: [
        {
          side: 'manager',
          name: 'vm-operation',
          result: 'fail',
          reason: 'the VM is busy with task t1 (vm.stop, running); one operation per VM at a time',
        },
        { side: 'source', name: 'vm-state', result: 'pass', reason: 'running' },
        { side: 'target', name: 'memory', result: 'warn', reason: 'tight' },
      ],
      estimate: {
        memoryBytes: 268435456,
        measuredBytesPerSecond: null,
        measuredMigrations: 0,
        linkCapBytesPerSecond: null,
        bytesPerSecond: null,
        seconds: null,
      },
    });
    expect(prepared.map((r) => [r.role, r.checkOnly, r.migrationId ?? ''])).toEqual([
      ['source', true, ''],
      ['target', true, ''],
    ]);
  });

  it('pre-flight: estimates the transfer time from the rate measured between the remotes, the limit and the link cap', async () => {
    const figures = (transferredBytes: number, totalTimeMs: number | null) =>
      ({ transferredBytes, totalTimeMs }) as MigrationFigures;
    const recent = [figures(200e6, 1000), figures(300e6, 1000), figures(100e6, 1000)];
    // one without QEMU's total time is left out
    const measured = setup({ recent: [...recent, figures(1e9, null)] });
    const across = { targetRemote: 'dc-west', storageMap: {} };
    expect((await measured.service.preflight(ADMIN, 'dc-east', VM, body(across))).estimate).toEqual(
      {
        memoryBytes: 268435456,
        measuredBytesPerSecond: 200e6,
        measuredMigrations: 3,
        linkCapBytesPerSecond: null,
        bytesPerSecond: 200e6,
        seconds: 2,
      },
    );
    const capped = setup({ recent, linkCapBytes: 50e6 });
    const limited = await capped.service.preflight(
      ADMIN,
      'dc-east',
      VM,
      body({ ...across, bandwidthLimitBytes: 100e6 }),
    );
    expect(limited.estimate).toMatchObject({
      linkCapBytesPerSecond: 50e6,
      bytesPerSecond: 50e6,
      seconds: 6,
    });
    const offline = await capped.service.preflight(
      ADMIN,
      'dc-east',
      VM,
      body({ ...across, online: false }),
    );
    expect(offline.estimate).toMatchObject({ memoryBytes: 0, seconds: 0 });
  });

  it('shows the migration of a task: record, figures and the journal taken from the log', async () => {
    const { service } = setup();
    const task = {
      id: TASK_ID,
      state: 'running',
      log: [
        { at: '2026-05-01T12:00:00.000Z', message: 'queued by root@local!b' },
        { at: '2026-05-01T12:00:01.000Z', message: '[preflight] all 3 checks passed' },
        { at: '2026-05-01T12:00:02.000Z', message: '[transfer] source: precopy' },
      ],
    } as unknown as TaskEntity;
    const { migration } = await service.details(task);
    expect(migration).toMatchObject({
      phase: 'transfer',
      vm: VM,
      source: { remote: 'dc-east', node: 'node-1' },
      target: { remote: 'dc-east', node: 'node-2' },
      progress: null,
    });
    expect(migration!.journal).toEqual([
      { at: '2026-05-01T12:00:01.000Z', phase: 'preflight', message: 'all 3 checks passed' },
      { at: '2026-05-01T12:00:02.000Z', phase: 'transfer', message: 'source: precopy' },
    ]);
    // A task that ended without its runner (a restart failed it before it started) shows its own end.
    expect(
      (await service.details({ ...task, state: 'failed' } as TaskEntity)).migration!.phase,
    ).toBe('failed');
  });

  it('keeps the request body within bounds', () => {
    expect(() => migrateBodySchema.parse({ targetNode: 'node-2', cookie: 'x' })).toThrow();
    expect(() => migrateBodySchema.parse({ targetNode: 'Node 2' })).toThrow();
    expect(() =>
      migrateBodySchema.parse({
        targetNode: 'node-2',
        storageMap: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`p${i}`, 'q'])),
      }),
    ).toThrow('at most 64 entries');
    expect(() =>
      migrateBodySchema.parse({ targetNode: 'node-2', networkMap: { '-evil': 'br0' } }),
    ).toThrow();
    expect(() =>
      migrateBodySchema.parse({ targetNode: 'node-2', transport: 'carrier-pigeon' }),
    ).toThrow();
  });
});
