import type { MirrorStatus__Output, Vm__Output } from '@debvisor/proto';
import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it } from 'vitest';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { AgentError } from '../agents/agent-error';
import type { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import type { AclService } from '../acl/acl.service';
import type { MigrationService } from '../migration/migration.service';
import type { RemotesService } from '../remotes/remotes.service';
import type { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import type { TaskContext } from '../tasks/tasks.service';
import { DrRunnerService } from './dr-runner.service';
import type { PendingAction } from './dr-state';
import type { ReplicationPairEntity } from './replication-pair.entity';
import type { Observation, ReplicationStatusService } from './replication-status.service';
import type { ReplicationTimerRepository } from './replication-timer.repository';
import type { ReplicationRepository } from './replication.repository';
import type { VmReplicationEntity } from './vm-replication.entity';

const VM = '3f1d2c4b-5a6e-4f70-8a9b-0c1d2e3f4a5b';
const TASK = '0b7e6c2a-1d3f-4e5a-9b8c-7d6e5f4a3b2c';
/** What a Ceph peer bootstrap token looks like: base64 of JSON with a key. */
const TOKEN = Buffer.from(
  JSON.stringify({
    fsid: 'f',
    client_id: 'rbd-mirror-peer',
    key: 'AQBsecretsecretsecretsecret==',
    mon_host: '[v2:10.0.0.1:3300]',
  }),
).toString('base64');

const conn = (remoteId: string): AgentConnection => ({
  remoteId,
  endpoints: [`${remoteId}:9443`],
  caCertPem: 'ca',
  apiKey: `key-${remoteId}`,
});

function record(
  pending: Omit<PendingAction, 'taskId' | 'credentials'>,
  overrides: Partial<VmReplicationEntity> = {},
): VmReplicationEntity {
  return {
    vmId: VM,
    vmName: 'web-1',
    pairId: 'pair-1',
    sourceRemote: 'dc-a',
    sourcePool: 'rbd',
    targetRemote: 'dc-b',
    targetPool: 'rbd-b',
    sourceState: 'primary',
    targetState: 'secondary',
    phase: 'active',
    disks: [
      { pool: 'rbd', image: 'web-1-disk0' },
      { pool: 'rbd', image: 'web-1-disk1' },
    ],
    spec: {
      uuid: VM,
      name: 'web-1',
      vcpus: 2,
      memoryBytes: '1073741824',
      disks: [
        { pool: 'rbd', image: 'web-1-disk0' },
        { pool: 'rbd', image: 'web-1-disk1' },
      ],
      nics: [],
    },
    rpoTargetSeconds: 900,
    scheduleInterval: '5m',
    pending: { ...pending, taskId: TASK, credentials: { 'dc-a': null, 'dc-b': null } },
    lastChange: 'enabled',
    lastChangeAt: new Date('2026-01-01T00:00:00Z'),
    createdAt: new Date('2026-01-01T00:00:00Z'),
    ...overrides,
  };
}

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
    lastMirroredSnapshotAt: '',
    bytesPerSecond: 0,
    secondsUntilSynced: 0,
    peerState: '',
    peerDescription: '',
    scheduleInterval: '5m',
    splitBrain: false,
    lastSnapshotAt: '',
    ...fields,
  };
}

const OBSERVED: Observation = {
  at: new Date('2026-01-01T01:00:00Z'),
  images: [],
  rpoSeconds: 240,
  lastMirroredSnapshotAt: '2026-01-01T00:56:00Z',
  splitBrain: false,
  health: 'ok',
  reachable: { source: true, target: true },
};

const vmAt = (state: string, nodeId = 'node-1'): Vm__Output => ({
  spec: null,
  runtime: { state, nodeId } as Vm__Output['runtime'],
});

/** The runner with strict mocks: only the agent calls a test allows exist; the logger may only be given its context. */
function setup(
  agents: Partial<Record<keyof AgentClientRepository, unknown>>,
  options: {
    record?: VmReplicationEntity;
    pair?: ReplicationPairEntity;
    observed?: Observation;
    observe?: () => Observation;
    /** How moving the VM's grants answers (default: one entry moved). */
    moveVmGrants?: () => Promise<number>;
  } = {},
) {
  const calls: string[] = [];
  const log: string[] = [];
  const stored: unknown[] = [];
  const moved: unknown[] = [];
  const clock = fakeClock(new Date('2026-01-01T01:00:00Z'));
  const runner = new DrRunnerService(
    strictMock<ReplicationRepository>('ReplicationRepository', {
      getVm: async () => options.record ?? null,
      getPairByTask: async () => options.pair ?? null,
      setPairState: async (...args) => void stored.push(['setPairState', ...args]),
      setRoles: async (...args) => void stored.push(['setRoles', ...args]),
      setPhase: async (...args) => void stored.push(['setPhase', ...args]),
      setPending: async (...args) => void stored.push(['setPending', ...args]),
      deleteVm: async (...args) => void stored.push(['deleteVm', ...args]),
    }),
    strictMock<ReplicationStatusService>('ReplicationStatusService', {
      observe: async () => options.observe?.() ?? options.observed ?? OBSERVED,
    }),
    strictMock<AgentClientRepository>('AgentClientRepository', agents as never),
    strictMock<RemotesService>('RemotesService', {
      connectionFor: async (remote: string) => conn(remote),
    }),
    strictMock<ResourcesService>('ResourcesService', {
      refreshRemote: async (remote: string) => void calls.push(`refresh ${remote}`),
    }),
    strictMock<MigrationService>('MigrationService', {
      moveStoppedVm: async (_context, move) => void moved.push(move),
    }),
    strictMock<AclService>('AclService', {
      moveVmGrants: async (vmId: string, from: string, to: string) => {
        calls.push(`grants ${vmId} ${from} -> ${to}`);
        return options.moveVmGrants ? options.moveVmGrants() : 1;
      },
    }),
    strictMock<ClockRepository>('ClockRepository', { now: clock.now }),
    strictMock<ReplicationTimerRepository>('ReplicationTimerRepository', { sleep: clock.sleep }),
    strictMock<PinoLogger>('PinoLogger', {
      setContext: () => undefined,
      error: (_fields: unknown, message?: string) => void log.push(`logged: ${message}`),
    }),
  );
  const task = {
    id: TASK,
    type: 'x',
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
  return { runner, context, calls, log, stored, moved, clock };
}

describe('DrRunnerService: pairing', () => {
  const pair: ReplicationPairEntity = {
    id: 'pair-1',
    remoteA: 'dc-a',
    poolA: 'rbd',
    remoteB: 'dc-b',
    poolB: 'rbd-b',
    state: 'pairing',
    error: null,
    taskId: TASK,
    createdAt: new Date(),
    updatedAt: new Date(),
  };

  it('hands the bootstrap token from A straight into B’s import and nowhere else (not the log, the database or the logger)', async () => {
    const imported: unknown[] = [];
    const s = setup(
      {
        createPeerBootstrap: async (c: AgentConnection, request: unknown) => (
          s.calls.push(`bootstrap ${c.remoteId} ${JSON.stringify(request)}`),
          { token: TOKEN, siteName: 'dc-a' }
        ),
        importPeerBootstrap: async (c: AgentConnection, request: { token: string }) => (
          imported.push({ remote: c.remoteId, ...request }),
          { peers: [] }
        ),
        getPoolMirrorStatus: async () => ({
          peers: [{ siteName: 'dc-b', direction: 'rx-tx', uuid: 'u' }],
        }),
      },
      { pair },
    );
    await s.runner.pair(s.context);
    expect(s.calls).toEqual([`bootstrap dc-a {"pool":"rbd","siteName":"dc-a"}`]);
    expect(imported).toEqual([
      { remote: 'dc-b', pool: 'rbd-b', siteName: 'dc-b', token: TOKEN, direction: 'rx-tx' },
    ]);
    expect(s.stored).toEqual([['setPairState', 'pair-1', 'paired', null, expect.any(Date)]]);
    expect(JSON.stringify([s.log, s.stored])).not.toContain(TOKEN);
    expect(JSON.stringify([s.log, s.stored])).not.toContain('AQBsecret');
    expect(s.log.at(-1)).toBe('[done] pool rbd of dc-a and pool rbd-b of dc-b are paired');
  });

  it('imports B’s token at A too when A does not list B as its peer', async () => {
    const imports: string[] = [];
    const s = setup(
      {
        createPeerBootstrap: async (c: AgentConnection) => ({
          token: `${TOKEN}-${c.remoteId}`,
          siteName: c.remoteId,
        }),
        importPeerBootstrap: async (c: AgentConnection, request: { token: string }) => (
          imports.push(`${c.remoteId} <- ${request.token.slice(-4)}`),
          { peers: [] }
        ),
        getPoolMirrorStatus: async () => ({ peers: [] }),
      },
      { pair },
    );
    await s.runner.pair(s.context);
    expect(imports).toEqual(['dc-b <- dc-a', 'dc-a <- dc-b']);
  });

  it('strikes the token out of an error that echoes it, and records the pair failed without it', async () => {
    const s = setup(
      {
        createPeerBootstrap: async () => ({ token: TOKEN, siteName: 'dc-a' }),
        importPeerBootstrap: async () => {
          throw new AgentError(ErrorCode.RemoteError, `rbd: bad token ${TOKEN}`, 'dc-b:9443');
        },
      },
      { pair },
    );
    const failure = await s.runner.pair(s.context).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(DomainError);
    expect((failure as DomainError).message).toBe('rbd: bad token [redacted]');
    expect(s.stored).toEqual([
      ['setPairState', 'pair-1', 'failed', 'rbd: bad token [redacted]', expect.any(Date)],
    ]);
    expect(JSON.stringify([s.log, s.stored])).not.toContain(TOKEN);
  });
});

describe('DrRunnerService: unplanned failover', () => {
  it('refuses to promote anything when the old primary cannot be fenced and nobody declared it down', async () => {
    const s = setup(
      {
        fenceImage: async () => {
          throw new AgentError(
            ErrorCode.RemoteUnreachable,
            'could not connect to dc-a:9443 within 5000 ms',
            'dc-a:9443',
          );
        },
        // promoteImage is absent: calling it would fail the test with "unexpected use".
      },
      { record: record({ action: 'failover' }) },
    );
    const failure = await s.runner.failover(s.context).catch((error: unknown) => error);
    expect(failure).toMatchObject({
      code: ErrorCode.Conflict,
      message: expect.stringMatching(
        /cannot be fenced .* nothing was promoted — if it is down, fail over with declareSourceDown/,
      ),
    });
    // Only the steps a resumed task needs, recorded before the first change.
    expect(s.stored).toEqual([
      [
        'setPending',
        VM,
        expect.objectContaining({ action: 'failover', taskId: TASK, origin: 'source' }),
      ],
    ]);
    expect(s.log[0]).toMatch(
      /^\[check\] unplanned failover of VM web-1 from dc-a to dc-b; data at risk: the writes of the last 240 s/,
    );
  });

  it('fences every disk at a reachable old primary first, then force-promotes at the survivor, moves the VM’s definition there and starts it', async () => {
    const order: string[] = [];
    const s = setup(
      {
        fenceImage: async (c: AgentConnection, ref: { pool: string; image: string }) => (
          order.push(`fence ${c.remoteId} ${ref.pool}/${ref.image}`),
          { blocklisted: ['10.0.0.5:0/1234'], locksBroken: ['auto 1'] }
        ),
        vmAction: async (c: AgentConnection, action: string) => (
          order.push(`${action} ${c.remoteId}`),
          vmAt(action === 'start' ? 'running' : 'stopped', 'node-b1')
        ),
        promoteImage: async (
          c: AgentConnection,
          request: { pool: string; image: string; force: boolean },
        ) => (
          order.push(
            `promote ${c.remoteId} ${request.pool}/${request.image} force=${request.force}`,
          ),
          mirror({ primary: true })
        ),
        getVm: async (c: AgentConnection) => {
          if (c.remoteId === 'dc-a') return vmAt('stopped');
          throw new AgentError(ErrorCode.NotFound, `VM ${VM} not found`, 'dc-b:9443');
        },
        undefineVm: async (c: AgentConnection) => (
          order.push(`undefine ${c.remoteId}`),
          vmAt('stopped')
        ),
        defineVm: async (c: AgentConnection, request: { nodeId: string }) => (
          order.push(`define ${c.remoteId} ${request.nodeId}`),
          vmAt('stopped', request.nodeId)
        ),
        listNodes: async () => ({
          nodes: [
            { info: { nodeId: 'node-b2' }, alive: true },
            { info: { nodeId: 'node-b1' }, alive: true },
          ],
        }),
      },
      { record: record({ action: 'failover' }) },
    );
    await s.runner.failover(s.context);
    expect(order).toEqual([
      'fence dc-a rbd/web-1-disk0',
      'fence dc-a rbd/web-1-disk1',
      'stop dc-a',
      'promote dc-b rbd-b/web-1-disk0 force=true',
      'promote dc-b rbd-b/web-1-disk1 force=true',
      'undefine dc-a',
      'define dc-b node-b1',
      'start dc-b',
    ]);
    expect(s.moved).toEqual([]);
    const steps = expect.objectContaining({ action: 'failover', taskId: TASK, origin: 'source' });
    expect(s.stored).toEqual([
      ['setPending', VM, steps],
      // The record names the task until its last step (a resumed task knows the roles are recorded).
      [
        'setRoles',
        VM,
        { sourceState: 'secondary', targetState: 'primary' },
        'failover to dc-b by ops@local!t (old primary fenced)',
        expect.any(Date),
        steps,
      ],
      ['setPending', VM, null],
    ]);
    expect(s.log).toContain(
      '[fence] rbd/web-1-disk0 at dc-a: blocklisted 10.0.0.5:0/1234; locks broken: auto 1',
    );
  });

  it('with the source declared down: records the declaration, force-promotes and defines the VM at the survivor from the kept definition', async () => {
    const defined: unknown[] = [];
    const s = setup(
      {
        fenceImage: async () => {
          throw new AgentError(ErrorCode.RemoteUnreachable, 'could not connect', 'dc-a:9443');
        },
        promoteImage: async () => mirror({ primary: true }),
        getVm: async () => {
          throw new AgentError(ErrorCode.NotFound, 'not found', 'dc-b:9443');
        },
        defineVm: async (c: AgentConnection, request: unknown) => (
          defined.push({ remote: c.remoteId, request }),
          vmAt('stopped', 'node-b1')
        ),
        vmAction: async () => vmAt('running', 'node-b1'),
      },
      {
        record: record({
          action: 'failover',
          declareSourceDown: true,
          reason: 'datacenter A lost power',
          targetNode: 'node-b1',
        }),
      },
    );
    await s.runner.failover(s.context);
    expect(s.log).toContain(
      '[fence] not fenced: ops@local!t declared remote dc-a down (datacenter A lost power); recorded in the audit log',
    );
    expect(defined).toEqual([
      {
        remote: 'dc-b',
        request: {
          nodeId: 'node-b1',
          spec: expect.objectContaining({
            uuid: VM,
            disks: [
              { pool: 'rbd-b', image: 'web-1-disk0' },
              { pool: 'rbd-b', image: 'web-1-disk1' },
            ],
          }),
        },
      },
    ]);
    expect(s.moved).toEqual([]);
    // Grants on the VM follow it to the survivor, as after a migration.
    expect(s.calls).toContain(`grants ${VM} dc-a -> dc-b`);
    expect(s.log).toContain(`[move] moved 1 ACL entry on the VM to /remotes/dc-b/vms/${VM}`);
    expect(s.log.at(-1)).toBe('[start] the VM is running on node node-b1 of dc-b');
  });
});

describe('DrRunnerService: failover grants', () => {
  it('moves the grants when an earlier attempt already defined the VM, trying a failed write again', async () => {
    let started = false;
    let attempts = 0;
    const s = setup(
      {
        fenceImage: async () => {
          throw new AgentError(ErrorCode.RemoteUnreachable, 'could not connect', 'dc-a:9443');
        },
        promoteImage: async () => mirror({ primary: true }),
        getVm: async (c: AgentConnection) => {
          if (c.remoteId !== 'dc-b')
            throw new AgentError(ErrorCode.RemoteUnreachable, 'could not connect', 'dc-a:9443');
          return vmAt(started ? 'running' : 'stopped', 'node-b1');
        },
        vmAction: async () => ((started = true), vmAt('running', 'node-b1')),
      },
      {
        record: record({
          action: 'failover',
          declareSourceDown: true,
          reason: 'datacenter A lost power',
          targetNode: 'node-b1',
        }),
        moveVmGrants: async () => {
          attempts += 1;
          if (attempts === 1) throw new Error('connection terminated');
          return 2;
        },
      },
    );
    await s.runner.failover(s.context);
    expect(attempts).toBe(2);
    expect(s.log).toContain('[move] the VM is already defined at dc-b (node node-b1)');
    expect(s.log).toContain(
      '[move] could not move the grants on the VM to dc-b yet (an unexpected error (see the manager log)); trying again in 1 s',
    );
    expect(s.log).toContain('logged: cannot move the grants of a failed-over VM yet');
    expect(s.log).toContain(`[move] moved 2 ACL entries on the VM to /remotes/dc-b/vms/${VM}`);
    expect(s.log.at(-1)).toBe('[start] the VM is running on node node-b1 of dc-b');
  });
});

describe('DrRunnerService: planned switchover', () => {
  const SNAP = '2026-01-01T01:00:00.000Z';

  it('stops the VM, takes a final snapshot, waits until it is mirrored, demotes, promotes (once the demotion arrived), moves and starts — in that order', async () => {
    const order: string[] = [];
    let polls = 0;
    let promotions = 0;
    const s = setup(
      {
        listNodes: async () => ({ nodes: [{ info: { nodeId: 'node-b1' }, alive: true }] }),
        getVm: async () => vmAt('running'),
        vmAction: async (c: AgentConnection, action: string) => (
          order.push(`${action} ${c.remoteId}`),
          vmAt(action === 'start' ? 'running' : 'stopped')
        ),
        createMirrorSnapshot: async (c: AgentConnection, ref: { pool: string; image: string }) => (
          order.push(`snapshot ${c.remoteId} ${ref.pool}/${ref.image}`),
          mirror({ primary: true, lastSnapshotAt: SNAP })
        ),
        getMirrorStatus: async (c: AgentConnection) => {
          polls += 1;
          // The first poll sees the old snapshot still syncing; later ones the final one.
          if (c.remoteId === 'dc-a')
            return mirror({
              primary: true,
              lastMirroredSnapshotAt: polls <= 1 ? '2026-01-01T00:55:00Z' : SNAP,
              secondsUntilSynced: polls <= 1 ? 3 : 0,
            });
          return mirror({ primary: false, state: 'up+stopped' });
        },
        demoteImage: async (c: AgentConnection, ref: { pool: string; image: string }) => (
          order.push(`demote ${c.remoteId} ${ref.pool}/${ref.image}`),
          mirror({})
        ),
        promoteImage: async (
          c: AgentConnection,
          r: { pool: string; image: string; force: boolean },
        ) => {
          // The first attempt comes before the demotion snapshot arrived: the agent refuses it.
          if (++promotions === 1)
            throw new AgentError(
              ErrorCode.Conflict,
              'the peer has not demoted its side yet',
              'dc-b:9443',
            );
          order.push(`promote ${c.remoteId} ${r.pool}/${r.image} force=${r.force}`);
          return mirror({ primary: true });
        },
      },
      { record: record({ action: 'switchover' }) },
    );
    await s.runner.switchover(s.context);
    expect(order).toEqual([
      'shutdown dc-a',
      'snapshot dc-a rbd/web-1-disk0',
      'snapshot dc-a rbd/web-1-disk1',
      'demote dc-a rbd/web-1-disk0',
      'demote dc-a rbd/web-1-disk1',
      'promote dc-b rbd-b/web-1-disk0 force=false',
      'promote dc-b rbd-b/web-1-disk1 force=false',
      'start dc-b',
    ]);
    expect(s.moved).toEqual([
      expect.objectContaining({
        sourceRemote: 'dc-a',
        targetRemote: 'dc-b',
        targetNode: 'node-b1',
        storageMap: { rbd: 'rbd-b' },
      }),
    ]);
    const steps = {
      action: 'switchover',
      taskId: TASK,
      credentials: { 'dc-a': null, 'dc-b': null },
      targetNode: 'node-b1',
      origin: 'source',
      wasRunning: true,
      sourceNode: 'node-1',
    };
    expect(s.stored).toEqual([
      ['setPending', VM, steps],
      [
        'setRoles',
        VM,
        { sourceState: 'secondary', targetState: 'primary' },
        'switchover to dc-b by ops@local!t',
        expect.any(Date),
        steps,
      ],
      ['setPending', VM, null],
    ]);
    expect(s.log).toContain(
      '[sync] the final snapshots of all 2 disk(s) are at the other site: nothing is lost',
    );
  });

  it('gives up when the final snapshot does not arrive in time, demotes nothing and starts the VM again at the source', async () => {
    const order: string[] = [];
    const s = setup(
      {
        listNodes: async () => ({ nodes: [{ info: { nodeId: 'node-b1' }, alive: true }] }),
        getVm: async () => vmAt('running'),
        vmAction: async (c: AgentConnection, action: string) => (
          order.push(`${action} ${c.remoteId}`),
          vmAt(action === 'start' ? 'running' : 'stopped')
        ),
        createMirrorSnapshot: async () => mirror({ primary: true, lastSnapshotAt: SNAP }),
        getMirrorStatus: async () =>
          mirror({
            primary: true,
            lastMirroredSnapshotAt: '2026-01-01T00:55:00Z',
            secondsUntilSynced: 99,
          }),
      },
      { record: record({ action: 'switchover' }) },
    );
    await expect(s.runner.switchover(s.context)).rejects.toThrow(
      /did not receive the final mirror snapshot within 600 s: web-1-disk0 \(99 s to go\), web-1-disk1/,
    );
    expect(order).toEqual(['shutdown dc-a', 'start dc-a']);
    expect(s.stored).toEqual([
      ['setPending', VM, expect.objectContaining({ origin: 'source', wasRunning: true })],
      ['setPending', VM, null],
    ]);
    expect(s.calls).toEqual(['refresh dc-a', 'refresh dc-a', 'refresh dc-b']);
    expect(s.log).toContain('[rollback] the switchover was undone: the VM is at dc-a as before');
  });

  it('after the definition moved, a failed demotion gives the source its images and the VM back, and runs it there again', async () => {
    const order: string[] = [];
    const s = setup(
      {
        listNodes: async () => ({ nodes: [{ info: { nodeId: 'node-b1' }, alive: true }] }),
        getVm: async () => vmAt('running', 'node-a2'),
        vmAction: async (c: AgentConnection, action: string) => (
          order.push(`${action} ${c.remoteId}`),
          vmAt(action === 'start' ? 'running' : 'stopped')
        ),
        createMirrorSnapshot: async () => mirror({ primary: true, lastSnapshotAt: SNAP }),
        getMirrorStatus: async () => mirror({ primary: true, lastMirroredSnapshotAt: SNAP }),
        demoteImage: async (c: AgentConnection, ref: { image: string }) => {
          if (ref.image === 'web-1-disk1')
            throw new AgentError(ErrorCode.Conflict, 'the image is held by VM web-1', 'dc-a:9443');
          order.push(`demote ${c.remoteId} ${ref.image}`);
          return mirror({});
        },
        promoteImage: async (c: AgentConnection, r: { image: string; force: boolean }) => (
          order.push(`promote ${c.remoteId} ${r.image} force=${r.force}`),
          mirror({ primary: true })
        ),
        undefineVm: async (c: AgentConnection) => (
          order.push(`undefine ${c.remoteId}`),
          vmAt('stopped')
        ),
        defineVm: async (
          c: AgentConnection,
          request: { nodeId: string; spec: { disks: { pool: string }[] } },
        ) => (
          order.push(
            `define ${c.remoteId} ${request.nodeId} ${request.spec.disks.map((d) => d.pool).join(',')}`,
          ),
          vmAt('stopped')
        ),
      },
      { record: record({ action: 'switchover' }) },
    );
    await expect(s.runner.switchover(s.context)).rejects.toThrow('the image is held by VM web-1');
    expect(s.moved).toHaveLength(1);
    expect(order).toEqual([
      'shutdown dc-a',
      'demote dc-a web-1-disk0',
      // dc-b never became primary: taking the image back loses nothing.
      'promote dc-a web-1-disk0 force=true',
      'undefine dc-b',
      'define dc-a node-a2 rbd,rbd',
      'start dc-a',
    ]);
    expect(s.stored).toEqual([
      [
        'setPending',
        VM,
        expect.objectContaining({ origin: 'source', wasRunning: true, sourceNode: 'node-a2' }),
      ],
      ['setPending', VM, null],
    ]);
    expect(s.log).toContain('[rollback] the switchover was undone: the VM is at dc-a as before');
  });

  it('refuses before touching the VM while the images are split-brained', async () => {
    const s = setup(
      {},
      { record: record({ action: 'switchover' }), observed: { ...OBSERVED, splitBrain: true } },
    );
    await expect(s.runner.switchover(s.context)).rejects.toMatchObject({
      code: ErrorCode.Conflict,
      message: expect.stringMatching(/split brain/),
    });
  });
});

describe('DrRunnerService: resync', () => {
  it('removes the stale copy of the VM, demotes the stale site’s primary images, resyncs them and marks the site secondary once it replays', async () => {
    const order: string[] = [];
    const afterFailover = record(
      { action: 'resync' },
      { sourceState: 'secondary', targetState: 'primary' },
    );
    const site = (primary: boolean, state: string) => ({
      remote: '',
      pool: '',
      reachable: true,
      error: null,
      primary,
      state,
      description: '',
      lastMirroredSnapshotAt: null,
      lastSnapshotAt: null,
      bytesPerSecond: 0,
      secondsUntilSynced: 0,
      splitBrain: false,
    });
    const image = (source: ReturnType<typeof site>, target: ReturnType<typeof site>) => ({
      image: 'i',
      sourcePool: 'rbd',
      targetPool: 'rbd-b',
      sites: [source, target],
      lastMirroredSnapshotAt: null,
      lagSeconds: null,
      bytesPerSecond: 0,
      secondsUntilSynced: 0,
      splitBrain: source.primary && target.primary,
    });
    const split: Observation = {
      ...OBSERVED,
      splitBrain: true,
      images: [
        image(site(true, 'up+stopped'), site(true, 'up+stopped')),
        image(site(true, 'up+stopped'), site(true, 'up+stopped')),
      ],
    };
    const healed: Observation = {
      ...OBSERVED,
      images: [
        image(site(false, 'up+replaying'), site(true, 'up+stopped')),
        image(site(false, 'up+replaying'), site(true, 'up+stopped')),
      ],
    };
    let observations = 0;
    const s = setup(
      {
        demoteImage: async (c: AgentConnection, ref: { pool: string; image: string }) => (
          order.push(`demote ${c.remoteId} ${ref.pool}/${ref.image}`),
          mirror({})
        ),
        resyncImage: async (c: AgentConnection, ref: { pool: string; image: string }) => (
          order.push(`resync ${c.remoteId} ${ref.pool}/${ref.image}`),
          mirror({})
        ),
        getVm: async () => vmAt('running', 'node-1'),
        vmAction: async (c: AgentConnection, action: string) => (
          order.push(`${action} ${c.remoteId}`),
          vmAt('stopped')
        ),
        undefineVm: async (c: AgentConnection) => (
          order.push(`undefine ${c.remoteId}`),
          vmAt('stopped')
        ),
      },
      { record: afterFailover, observe: () => (++observations <= 2 ? split : healed) },
    );
    await s.runner.resync(s.context);
    expect(order).toEqual([
      'stop dc-a',
      'undefine dc-a',
      'demote dc-a rbd/web-1-disk0',
      'resync dc-a rbd/web-1-disk0',
      'demote dc-a rbd/web-1-disk1',
      'resync dc-a rbd/web-1-disk1',
    ]);
    expect(s.stored).toEqual([
      [
        'setRoles',
        VM,
        { sourceState: 'resync', targetState: 'primary' },
        'resync of dc-a by ops@local!t',
        expect.any(Date),
        expect.objectContaining({ action: 'resync', taskId: TASK }),
      ],
      [
        'setRoles',
        VM,
        { sourceState: 'secondary', targetState: 'primary' },
        'resync of dc-a completed',
        expect.any(Date),
      ],
    ]);
  });
});
