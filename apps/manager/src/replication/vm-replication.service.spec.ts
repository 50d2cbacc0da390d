import type { Vm__Output } from '@debvisor/proto';
import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { AuditService } from '../audit/audit.service';
import { AccessPolicy } from '../authz/access-policy.service';
import { testCaller } from '../../test/test-caller';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MigrationEvents } from '../migration/migration-events';
import type { RemotesService } from '../remotes/remotes.service';
import { TaskSuspended } from '../tasks/task-suspended';
import type { TaskEntity } from '../tasks/task.entity';
import type { NewTask, TaskContext, TaskHandler, TasksService } from '../tasks/tasks.service';
import type { DrRecoveryService } from './dr-recovery.service';
import type { DrRunnerService } from './dr-runner.service';
import type { ReplicationPairEntity } from './replication-pair.entity';
import type { ReplicationPollerService } from './replication-poller.service';
import type { Observation, ReplicationStatusService } from './replication-status.service';
import { enableReplicationSchema, failoverSchema } from './replication.dto';
import type { ReplicationRepository } from './replication.repository';
import type { VmReplicationEntity } from './vm-replication.entity';
import { view, VmReplicationService } from './vm-replication.service';

const VM = '3f1d2c4b-5a6e-4f70-8a9b-0c1d2e3f4a5b';
const OTHER_VM = '11111111-1111-4111-8111-111111111111';
const NOW = new Date('2026-01-01T01:00:00Z');
const ADMIN = testCaller([{ path: '/', role: 'Admin' }], { display: 'admin@local!t' });
const OPERATOR = testCaller([{ path: '/', role: 'Manage' }], { display: 'ops@local!t' });
const AUDITOR = testCaller([{ path: '/', role: 'Audit' }], { display: 'audit@local!t' });

const PAIR: ReplicationPairEntity = {
  id: 'pair-1',
  remoteA: 'dc-a',
  poolA: 'rbd',
  remoteB: 'dc-b',
  poolB: 'rbd-b',
  state: 'paired',
  error: null,
  taskId: 't',
  createdAt: NOW,
  updatedAt: NOW,
};

function record(vmId = VM, overrides: Partial<VmReplicationEntity> = {}): VmReplicationEntity {
  return {
    vmId,
    vmName: 'web-1',
    pairId: 'pair-1',
    sourceRemote: 'dc-a',
    sourcePool: 'rbd',
    targetRemote: 'dc-b',
    targetPool: 'rbd-b',
    sourceState: 'primary',
    targetState: 'secondary',
    phase: 'active',
    disks: [{ pool: 'rbd', image: 'web-1-disk0' }],
    spec: {},
    rpoTargetSeconds: 300,
    scheduleInterval: '5m',
    pending: null,
    lastChange: 'enabled',
    lastChangeAt: NOW,
    createdAt: NOW,
    ...overrides,
  };
}

const OBSERVED: Observation = {
  at: new Date('2026-01-01T00:59:00Z'),
  images: [],
  rpoSeconds: 250,
  lastMirroredSnapshotAt: '2026-01-01T00:54:50Z',
  splitBrain: false,
  health: 'ok',
  reachable: { source: false, target: true },
};

function setup(
  options: {
    records?: VmReplicationEntity[];
    disks?: { pool: string; image: string }[];
    runner?: Partial<Record<keyof DrRunnerService, unknown>>;
  } = {},
) {
  const records = options.records ?? [record()];
  const enqueued: NewTask[] = [];
  const notes: Record<string, unknown>[] = [];
  const stored: unknown[] = [];
  const handlers = new Map<string, TaskHandler>();
  const remembered: string[] = [];
  const events = new MigrationEvents();
  const service = new VmReplicationService(
    strictMock<ReplicationRepository>('ReplicationRepository', {
      getVm: async (id: string) => records.find((r) => r.vmId === id) ?? null,
      listVms: async () => records,
      getPair: async (id: string) => (id === PAIR.id ? PAIR : null),
      pairsBetween: async () => [PAIR],
      insertVm: async (row) => void stored.push(['insertVm', row]),
      setPending: async (...args) => void stored.push(['setPending', ...args]),
      setRoles: async (...args) => void stored.push(['setRoles', ...args]),
    }),
    strictMock<ReplicationStatusService>('ReplicationStatusService', {
      observe: async () => OBSERVED,
    }),
    strictMock<ReplicationPollerService>('ReplicationPollerService', {
      cached: () => OBSERVED,
      remember: (vmId: string) => void remembered.push(vmId),
    }),
    strictMock<DrRunnerService>('DrRunnerService', (options.runner ?? {}) as never),
    strictMock<TasksService>('TasksService', {
      registerHandler: (type: string, handler: TaskHandler) => void handlers.set(type, handler),
      enqueue: async (task, enqueueOptions) => {
        enqueued.push(task);
        await enqueueOptions?.prepare?.('task-1');
        return { taskId: 'task-1' };
      },
    }),
    strictMock<RemotesService>('RemotesService', {
      get: async () => ({}) as never,
      connectionFor: async (remoteId: string) => ({
        remoteId,
        endpoints: [],
        caCertPem: '',
        apiKey: '',
      }),
    }),
    strictMock<AgentClientRepository>('AgentClientRepository', {
      getVm: async () =>
        ({
          spec: {
            uuid: VM,
            name: 'web-1',
            disks: options.disks ?? [
              { pool: 'rbd', image: 'web-1-disk0', sizeBytes: '1', bus: 'virtio' },
            ],
          },
        }) as unknown as Vm__Output,
    }),
    new AccessPolicy(),
    strictMock<AuditService>('AuditService', {
      note: (details) => void notes.push(details),
      runAs: (_principal, work) => work(),
    }),
    strictMock<ClockRepository>('ClockRepository', { now: () => NOW }),
    events,
    strictMock<DrRecoveryService>('DrRecoveryService'),
  );
  service.onModuleInit();
  return { service, enqueued, notes, stored, handlers, events, remembered };
}

describe('VmReplicationService: failover', () => {
  it('refuses a body without the data-loss confirmation, and a declaration without a reason (400 before anything)', () => {
    expect(failoverSchema.safeParse({}).success).toBe(false);
    expect(failoverSchema.safeParse({ confirmDataLoss: false }).error?.issues[0].message).toMatch(
      /confirmDataLoss must be true/,
    );
    expect(
      failoverSchema.safeParse({ confirmDataLoss: true, declareSourceDown: true }).error?.issues[0],
    ).toMatchObject({ path: ['reason'], message: 'declareSourceDown needs a reason' });
    expect(failoverSchema.parse({ confirmDataLoss: true })).toEqual({
      confirmDataLoss: true,
      declareSourceDown: false,
    });
  });

  it('queues an exclusive failover task and records the confirmation and the declaration in the audit entry', async () => {
    const s = setup();
    await expect(
      s.service.failover(
        ADMIN,
        'dc-b',
        VM,
        failoverSchema.parse({
          confirmDataLoss: true,
          declareSourceDown: true,
          reason: 'site A flooded',
        }),
      ),
    ).resolves.toEqual({ taskId: 'task-1' });
    expect(s.handlers.get('vm.replication.failover')?.exclusive).toBe(true);
    expect(s.enqueued).toEqual([
      {
        type: 'vm.replication.failover',
        remoteId: 'dc-b',
        vmId: VM,
        owner: 'admin@local!t',
        credentialId: null,
      },
    ]);
    expect(s.stored).toEqual([
      [
        'setPending',
        VM,
        {
          action: 'failover',
          taskId: 'task-1',
          credentials: { 'dc-a': null, 'dc-b': null },
          declareSourceDown: true,
          reason: 'site A flooded',
          targetNode: undefined,
        },
      ],
    ]);
    expect(s.notes).toContainEqual({
      confirmDataLoss: true,
      declareSourceDown: true,
      declaredDown: 'dc-a',
      reason: 'site A flooded',
    });
  });

  it('is Admin only: an operator (Manage) gets 403 and nothing is queued', async () => {
    const s = setup();
    await expect(
      s.service.failover(OPERATOR, 'dc-a', VM, failoverSchema.parse({ confirmDataLoss: true })),
    ).rejects.toMatchObject({ code: ErrorCode.Forbidden });
    expect(s.enqueued).toEqual([]);
  });

  it('refuses (409) to fail over to a site that is being resynced', async () => {
    const s = setup({ records: [record(VM, { targetState: 'resync' })] });
    await expect(
      s.service.failover(ADMIN, 'dc-a', VM, failoverSchema.parse({ confirmDataLoss: true })),
    ).rejects.toMatchObject({ code: ErrorCode.Conflict });
    expect(s.enqueued).toEqual([]);
  });

  it('previews the data at risk, and asks for a declaration when the source cannot be fenced', async () => {
    const s = setup();
    const preview = await s.service.failoverPreview('dc-a', VM);
    expect(preview).toMatchObject({
      from: 'dc-a',
      to: 'dc-b',
      rpoSeconds: 250,
      lastMirroredSnapshotAt: '2026-01-01T00:54:50Z',
      sourceReachable: false,
      requires: { confirmDataLoss: true, declareSourceDown: true },
    });
    expect(preview.dataAtRisk).toMatch(
      /in the last 250 s .* dc-a does not answer and cannot be fenced: you must declare it down/,
    );
  });
});

describe('VmReplicationService: enable and the other actions', () => {
  it('enables through the pair between the two remotes, storing all the disks and the VM definition', async () => {
    const s = setup({ records: [] });
    await s.service.enable(
      OPERATOR,
      'dc-a',
      VM,
      enableReplicationSchema.parse({ targetRemote: 'dc-b' }),
    );
    expect(s.enqueued).toEqual([
      {
        type: 'vm.replication.enable',
        remoteId: 'dc-a',
        vmId: VM,
        owner: 'ops@local!t',
        credentialId: null,
      },
    ]);
    expect(s.stored).toEqual([
      [
        'insertVm',
        expect.objectContaining({
          vmId: VM,
          pairId: 'pair-1',
          sourceRemote: 'dc-a',
          sourcePool: 'rbd',
          targetRemote: 'dc-b',
          targetPool: 'rbd-b',
          sourceState: 'primary',
          targetState: 'secondary',
          phase: 'enabling',
          disks: [{ pool: 'rbd', image: 'web-1-disk0' }],
          scheduleInterval: '5m',
          rpoTargetSeconds: 900,
        }),
      ],
    ]);
  });

  it('refuses (409) a VM with a disk outside the paired pool, or mirrored already', async () => {
    const s = setup({
      records: [],
      disks: [
        { pool: 'rbd', image: 'a' },
        { pool: 'ssd', image: 'b' },
      ],
    });
    await expect(
      s.service.enable(
        OPERATOR,
        'dc-a',
        VM,
        enableReplicationSchema.parse({ targetRemote: 'dc-b' }),
      ),
    ).rejects.toMatchObject({
      code: ErrorCode.Conflict,
      message: expect.stringMatching(/ssd\/b are in other pools/),
    });
    const again = setup();
    await expect(
      again.service.enable(
        OPERATOR,
        'dc-a',
        VM,
        enableReplicationSchema.parse({ targetRemote: 'dc-b' }),
      ),
    ).rejects.toMatchObject({ code: ErrorCode.Conflict });
    expect([...s.enqueued, ...again.enqueued]).toEqual([]);
  });

  it('refuses changes to an auditor with 403, and answers 404 at a remote the VM is not mirrored with', async () => {
    const s = setup();
    await expect(s.service.switchover(AUDITOR, 'dc-a', VM, {})).rejects.toMatchObject({
      code: ErrorCode.Forbidden,
    });
    await expect(s.service.switchover(OPERATOR, 'dc-c', VM, {})).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
    expect(s.enqueued).toEqual([]);
  });

  it('refuses (409) a switchover while the last poll saw split brain', async () => {
    const s = setup();
    (OBSERVED as { splitBrain: boolean }).splitBrain = true;
    try {
      await expect(s.service.switchover(OPERATOR, 'dc-a', VM, {})).rejects.toMatchObject({
        code: ErrorCode.Conflict,
        message: expect.stringMatching(/split brain/),
      });
    } finally {
      (OBSERVED as { splitBrain: boolean }).splitBrain = false;
    }
  });
});

describe('VmReplicationService: after a task', () => {
  it('reads both sites once a task succeeded, so that the list shows its result before the next poll', async () => {
    const s = setup({ runner: { enable: async () => undefined } });
    const task = { id: 'task-1', vmId: VM, owner: 'admin@local' } as TaskEntity;
    await s.handlers
      .get('vm.replication.enable')!
      .run({ task, log: async () => undefined, progress: async () => undefined });
    expect(s.remembered).toEqual([VM]);
  });

  it("leaves a failed task's VM to the next poll", async () => {
    const s = setup({ runner: { enable: async () => Promise.reject(new Error('no')) } });
    const task = { id: 'task-1', vmId: VM, owner: 'admin@local' } as TaskEntity;
    await expect(
      s.handlers
        .get('vm.replication.enable')!
        .run({ task, log: async () => undefined, progress: async () => undefined }),
    ).rejects.toThrow('no');
    expect(s.remembered).toEqual([]);
  });
});

describe('VmReplicationService: reading', () => {
  it('shows a tenant only its own VMs in the list', async () => {
    const tenant = testCaller([{ path: '/', role: 'Audit', tenantGroup: 'acme' }], {
      tenantVms: new Map([['acme', new Set([VM])]]),
    });
    const s = setup({ records: [record(VM), record(OTHER_VM)] });
    expect((await s.service.list(tenant, {})).items.map((item) => item.vm)).toEqual([VM]);
    expect((await s.service.list(AUDITOR, {})).items.map((item) => item.vm)).toEqual([
      VM,
      OTHER_VM,
    ]);
  });

  it('lets the RPO of a cached observation rise with time and compares it with the target', () => {
    const shown = view(record(), OBSERVED, false, NOW);
    expect(shown).toMatchObject({
      rpoSeconds: 310,
      rpoTargetSeconds: 300,
      rpoExceeded: true,
      state: 'primary',
      primaryRemote: 'dc-a',
      health: 'ok',
    });
    expect(
      view(record(VM, { sourceState: 'secondary', targetState: 'primary' }), undefined, true),
    ).toMatchObject({
      state: 'secondary',
      primaryRemote: 'dc-b',
      rpoSeconds: null,
      rpoExceeded: null,
      health: 'unknown',
      images: [],
    });
  });

  it("gives every row, listed or read alone, its most behind disk as the lag and the sum of its disks' rates", () => {
    const image = {
      image: 'a',
      sourcePool: 'rbd',
      targetPool: 'rbd',
      sites: [],
      lastMirroredSnapshotAt: null,
      secondsUntilSynced: 0,
      splitBrain: false,
    };
    const observed = {
      ...OBSERVED,
      images: [
        { ...image, lagSeconds: 10, bytesPerSecond: 100 },
        { ...image, image: 'b', lagSeconds: 40, bytesPerSecond: 50 },
        { ...image, image: 'c', lagSeconds: null, bytesPerSecond: 0 },
      ],
    };
    expect(view(record(), observed, false, NOW)).toMatchObject({
      lagSeconds: 40,
      bytesPerSecond: 150,
    });
    expect(view(record(), undefined, false, NOW)).toMatchObject({
      lagSeconds: null,
      bytesPerSecond: 0,
    });
  });
});

describe('VmReplicationService: a migration moves a mirrored VM', () => {
  const moved = (to: string, taskId = 'mig-1') => ({
    type: 'vm-moved' as const,
    taskId,
    vmId: VM,
    fromRemote: to === 'dc-b' ? 'dc-a' : 'dc-b',
    toRemote: to,
    online: true,
  });

  it('makes the remote it moved to primary and the old one secondary, and says so in the migration’s journal', async () => {
    const s = setup();
    const notes = await s.events.emit(moved('dc-b'));
    expect(notes).toEqual([
      {
        status: 'fulfilled',
        value:
          'replication: DR state dc-b primary, dc-a secondary (the mirrored disks changed sides with the VM)',
      },
    ]);
    expect(s.stored).toEqual([
      [
        'setRoles',
        VM,
        { sourceState: 'secondary', targetState: 'primary' },
        'live migration to dc-b (task mig-1)',
        NOW,
        null,
      ],
    ]);
  });

  it('changes nothing when the remote is primary already (the same move told again after a restart)', async () => {
    const s = setup({
      records: [record(VM, { sourceState: 'secondary', targetState: 'primary' })],
    });
    expect(await s.events.emit(moved('dc-b'))).toEqual([{ status: 'fulfilled', value: undefined }]);
    expect(s.stored).toEqual([]);
  });

  it('leaves the roles to a DR switchover that moved the VM itself', async () => {
    const s = setup({
      records: [record(VM, { pending: { action: 'switchover', taskId: 'dr-1', credentials: {} } })],
    });
    expect(await s.events.emit(moved('dc-b', 'dr-1'))).toEqual([
      { status: 'fulfilled', value: undefined },
    ]);
    expect(s.stored).toEqual([]);
  });

  it('changes nothing for a VM without mirroring, and says so for a move away from both of its sites', async () => {
    const none = setup({ records: [] });
    expect(await none.events.emit(moved('dc-b'))).toEqual([
      { status: 'fulfilled', value: undefined },
    ]);
    const s = setup();
    const [note] = await s.events.emit({ ...moved('dc-b'), toRemote: 'dc-c' });
    expect(note).toEqual({
      status: 'fulfilled',
      value: expect.stringMatching(
        /dc-c is not one of the VM's mirroring sites \(dc-a, dc-b\); its DR state is unchanged/,
      ),
    });
    expect(s.stored).toEqual([]);
  });
});

describe('VmReplicationService: the end of a DR task', () => {
  const running = (action: 'switchover' | 'resync') =>
    record(VM, { pending: { action, taskId: 'task-9', credentials: {}, origin: 'source' } });
  const context = {
    task: { id: 'task-9', vmId: VM, owner: 'ops@local!t' },
    log: async () => undefined,
    progress: async () => undefined,
  } as unknown as TaskContext;

  it('frees the VM’s record when the task fails (the next action may be asked for; the poll settles a resync)', async () => {
    const s = setup({
      records: [running('resync')],
      runner: {
        resync: async () => {
          throw new DomainError(ErrorCode.RemoteUnreachable, 'dc-b does not answer');
        },
      },
    });
    await expect(s.handlers.get('vm.replication.resync')!.run(context)).rejects.toThrow(
      'dc-b does not answer',
    );
    expect(s.stored).toEqual([['setPending', VM, null]]);
  });

  it('keeps it when the task was let go at shutdown (the next start resumes from it)', async () => {
    const s = setup({
      records: [running('switchover')],
      runner: {
        switchover: async () => {
          throw new TaskSuspended();
        },
      },
    });
    await expect(s.handlers.get('vm.replication.switchover')!.run(context)).rejects.toBeInstanceOf(
      TaskSuspended,
    );
    expect(s.stored).toEqual([]);
    expect(s.handlers.get('vm.replication.switchover')!.resume).toBeDefined();
    expect(s.handlers.get('vm.replication.enable')!.resume).toBeUndefined();
  });
});
