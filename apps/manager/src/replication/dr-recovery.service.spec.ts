import type { MirrorStatus__Output, Vm__Output } from '@debvisor/proto';
import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it } from 'vitest';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { AgentError } from '../agents/agent-error';
import type { ClockRepository } from '../common/clock.repository';
import { ErrorCode } from '../common/error-code';
import type { AclService } from '../acl/acl.service';
import type { MigrationService } from '../migration/migration.service';
import type { RemotesService } from '../remotes/remotes.service';
import type { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import type { TaskContext } from '../tasks/tasks.service';
import { DrRecoveryService, RESUME_WAIT_MS } from './dr-recovery.service';
import { DrRunnerService } from './dr-runner.service';
import type { DrAction, PendingAction, SiteRoles } from './dr-state';
import type { Observation, ReplicationStatusService } from './replication-status.service';
import type { ReplicationTimerRepository } from './replication-timer.repository';
import type { ReplicationRepository } from './replication.repository';
import type { VmReplicationEntity } from './vm-replication.entity';

const VM = '3f1d2c4b-5a6e-4f70-8a9b-0c1d2e3f4a5b';
const TASK = '0b7e6c2a-1d3f-4e5a-9b8c-7d6e5f4a3b2c';
const SNAP = '2026-01-01T01:00:00.000Z';
type Remote = 'dc-a' | 'dc-b';

/**
 * Both sites as the agents would answer: each disk's role per remote and where the VM is defined
 * (its state and node). The agent calls change it, so that a resumed task is judged by its effect.
 */
interface World {
  primary: Record<Remote, [boolean, boolean]>;
  vm: Partial<Record<Remote, { state: string; node: string }>>;
  /** Remotes that do not answer. */
  down: Set<Remote>;
}

const conn = (remoteId: string): AgentConnection => ({
  remoteId,
  endpoints: [`${remoteId}:9443`],
  caCertPem: 'ca',
  apiKey: `key-${remoteId}`,
});

function mirror(fields: Partial<MirrorStatus__Output>): MirrorStatus__Output {
  return {
    pool: 'rbd',
    image: 'x',
    enabled: true,
    primary: false,
    state: 'up+replaying',
    description: '',
    lastUpdate: '',
    globalId: 'g',
    mode: 'snapshot',
    lastMirroredSnapshotAt: SNAP,
    bytesPerSecond: 0,
    secondsUntilSynced: 0,
    peerState: '',
    peerDescription: '',
    scheduleInterval: '5m',
    splitBrain: false,
    lastSnapshotAt: SNAP,
    ...fields,
  };
}

function record(
  action: DrAction,
  roles: SiteRoles,
  steps: Partial<PendingAction> = {},
): VmReplicationEntity {
  return {
    vmId: VM,
    vmName: 'web-1',
    pairId: 'pair-1',
    sourceRemote: 'dc-a',
    sourcePool: 'rbd',
    targetRemote: 'dc-b',
    targetPool: 'rbd',
    ...roles,
    phase: 'active',
    disks: [
      { pool: 'rbd', image: 'web-1-disk0' },
      { pool: 'rbd', image: 'web-1-disk1' },
    ],
    spec: {
      uuid: VM,
      name: 'web-1',
      disks: [
        { pool: 'rbd', image: 'web-1-disk0' },
        { pool: 'rbd', image: 'web-1-disk1' },
      ],
      nics: [],
    },
    rpoTargetSeconds: 900,
    scheduleInterval: '5m',
    pending: { action, taskId: TASK, credentials: { 'dc-a': null, 'dc-b': null }, ...steps },
    lastChange: 'enabled',
    lastChangeAt: new Date('2026-01-01T00:00:00Z'),
    createdAt: new Date('2026-01-01T00:00:00Z'),
  };
}

const A_PRIMARY: SiteRoles = { sourceState: 'primary', targetState: 'secondary' };
const B_PRIMARY: SiteRoles = { sourceState: 'secondary', targetState: 'primary' };
const SWITCHING: Partial<PendingAction> = {
  origin: 'source',
  wasRunning: true,
  targetNode: 'node-b1',
  sourceNode: 'node-a1',
};

/** The recovery over a real DrRunnerService, every repository a strict mock acting on `world` and the record. */
function setup(world: World, initial: VmReplicationEntity | null) {
  const calls: string[] = [];
  const log: string[] = [];
  const clock = fakeClock(new Date('2026-01-01T01:00:00Z'));
  const current = initial ? structuredClone(initial) : null;
  // The runner marks disks done by identity: the record it reads hands out the same disk objects each time.
  const disks = current?.disks;
  const answer = (c: AgentConnection) => {
    if (world.down.has(c.remoteId as Remote))
      throw new AgentError(
        ErrorCode.RemoteUnreachable,
        `could not connect to ${c.remoteId}:9443`,
        `${c.remoteId}:9443`,
      );
    return c.remoteId as Remote;
  };
  const index = (image: string) => (image.endsWith('disk0') ? 0 : 1);
  const repository = strictMock<ReplicationRepository>('ReplicationRepository', {
    getVm: async () => (current ? { ...structuredClone(current), disks: disks! } : null),
    setPending: async (_vm, pending) => void (current!.pending = pending),
    setRoles: async (_vm, roles, lastChange, _at, pending = null) =>
      void Object.assign(current!, roles, { lastChange, pending }),
  });
  const agents = strictMock<AgentClientRepository>('AgentClientRepository', {
    getVm: async (c: AgentConnection) => {
      const vm = world.vm[answer(c)];
      if (!vm) throw new AgentError(ErrorCode.NotFound, `VM ${VM} not found`, `${c.remoteId}:9443`);
      return {
        spec: { uuid: VM },
        runtime: { state: vm.state, nodeId: vm.node },
      } as unknown as Vm__Output;
    },
    vmAction: async (c: AgentConnection, action: string) => {
      const remote = answer(c);
      calls.push(`${action} ${remote}`);
      world.vm[remote]!.state = action === 'start' ? 'running' : 'stopped';
      return {
        runtime: { state: world.vm[remote]!.state, nodeId: world.vm[remote]!.node },
      } as unknown as Vm__Output;
    },
    createMirrorSnapshot: async (c: AgentConnection, ref: { image: string }) => (
      calls.push(`snapshot ${answer(c)} ${ref.image}`),
      mirror({ primary: true })
    ),
    getMirrorStatus: async (c: AgentConnection) => (answer(c), mirror({ primary: true })),
    demoteImage: async (c: AgentConnection, ref: { image: string }) => {
      const remote = answer(c);
      calls.push(`demote ${remote} ${ref.image}`);
      world.primary[remote][index(ref.image)] = false;
      return mirror({});
    },
    promoteImage: async (c: AgentConnection, ref: { image: string; force: boolean }) => {
      const remote = answer(c);
      calls.push(`promote ${remote} ${ref.image}${ref.force ? ' force' : ''}`);
      world.primary[remote][index(ref.image)] = true;
      return mirror({ primary: true });
    },
    resyncImage: async (c: AgentConnection, ref: { image: string }) => (
      calls.push(`resync ${answer(c)} ${ref.image}`),
      mirror({})
    ),
    fenceImage: async (c: AgentConnection, ref: { image: string }) => (
      calls.push(`fence ${answer(c)} ${ref.image}`),
      { blocklisted: [], locksBroken: [] }
    ),
    undefineVm: async (c: AgentConnection) => {
      const remote = answer(c);
      calls.push(`undefine ${remote}`);
      delete world.vm[remote];
      return {} as Vm__Output;
    },
    defineVm: async (c: AgentConnection, request: { nodeId: string }) => {
      const remote = answer(c);
      calls.push(`define ${remote} ${request.nodeId}`);
      world.vm[remote] = { state: 'stopped', node: request.nodeId };
      return {} as Vm__Output;
    },
    listNodes: async () => ({ nodes: [{ info: { nodeId: 'node-b1' }, alive: true }] }),
  } as never);
  const site = (remote: Remote) => {
    const up = !world.down.has(remote);
    return (disk: number) => ({
      remote,
      pool: 'rbd',
      reachable: up,
      error: up ? null : 'unreachable',
      primary: up ? world.primary[remote][disk] : null,
      state: !up ? 'down+unknown' : world.primary[remote][disk] ? 'up+stopped' : 'up+replaying',
      description: '',
      lastMirroredSnapshotAt: SNAP,
      lastSnapshotAt: SNAP,
      bytesPerSecond: 0,
      secondsUntilSynced: 0,
      splitBrain: false,
    });
  };
  const observe = async (): Promise<Observation> => {
    const [a, b] = [site('dc-a'), site('dc-b')];
    const images = [0, 1].map((disk) => ({
      image: `web-1-disk${disk}`,
      sourcePool: 'rbd',
      targetPool: 'rbd',
      sites: [a(disk), b(disk)],
      lastMirroredSnapshotAt: SNAP,
      lagSeconds: 0,
      bytesPerSecond: 0,
      secondsUntilSynced: 0,
      splitBrain: world.primary['dc-a'][disk] && world.primary['dc-b'][disk],
    }));
    const splitBrain = images.some((image) => image.splitBrain);
    return {
      at: clock.now(),
      images,
      rpoSeconds: 60,
      lastMirroredSnapshotAt: SNAP,
      splitBrain,
      health: splitBrain ? 'split-brain' : 'ok',
      reachable: { source: !world.down.has('dc-a'), target: !world.down.has('dc-b') },
    } as Observation;
  };
  const status = strictMock<ReplicationStatusService>('ReplicationStatusService', { observe });
  const timer = strictMock<ReplicationTimerRepository>('ReplicationTimerRepository', {
    sleep: clock.sleep,
  });
  const clockRepository = strictMock<ClockRepository>('ClockRepository', { now: clock.now });
  const runner = new DrRunnerService(
    repository,
    status,
    agents,
    strictMock<RemotesService>('RemotesService', {
      connectionFor: async (remote: string) => conn(remote),
    }),
    strictMock<ResourcesService>('ResourcesService', { refreshRemote: async () => undefined }),
    strictMock<MigrationService>('MigrationService', {
      moveStoppedVm: async (_context, move) => {
        calls.push(`move ${move.sourceRemote} -> ${move.targetRemote} ${move.targetNode}`);
        world.vm[move.targetRemote as Remote] = { state: 'stopped', node: move.targetNode };
        delete world.vm[move.sourceRemote as Remote];
      },
    }),
    strictMock<AclService>('AclService', { moveVmGrants: async () => 0 }),
    clockRepository,
    timer,
    strictMock<PinoLogger>('PinoLogger', { setContext: () => undefined, error: () => undefined }),
  );
  const recovery = new DrRecoveryService(repository, status, runner, clockRepository, timer);
  const task = {
    id: TASK,
    type: 'vm.replication.x',
    remoteId: 'dc-a',
    vmId: VM,
    owner: 'ops@local!t',
    credentialId: null,
  } as TaskEntity;
  const context: TaskContext = {
    task,
    log: async (line) => void log.push(line),
    progress: async () => undefined,
  };
  return { recovery, context, calls, log, record: () => current, world };
}

const world = (fields: Partial<World> = {}): World => ({
  primary: { 'dc-a': [true, true], 'dc-b': [false, false] },
  vm: { 'dc-a': { state: 'stopped', node: 'node-a1' } },
  down: new Set(),
  ...fields,
});

describe('DrRecoveryService: a switchover left running by a restart', () => {
  it('carries it out from the start when it had changed nothing yet', async () => {
    const s = setup(
      world({ vm: { 'dc-a': { state: 'running', node: 'node-a1' } } }),
      record('switchover', A_PRIMARY, { targetNode: 'node-b1' }),
    );
    await s.recovery.resume('switchover', s.context);
    expect(s.log[0]).toBe(
      '[check] the manager restarted before the switchover changed anything; carrying it out now',
    );
    expect(s.calls).toEqual([
      'shutdown dc-a',
      'snapshot dc-a web-1-disk0',
      'snapshot dc-a web-1-disk1',
      'move dc-a -> dc-b node-b1',
      'demote dc-a web-1-disk0',
      'demote dc-a web-1-disk1',
      'promote dc-b web-1-disk0',
      'promote dc-b web-1-disk1',
      'start dc-b',
    ]);
    expect(s.record()).toMatchObject({ ...B_PRIMARY, pending: null });
  });

  it('only starts the VM when the roles were recorded already', async () => {
    const s = setup(
      world({
        primary: { 'dc-a': [false, false], 'dc-b': [true, true] },
        vm: { 'dc-b': { state: 'stopped', node: 'node-b1' } },
      }),
      record('switchover', B_PRIMARY, SWITCHING),
    );
    await s.recovery.resume('switchover', s.context);
    expect(s.calls).toEqual(['start dc-b']);
    expect(s.log[0]).toBe(
      "[check] the manager restarted after the DR state was recorded (dc-b primary); what remains is the VM's start",
    );
    expect(s.record()?.pending).toBeNull();
  });

  it('after the move, demotes and promotes what is left, records the roles and starts the VM at the target — saying what it found', async () => {
    const s = setup(
      world({
        primary: { 'dc-a': [false, true], 'dc-b': [false, false] },
        vm: { 'dc-b': { state: 'stopped', node: 'node-b1' } },
      }),
      record('switchover', A_PRIMARY, SWITCHING),
    );
    await s.recovery.resume('switchover', s.context);
    expect(s.calls).toEqual([
      'demote dc-a web-1-disk1',
      'promote dc-b web-1-disk0',
      'promote dc-b web-1-disk1',
      'start dc-b',
    ]);
    expect(s.log).toContain(
      '[check] the manager restarted during the switchover; found: images primary at dc-a 1/2, at dc-b 0/2; the VM is not defined at dc-a and stopped on node node-b1 of dc-b',
    );
    expect(s.record()).toMatchObject({
      ...B_PRIMARY,
      pending: null,
      lastChange: 'switchover to dc-b by ops@local!t',
    });
    expect(s.world.vm).toEqual({ 'dc-b': { state: 'running', node: 'node-b1' } });
  });

  it('before the move (the VM stopped at the source, its images primary there), goes on from the final snapshot', async () => {
    const s = setup(world(), record('switchover', A_PRIMARY, SWITCHING));
    await s.recovery.resume('switchover', s.context);
    expect(s.calls).toEqual([
      'snapshot dc-a web-1-disk0',
      'snapshot dc-a web-1-disk1',
      'move dc-a -> dc-b node-b1',
      'demote dc-a web-1-disk0',
      'demote dc-a web-1-disk1',
      'promote dc-b web-1-disk0',
      'promote dc-b web-1-disk1',
      'start dc-b',
    ]);
    expect(s.log).toContain(
      '[check] the VM and all its images are still at dc-a: going on from the final snapshot',
    );
    expect(s.record()).toMatchObject({ ...B_PRIMARY, pending: null });
  });

  it('stops a VM still shutting down at the source before going on', async () => {
    const s = setup(
      world({ vm: { 'dc-a': { state: 'running', node: 'node-a1' } } }),
      record('switchover', A_PRIMARY, SWITCHING),
    );
    await s.recovery.resume('switchover', s.context);
    expect(s.calls.slice(0, 2)).toEqual(['shutdown dc-a', 'snapshot dc-a web-1-disk0']);
    expect(s.world.vm).toEqual({ 'dc-b': { state: 'running', node: 'node-b1' } });
  });

  it('puts things back as the failure path does when an image changed roles while the VM stayed at the source', async () => {
    const s = setup(
      world({ primary: { 'dc-a': [false, true], 'dc-b': [false, false] } }),
      record('switchover', A_PRIMARY, SWITCHING),
    );
    await expect(s.recovery.resume('switchover', s.context)).rejects.toMatchObject({
      code: ErrorCode.Conflict,
      message: expect.stringMatching(/the switchover was undone — ask for it again/),
    });
    expect(s.calls).toEqual(['promote dc-a web-1-disk0 force', 'start dc-a']);
    expect(s.world.primary).toEqual({ 'dc-a': [true, true], 'dc-b': [false, false] });
    expect(s.record()).toMatchObject({ ...A_PRIMARY, pending: null });
  });

  it('when a site does not answer within the wait: fails, changing nothing, and frees the record for the next action', async () => {
    const s = setup(
      world({ down: new Set<Remote>(['dc-b']) }),
      record('switchover', A_PRIMARY, SWITCHING),
    );
    await expect(s.recovery.resume('switchover', s.context)).rejects.toMatchObject({
      code: ErrorCode.RemoteUnreachable,
      message: expect.stringMatching(
        /could not settle it: still waiting for both sites to answer \(could not connect to dc-b:9443\) after 60 s; nothing was changed since/,
      ),
    });
    expect(RESUME_WAIT_MS).toBe(60_000);
    expect(s.calls).toEqual([]);
    expect(s.log).toContain(
      '[check] the manager restarted during the switchover; waiting up to 60 s for both sites to answer (could not connect to dc-b:9443)',
    );
    expect(s.record()).toMatchObject({ ...A_PRIMARY, pending: null });
  });

  it('ends with its journal saying so when the record no longer names the task (its last step was done)', async () => {
    const done = {
      ...record('switchover', B_PRIMARY),
      pending: null,
      lastChange: 'switchover to dc-b by ops@local!t',
    };
    const s = setup(world(), done);
    await s.recovery.resume('switchover', s.context);
    expect(s.calls).toEqual([]);
    expect(s.log).toEqual([
      "[check] the manager restarted after this task's last step: DR state dc-b primary (switchover to dc-b by ops@local!t)",
    ]);
  });

  it('fails when the VM has no replication record any more', async () => {
    const s = setup(world(), null);
    await expect(s.recovery.resume('switchover', s.context)).rejects.toMatchObject({
      code: ErrorCode.Conflict,
    });
    expect(s.calls).toEqual([]);
  });
});

describe('DrRecoveryService: a failover left running by a restart', () => {
  it('fences and promotes again when the roles were not recorded, then brings the VM up at the survivor', async () => {
    const s = setup(
      world({ primary: { 'dc-a': [true, true], 'dc-b': [true, false] } }),
      record('failover', A_PRIMARY, { origin: 'source', targetNode: 'node-b1' }),
    );
    await s.recovery.resume('failover', s.context);
    expect(s.log[0]).toMatch(
      /^\[check\] the manager restarted before the DR state was recorded; fencing and promoting again/,
    );
    expect(s.calls).toEqual([
      'fence dc-a web-1-disk0',
      'fence dc-a web-1-disk1',
      'stop dc-a',
      'promote dc-b web-1-disk0 force',
      'promote dc-b web-1-disk1 force',
      'undefine dc-a',
      'define dc-b node-b1',
      'start dc-b',
    ]);
    expect(s.record()).toMatchObject({ ...B_PRIMARY, pending: null });
  });

  it('with the roles recorded, only defines and starts the VM at the survivor (no second fence or promotion)', async () => {
    const s = setup(
      world({
        primary: { 'dc-a': [true, true], 'dc-b': [true, true] },
        down: new Set<Remote>(['dc-a']),
        vm: {},
      }),
      record('failover', B_PRIMARY, { origin: 'source', targetNode: 'node-b1' }),
    );
    await s.recovery.resume('failover', s.context);
    expect(s.calls).toEqual(['define dc-b node-b1', 'start dc-b']);
    expect(s.log[0]).toBe(
      '[check] the manager restarted after the DR state was recorded (dc-b primary); bringing the VM up there',
    );
    expect(s.record()?.pending).toBeNull();
  });

  it('with the VM running at the survivor already, only frees the record', async () => {
    const s = setup(
      world({
        primary: { 'dc-a': [true, true], 'dc-b': [true, true] },
        vm: { 'dc-b': { state: 'running', node: 'node-b1' } },
      }),
      record('failover', B_PRIMARY, { origin: 'source' }),
    );
    await s.recovery.resume('failover', s.context);
    expect(s.calls).toEqual([]);
    expect(s.log).toContain('[start] the VM is running on node node-b1 of dc-b already');
    expect(s.record()?.pending).toBeNull();
  });
});

describe('DrRecoveryService: a resync left running by a restart', () => {
  const AFTER_FAILOVER: SiteRoles = { sourceState: 'secondary', targetState: 'primary' };

  it('with the site recorded resyncing, waits for it to replay and marks it secondary', async () => {
    const s = setup(
      world({
        primary: { 'dc-a': [false, false], 'dc-b': [true, true] },
        vm: { 'dc-b': { state: 'running', node: 'node-b1' } },
      }),
      record('resync', { sourceState: 'resync', targetState: 'primary' }),
    );
    await s.recovery.resume('resync', s.context);
    expect(s.calls).toEqual([]);
    expect(s.log[0]).toBe(
      '[check] the manager restarted while dc-a resynced; waiting for it to replay',
    );
    expect(s.record()).toMatchObject({
      ...AFTER_FAILOVER,
      pending: null,
      lastChange: 'resync of dc-a completed',
    });
  });

  it('not recorded yet but the stale site replays already: nothing left to do', async () => {
    const s = setup(
      world({
        primary: { 'dc-a': [false, false], 'dc-b': [true, true] },
        vm: { 'dc-b': { state: 'running', node: 'node-b1' } },
      }),
      record('resync', AFTER_FAILOVER),
    );
    await s.recovery.resume('resync', s.context);
    expect(s.calls).toEqual([]);
    expect(s.log).toEqual([
      '[check] the manager restarted; dc-a replays from dc-b already: nothing left to do',
    ]);
    expect(s.record()).toMatchObject({ ...AFTER_FAILOVER, pending: null });
  });

  it('not recorded and still split-brained: carries the resync out again', async () => {
    const s = setup(
      world({
        primary: { 'dc-a': [true, true], 'dc-b': [true, true] },
        vm: {
          'dc-a': { state: 'stopped', node: 'node-a1' },
          'dc-b': { state: 'running', node: 'node-b1' },
        },
      }),
      record('resync', AFTER_FAILOVER),
    );
    // Demoted images at dc-a replay at once in this world: the task sees the site secondary again.
    await s.recovery.resume('resync', s.context);
    expect(s.calls).toEqual([
      'undefine dc-a',
      'demote dc-a web-1-disk0',
      'resync dc-a web-1-disk0',
      'demote dc-a web-1-disk1',
      'resync dc-a web-1-disk1',
    ]);
    expect(s.record()).toMatchObject({
      ...AFTER_FAILOVER,
      pending: null,
      lastChange: 'resync of dc-a completed',
    });
  });
});
