import type {
  MigrateVmRequest,
  MigrationProgress__Output,
  PrepareMigrationRequest,
} from '@debvisor/proto';
import { describe, expect, it, vi } from 'vitest';
import { AgentError } from '../agents/agent-error';
import type { AgentConnection } from '../agents/agent-connection';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { TaskCancelled } from '../tasks/task-cancelled';
import { TaskSuspended } from '../tasks/task-suspended';
import {
  answer,
  COOKIE,
  EAST,
  FakeStream,
  migrationRecord,
  progress,
  runnerSetup,
  TASK_ID,
  VM,
  vmOn,
} from '../../test/migration-fixtures';

/** The agents of one cluster (dc-east: VM on node-1) answering a migration to node-2. */
function intraCluster(
  stream: FakeStream,
  extra: {
    prepared?: PrepareMigrationRequest[];
    migrated?: MigrateVmRequest[];
    located?: () => string;
  } = {},
) {
  return {
    getVm: async () => vmOn(extra.located?.() ?? 'node-1'),
    prepareMigration: async (_c: AgentConnection, request: PrepareMigrationRequest) => {
      extra.prepared?.push(request);
      if (request.role === 'source')
        return answer({
          vmState: vmOn('node-1'),
          cpuModel: 'EPYC',
          cpuFlags: ['avx2'],
          nodeId: 'node-1',
        });
      if (request.checkOnly) return answer({ nodeId: 'node-2' });
      return answer({
        endpoint: '10.0.0.2:9443',
        cookie: COOKIE,
        cookieExpiresAt: '2026-01-01T00:01:00Z',
        nodeId: 'node-2',
        caPem: 'EAST-CA-PEM',
        dataEndpoint: 'tcp:10.0.0.2:49152',
      });
    },
    migrateVm: (_c: AgentConnection, request: MigrateVmRequest) => {
      extra.migrated?.push(request);
      return stream;
    },
    cancelMigration: async () => true,
  };
}

describe('MigrationRunnerService: a migration within one remote', () => {
  it('runs pre-flight, prepare and transfer in order, hands the cookie from the target to the source, and completes on the target node', async () => {
    const stream = new FakeStream();
    const prepared: PrepareMigrationRequest[] = [];
    const migrated: MigrateVmRequest[] = [];
    const s = runnerSetup(intraCluster(stream, { prepared, migrated }));
    stream.push(
      progress('setup', { totalBytes: '1000' }),
      progress('precopy', {
        transferredBytes: '600',
        remainingBytes: '400',
        totalBytes: '1000',
        iteration: 1,
      }),
      progress('completed', {
        transferredBytes: '1000',
        totalBytes: '1000',
        downtimeMs: 42,
        totalTimeMs: 900,
        message: 'the VM runs on node node-2',
      }),
    );
    stream.end();

    await s.runner.run(s.context);

    expect(
      prepared.map((r) => `${r.role} ${r.checkOnly ? 'check' : 'reserve'} ${r.migrationId ?? ''}`),
    ).toEqual(['source check ', `target reserve ${TASK_ID}`]);
    // The target checks and prepares in one call (issue 16: one round trip less).
    const reservation = prepared[1];
    expect(reservation).toMatchObject({
      targetNodeId: 'node-2',
      sourceNodeId: 'node-1',
      sourceCaPem: '',
      transport: 'direct',
      online: true,
      sourceCpuModel: 'EPYC',
      sourceCpuFlags: ['avx2'],
    });
    expect(migrated).toEqual([
      expect.objectContaining({
        uuid: VM,
        migrationId: TASK_ID,
        cookie: COOKIE,
        targetEndpoint: '10.0.0.2:9443',
        targetNodeId: 'node-2',
        targetCaPem: 'EAST-CA-PEM',
        targetDataEndpoint: 'tcp:10.0.0.2:49152',
        transport: 'direct',
        mode: 'precopy',
        downtimeLimitMs: 300,
        bandwidthLimitBytes: '0',
        offline: false,
      }),
    ]);
    expect(s.phases.map((p) => p.phase)).toEqual(['preflight', 'prepare', 'transfer', 'completed']);
    expect(s.phases[0].facts).toEqual({ sourceNode: 'node-1' });
    expect(s.log[0]).toMatch(/^\[preflight\] checking both ends/);
    expect(s.log.at(-1)).toBe(
      '[completed] the VM runs on node node-2 of remote dc-east (900 ms in all, 42 ms of downtime)',
    );
    expect(s.log.filter((line) => line.startsWith('[transfer] source:'))).toHaveLength(2);
    expect(s.figures.at(-1)).toEqual({
      figures: expect.objectContaining({
        stage: 'completed',
        transferredBytes: 1000,
        downtimeMs: 42,
        totalTimeMs: 900,
      }),
      fraction: 1,
    });
    expect(s.refreshed).toEqual(['dc-east']);
    expect(s.moved).toEqual([]);
    expect(s.outcomes).toEqual(['succeeded']);
  });

  it('calls each end at its own node once the source node is known, never through another agent', async () => {
    const stream = new FakeStream();
    const agents = intraCluster(stream);
    const calls: string[] = [];
    const twoNodes: AgentConnection = { ...EAST, endpoints: ['east-1:9443', 'east-2:9443'] };
    const s = runnerSetup(
      {
        ...agents,
        getVm: async (connection) => {
          calls.push(`GetVm ${connection.endpoints.join(',')}`);
          return agents.getVm();
        },
        prepareMigration: async (connection, request) => {
          calls.push(`PrepareMigration ${request.role} ${connection.endpoints.join(',')}`);
          return agents.prepareMigration(connection, request);
        },
        migrateVm: (connection, request) => {
          calls.push(`MigrateVm ${connection.endpoints.join(',')}`);
          return agents.migrateVm(connection, request);
        },
      },
      migrationRecord(),
      {
        connections: { 'dc-east': twoNodes },
        nodeEndpoints: { 'dc-east/node-1': 'east-1:9443', 'dc-east/node-2': 'east-2:9443' },
      },
    );
    stream.push(progress('completed', { totalBytes: '1000', totalTimeMs: 900 }));
    stream.end();

    await s.runner.run(s.context);

    expect(calls).toEqual([
      'GetVm east-1:9443,east-2:9443',
      'PrepareMigration source east-1:9443,east-2:9443',
      // the target node's own endpoint first (the remote's other endpoints stay as fallbacks)
      'PrepareMigration target east-2:9443,east-1:9443',
      'MigrateVm east-1:9443,east-2:9443',
    ]);
    expect(s.outcomes).toEqual(['succeeded']);
  });

  it('fails the task, releasing the target, when a phase cannot be recorded while the ends work on', async () => {
    const stream = new FakeStream();
    const cancelled: string[] = [];
    const s = runnerSetup(
      {
        ...intraCluster(stream),
        cancelMigration: async (connection) => {
          cancelled.push(connection.remoteId);
          return true;
        },
      },
      migrationRecord(),
      { failPhase: 'prepare' },
    );

    await expect(s.runner.run(s.context)).rejects.toThrow(/failed unexpectedly/);

    expect(cancelled).toEqual(['dc-east']);
    expect(s.phases.map((p) => p.phase)).toEqual(['preflight', 'failed']);
    expect(s.outcomes).toEqual(['failed']);
  });

  it("records the outcome while the source's stream closes, and ends only once it is closed", async () => {
    const order: string[] = [];
    let close!: () => void;
    const closing = new Promise<void>((resolve) => (close = resolve));
    let sent = false;
    const stream: AsyncIterable<MigrationProgress__Output> = {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          if (sent) return { done: true, value: undefined };
          sent = true;
          return {
            done: false,
            value: progress('completed', { totalBytes: '1000', totalTimeMs: 900 }),
          };
        },
        // the agent client writes the call's audit record when its stream is closed
        return: async () => {
          order.push('closing');
          await closing;
          order.push('closed');
          return { done: true, value: undefined };
        },
      }),
    };
    const s = runnerSetup({ ...intraCluster(new FakeStream()), migrateVm: () => stream });
    let ended = false;
    const run = s.runner.run(s.context).then(() => void (ended = true));

    await vi.waitFor(() => expect(s.phases.map((p) => p.phase)).toContain('completed'));
    expect(order).toEqual(['closing']);
    expect(ended).toBe(false);
    close();
    await run;
    expect(order).toEqual(['closing', 'closed']);
    expect(s.outcomes).toEqual(['succeeded']);
  });

  it('never writes the cookie anywhere but into the source request', async () => {
    const stream = new FakeStream();
    const s = runnerSetup(intraCluster(stream));
    stream.push(
      progress('failed', { message: 'QEMU said no; the VM keeps running on node node-1' }),
    );
    stream.end();
    const error = await s.runner.run(s.context).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DomainError);
    const written = JSON.stringify({
      log: s.log,
      phases: s.phases,
      figures: s.figures,
      error: (error as Error).message,
    });
    expect(written).not.toContain(COOKIE);
    expect(written).not.toContain('SSSSSSSS');
  });

  it('writes the figures of a fast stream at most about twice a second, and always the last', async () => {
    const stream = new FakeStream();
    const s = runnerSetup(intraCluster(stream));
    for (let i = 1; i <= 10; i += 1)
      stream.push(
        progress('precopy', {
          transferredBytes: String(i * 100),
          remainingBytes: String(1000 - i * 90),
          totalBytes: '1000',
          iteration: 1,
        }),
      );
    stream.push(progress('completed', { totalBytes: '1000', transferredBytes: '1000' }));
    stream.end();
    await s.runner.run(s.context);
    // The fake clock stands still: the first report and the final one are written, none between.
    expect(s.figures.map((f) => f.figures.transferredBytes)).toEqual([100, 1000]);
    expect(s.figures[0].fraction).toBeCloseTo(0.05 + 0.9 * 0.09);
  });

  it('never lets the progress go back when a second pass finds dirtied memory to send again', async () => {
    let advance: (ms: number) => void = () => undefined;
    const reports = [
      progress('precopy', {
        transferredBytes: '800',
        remainingBytes: '200',
        totalBytes: '1000',
        iteration: 1,
      }),
      // The second pass: memory dirtied during the first is due again (0.94 → 0.88 before).
      progress('precopy', {
        transferredBytes: '900',
        remainingBytes: '300',
        totalBytes: '1000',
        iteration: 2,
      }),
      progress('precopy', {
        transferredBytes: '1150',
        remainingBytes: '50',
        totalBytes: '1000',
        iteration: 2,
      }),
      progress('completed', { totalBytes: '1000', transferredBytes: '1200' }),
    ];
    const s = runnerSetup({
      ...intraCluster(new FakeStream()),
      migrateVm: async function* () {
        for (const report of reports) {
          advance(1000);
          yield report;
        }
      },
    });
    advance = (ms) => {
      s.clock.advance(ms);
    };
    await s.runner.run(s.context);
    const fractions = s.figures.map((f) => f.fraction);
    expect(s.figures.map((f) => f.figures.iteration)).toEqual([1, 2, 2, 0]);
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));
    expect(fractions[1]).toBeCloseTo(fractions[0]);
    expect(fractions.at(-1)).toBe(1);
  });

  it('fails before anything is reserved when a check fails, saying which and where the VM still is', async () => {
    const stream = new FakeStream();
    const prepared: PrepareMigrationRequest[] = [];
    const s = runnerSetup({
      ...intraCluster(stream, { prepared }),
      prepareMigration: async (_c: AgentConnection, request: PrepareMigrationRequest) => {
        prepared.push(request);
        return request.role === 'source'
          ? answer()
          : answer({
              ok: false,
              checks: [{ name: 'memory', result: 'fail', reason: 'needs 256 MiB, 128 MiB free' }],
            });
      },
    });
    await expect(s.runner.run(s.context)).rejects.toThrow(
      'pre-flight failed: target memory: needs 256 MiB, 128 MiB free; the VM was not moved: it is still running on node node-1 of remote dc-east',
    );
    // The target refused with its checks: a refusal reserves nothing (the agent's contract).
    expect(prepared.map((r) => `${r.role} ${r.checkOnly}`)).toEqual([
      'source true',
      'target false',
    ]);
    expect(stream.opened).toBe(false);
    // 'prepare' is recorded before the target's call, so that a restart during it releases the target.
    expect(s.phases.map((p) => p.phase)).toEqual(['preflight', 'prepare', 'failed']);
    expect(s.log).toContain('[preflight] target memory: fail — needs 256 MiB, 128 MiB free');
    expect(s.outcomes).toEqual(['failed']);
  });

  it('refuses a target node that already runs the VM', async () => {
    const s = runnerSetup(
      intraCluster(new FakeStream()),
      migrationRecord({ targetNode: 'node-1' }),
    );
    await expect(s.runner.run(s.context)).rejects.toThrow(
      'manager target-node: the VM already runs on node node-1',
    );
  });

  it("on a failed transfer releases the target's side and states where the VM is, as the agents answer", async () => {
    const stream = new FakeStream();
    const cancelled: string[] = [];
    const s = runnerSetup({
      ...intraCluster(stream),
      cancelMigration: async (_c, ref) => (
        cancelled.push(`${ref.nodeId} ${ref.migrationId}`),
        true
      ),
    });
    stream.push(
      progress('precopy', { totalBytes: '1000', remainingBytes: '900' }),
      progress('failed', {
        message: 'the tunnel to the target broke; the VM keeps running on node node-1',
      }),
    );
    stream.end();
    const error = (await s.runner.run(s.context).catch((e: unknown) => e)) as DomainError;
    expect(error).toBeInstanceOf(DomainError);
    expect(error).not.toBeInstanceOf(TaskCancelled);
    expect(error.message).toBe(
      'the tunnel to the target broke; the VM keeps running on node node-1 — checked: the VM is running on node node-1 of remote dc-east',
    );
    expect(cancelled).toEqual([`node-2 ${TASK_ID}`]);
    expect(s.phases.map((p) => p.phase)).toEqual(['preflight', 'prepare', 'transfer', 'failed']);
    expect(s.log.at(-1)).toBe('[failed] the VM is running on node node-1 of remote dc-east');
    expect(s.refreshed).toEqual(['dc-east']);
  });

  it('follows the migration through GetMigration when the stream breaks, and completes when the source says so', async () => {
    const stream = new FakeStream();
    const answers = [
      progress('precopy'),
      progress('switchover'),
      progress('completed', { totalTimeMs: 1200, downtimeMs: 80 }),
    ];
    const s = runnerSetup({
      ...intraCluster(stream),
      getMigration: async (_c, ref) => (
        expect(ref).toEqual({ migrationId: TASK_ID, vmUuid: VM, nodeId: 'node-1' }),
        answers.shift()!
      ),
    });
    stream.push(progress('precopy', { totalBytes: '10' }));
    stream.fail(
      new AgentError(
        ErrorCode.RemoteUnreachable,
        'east:9443 is unreachable: connection reset',
        'east:9443',
      ),
    );
    await s.runner.run(s.context);
    expect(answers).toEqual([]);
    expect(s.log).toContain(
      "[transfer] lost the source's progress stream (east:9443 is unreachable: connection reset); asking the source how the migration stands",
    );
    expect(s.phases.at(-1)!.phase).toBe('completed');
  });

  it('decides by where the VM is when the source no longer knows the migration', async () => {
    const stream = new FakeStream();
    // The pre-flight finds the VM on node-1; after the transfer it is on node-2.
    const sightings = ['node-1', 'node-2'];
    const s = runnerSetup({
      ...intraCluster(stream, { located: () => sightings.shift()! }),
      getMigration: async () =>
        Promise.reject(
          new AgentError(ErrorCode.NotFound, 'no migration 9d7f… on node node-1', 'east:9443'),
        ),
    });
    stream.fail(new AgentError(ErrorCode.RemoteUnreachable, 'gone', 'east:9443'));
    await s.runner.run(s.context);
    expect(s.log).toContain(
      '[completed] the source could not say how the migration ended; found: the VM is running on node node-2 of remote dc-east',
    );
  });
});

describe('MigrationRunnerService: across remotes', () => {
  it("pins the source remote's CA at the target, tunnels, and moves the VM's grants to the new remote", async () => {
    const stream = new FakeStream();
    const prepared: { connection: AgentConnection; request: PrepareMigrationRequest }[] = [];
    const located: string[] = [];
    const s = runnerSetup(
      {
        getVm: async (connection) => (located.push(connection.remoteId), vmOn('node-1')),
        prepareMigration: async (connection, request) => {
          prepared.push({ connection, request });
          if (request.role === 'source') return answer({ vmState: vmOn('node-1') });
          return request.checkOnly
            ? answer()
            : answer({
                endpoint: 'west-1:9443',
                cookie: COOKIE,
                nodeId: 'node-2',
                caPem: 'WEST-CA-PEM',
              });
        },
        migrateVm: (connection, request) => {
          expect(connection).toBe(EAST);
          expect(request).toMatchObject({
            transport: 'tunnel',
            targetCaPem: 'WEST-CA-PEM',
            targetEndpoint: 'west-1:9443',
            cookie: COOKIE,
          });
          return stream;
        },
      },
      migrationRecord({
        targetRemote: 'dc-west',
        options: { ...migrationRecord().options, transport: 'tunnel' },
      }),
      { movedGrants: 2 },
    );
    stream.push(progress('completed'));
    stream.end();
    await s.runner.run(s.context);
    expect(prepared.map((p) => `${p.connection.remoteId} ${p.request.role}`)).toEqual([
      'dc-east source',
      'dc-west target',
    ]);
    expect(prepared[1].request.sourceCaPem).toBe('EAST-CA-PEM');
    expect(s.moved).toEqual([`${VM} dc-east→dc-west`]);
    // through the acl feature, which owns the entries (and forgets cached rights when some moved)
    expect(s.acl.moveVmGrants).toHaveBeenCalledOnce();
    expect(s.refreshed.sort()).toEqual(['dc-east', 'dc-west']);
    expect(s.log).toContain(
      `[completed] moved 2 ACL entries on the VM to /remotes/dc-west/vms/${VM}`,
    );
    expect(located).toEqual(['dc-east']);
  });

  it('completes a move only with the grants moved, trying a failed write again instead of failing the task (issue 14 item 12)', async () => {
    const stream = new FakeStream();
    const s = runnerSetup(
      {
        getVm: async () => vmOn('node-1'),
        prepareMigration: async (_connection, request) =>
          request.role === 'source' || request.checkOnly
            ? answer({ vmState: vmOn('node-1') })
            : answer({ endpoint: 'west-1:9443', cookie: COOKIE, nodeId: 'node-2', caPem: 'W' }),
        migrateVm: () => stream,
      },
      migrationRecord({
        targetRemote: 'dc-west',
        options: { ...migrationRecord().options, transport: 'tunnel' },
      }),
      { movedGrants: 1, grantMoveFailures: 2 },
    );
    stream.push(progress('completed'));
    stream.end();
    await s.runner.run(s.context);
    expect(s.moved).toHaveLength(3);
    expect(s.phases.map((p) => p.phase)).not.toContain('failed');
    expect(s.phases.at(-1)?.phase).toBe('completed');
    expect(s.outcomes).toEqual(['succeeded']);
    expect(s.log.filter((line) => line.includes('trying again'))).toHaveLength(2);
    expect(s.log).toContain(
      `[completed] moved 1 ACL entry on the VM to /remotes/dc-west/vms/${VM}`,
    );
  });

  it('tells the listeners that the VM changed remotes before the record is completed, and journals what they did or that one failed', async () => {
    const stream = new FakeStream();
    const s = runnerSetup(
      {
        getVm: async () => vmOn('node-1'),
        prepareMigration: async (_connection, request) => {
          if (request.role === 'source') return answer({ vmState: vmOn('node-1') });
          return request.checkOnly
            ? answer()
            : answer({
                endpoint: 'west-1:9443',
                cookie: COOKIE,
                nodeId: 'node-2',
                caPem: 'WEST-CA-PEM',
              });
        },
        migrateVm: () => stream,
      },
      migrationRecord({
        targetRemote: 'dc-west',
        options: { ...migrationRecord().options, transport: 'tunnel' },
      }),
    );
    const heard: unknown[] = [];
    s.events.subscribe(async (event) => {
      heard.push({ ...event, phases: s.phases.map((p) => p.phase) });
      return 'replication: dc-west is primary now';
    });
    s.events.subscribe(async () => {
      throw new DomainError(ErrorCode.Internal, 'the database went away');
    });
    stream.push(progress('completed'));
    stream.end();
    await s.runner.run(s.context);
    expect(heard).toEqual([
      {
        type: 'vm-moved',
        taskId: TASK_ID,
        vmId: VM,
        fromRemote: 'dc-east',
        toRemote: 'dc-west',
        online: true,
        phases: expect.not.arrayContaining(['completed']),
      },
    ]);
    expect(s.log).toContain('[completed] replication: dc-west is primary now');
    expect(s.log).toContain(
      '[completed] the VM moved, but recording it elsewhere failed: the database went away',
    );
    expect(s.phases.at(-1)?.phase).toBe('completed');
  });

  it('releases the target’s side of a move a restart interrupted, before the task moves the VM again', async () => {
    const released: string[] = [];
    const s = runnerSetup(
      {
        cancelMigration: async (c, ref) => (
          released.push(`${c.remoteId} ${ref.nodeId} ${ref.migrationId}`),
          true
        ),
      },
      migrationRecord({
        targetRemote: 'dc-west',
        phase: 'prepare',
        options: { ...migrationRecord().options, online: false, transport: 'tunnel' },
      }),
    );
    await s.runner.releaseInterrupted(s.context, s.record);
    expect(released).toEqual([`dc-west ${s.record.targetNode} ${TASK_ID}`]);
    expect(s.log).toEqual([
      "[prepare] releasing the target's side of the move a manager restart interrupted (prepare)",
    ]);
  });

  it('tells nobody about a migration within one remote', async () => {
    const stream = new FakeStream();
    const s = runnerSetup(intraCluster(stream));
    s.events.subscribe(async () => {
      throw new Error('not expected');
    });
    stream.push(progress('completed'));
    stream.end();
    await s.runner.run(s.context);
    expect(s.log.some((line) => line.includes('recording it elsewhere'))).toBe(false);
  });
});

describe('MigrationRunnerService: preparing the target during the pre-flight', () => {
  /** The agents of dc-east, recording each reservation and whether the source had answered its check by then. */
  function agentsOf(order: string[], cpu: () => string, released: string[] = []) {
    let sourceAnswered = false;
    return {
      getVm: async () => vmOn('node-1'),
      prepareMigration: async (_c: AgentConnection, request: PrepareMigrationRequest) => {
        if (request.role === 'source') {
          sourceAnswered = false;
          await new Promise((resolve) => setImmediate(resolve)); // an answer takes a moment
          sourceAnswered = true;
          return answer({ vmState: vmOn('node-1'), cpuModel: cpu(), cpuFlags: ['avx2'] });
        }
        order.push(
          `target reserve (${request.sourceCpuModel}) ${sourceAnswered ? 'after' : 'while'} the source checks`,
        );
        return answer({ endpoint: '10.0.0.2:9443', cookie: COOKIE, nodeId: 'node-2' });
      },
      migrateVm: () => {
        const stream = new FakeStream();
        stream.push(progress('completed'));
        stream.end();
        return stream;
      },
      cancelMigration: async (_c: AgentConnection, ref: { nodeId: string }) => (
        released.push(ref.nodeId),
        true
      ),
    };
  }

  it('asks the target to prepare while the source checks once the source node’s CPU is known', async () => {
    const order: string[] = [];
    const s = runnerSetup(agentsOf(order, () => 'EPYC'));
    await s.runner.run(s.context);
    expect(order).toEqual(['target reserve (EPYC) after the source checks']);
    order.length = 0;
    await s.runner.run(s.context);
    // the second migration from node-1: the target prepares while the source checks
    expect(order).toEqual(['target reserve (EPYC) while the source checks']);
    expect(s.log).toContain(
      '[prepare] asking node node-2 of remote dc-east to check and prepare the incoming side while the source checks',
    );
    expect(s.phases.at(-1)!.phase).toBe('completed');
  });

  it('prepares the target again, after releasing it, when the source’s CPU is not the one it was prepared for', async () => {
    const order: string[] = [];
    const released: string[] = [];
    let model = 'EPYC';
    const s = runnerSetup(agentsOf(order, () => model, released));
    await s.runner.run(s.context);
    model = 'EPYC-v2';
    order.length = 0;
    await s.runner.run(s.context);
    expect(order).toEqual([
      'target reserve (EPYC) while the source checks',
      'target reserve (EPYC-v2) after the source checks',
    ]);
    expect(released).toEqual(['node-2']);
    expect(s.phases.at(-1)!.phase).toBe('completed');
  });

  it('releases a target prepared alongside when the source’s checks fail', async () => {
    const order: string[] = [];
    const released: string[] = [];
    let sourceOk = true;
    const base = agentsOf(order, () => 'EPYC', released);
    const s = runnerSetup({
      ...base,
      prepareMigration: async (c: AgentConnection, request: PrepareMigrationRequest) => {
        const reply = await base.prepareMigration(c, request);
        if (request.role !== 'source' || sourceOk) return reply;
        return {
          ...reply,
          ok: false,
          checks: [{ name: 'vm-state', result: 'fail', reason: 'the VM is locked by a snapshot' }],
        };
      },
    });
    await s.runner.run(s.context);
    sourceOk = false;
    await expect(s.runner.run(s.context)).rejects.toThrow(
      'pre-flight failed: source vm-state: the VM is locked by a snapshot',
    );
    expect(released).toEqual(['node-2']);
  });
});

describe('MigrationRunnerService: the per-link bandwidth cap', () => {
  /** Agents of dc-east and dc-west answering a move of the VM across, its stream ending `completed`. */
  function acrossRemotes(migrated: MigrateVmRequest[]) {
    const stream = new FakeStream();
    stream.push(progress('completed'));
    stream.end();
    return {
      getVm: async () => vmOn('node-1'),
      prepareMigration: async (_c: AgentConnection, request: PrepareMigrationRequest) =>
        request.role === 'source'
          ? answer({ vmState: vmOn('node-1') })
          : answer({ endpoint: 'west-1:9443', cookie: COOKIE, nodeId: 'node-2' }),
      migrateVm: (_c: AgentConnection, request: MigrateVmRequest) => (
        migrated.push(request),
        stream
      ),
    };
  }
  const across = (limit: number) =>
    migrationRecord({
      targetRemote: 'dc-west',
      options: { ...migrationRecord().options, transport: 'tunnel', bandwidthLimitBytes: limit },
    });

  it('runs an unlimited migration across remotes at the link cap, and one with a lower limit at its own', async () => {
    const migrated: MigrateVmRequest[] = [];
    const unlimited = runnerSetup(acrossRemotes(migrated), across(0), { linkCapBytes: 50_000_000 });
    await unlimited.runner.run(unlimited.context);
    expect(migrated.at(-1)!.bandwidthLimitBytes).toBe('50000000');
    expect(unlimited.log).toContain(
      "[preflight] bandwidth: at most 50000000 bytes/s (the link's cap is 50000000 bytes/s)",
    );
    const lower = runnerSetup(acrossRemotes(migrated), across(20_000_000), {
      linkCapBytes: 50_000_000,
    });
    await lower.runner.run(lower.context);
    expect(migrated.at(-1)!.bandwidthLimitBytes).toBe('20000000');
  });

  it('leaves a migration within one remote at its own limit', async () => {
    const migrated: MigrateVmRequest[] = [];
    const stream = new FakeStream();
    stream.push(progress('completed'));
    stream.end();
    const s = runnerSetup(intraCluster(stream, { migrated }), migrationRecord(), {
      linkCapBytes: 50_000_000,
    });
    await s.runner.run(s.context);
    expect(migrated[0].bandwidthLimitBytes).toBe('0');
    expect(s.log.some((line) => line.includes('bandwidth'))).toBe(false);
  });
});

describe('MigrationRunnerService: cancel', () => {
  it('asks the source to stop during the transfer; the task ends cancelled when the stream says so, and the target is released', async () => {
    const stream = new FakeStream();
    const cancels: string[] = [];
    const s = runnerSetup({
      ...intraCluster(stream),
      cancelMigration: async (c, ref) => (cancels.push(`${c.remoteId} ${ref.nodeId}`), true),
    });
    const running = s.runner.run(s.context);
    stream.push(progress('precopy', { totalBytes: '1000', remainingBytes: '800' }));
    await vi.waitFor(() => expect(s.phases.map((p) => p.phase)).toContain('transfer'));
    await s.runner.cancel(s.task, 'bob@local');
    expect(cancels).toEqual(['dc-east node-1']);
    stream.push(
      progress('cancelled', {
        message: 'cancelled during the transfer; the VM keeps running on node node-1',
      }),
    );
    stream.end();
    const error = await running.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskCancelled);
    expect((error as Error).message).toBe(
      'cancelled by bob@local: cancelled during the transfer; the VM keeps running on node node-1 — checked: the VM is running on node node-1 of remote dc-east',
    );
    expect(cancels).toEqual(['dc-east node-1', 'dc-east node-2']);
    expect(s.log).toContain('[transfer] cancel requested by bob@local');
    expect(s.phases.at(-1)!.phase).toBe('cancelled');
    expect(s.outcomes).toEqual(['cancelled']);
  });

  it('asks the source again when it had not registered the migration yet', async () => {
    const stream = new FakeStream();
    const answers = [false, true];
    const s = runnerSetup({
      ...intraCluster(stream),
      cancelMigration: async () => answers.shift() ?? true,
    });
    const running = s.runner.run(s.context);
    await vi.waitFor(() => expect(stream.opened).toBe(true));
    await s.runner.cancel(s.task, 'bob@local');
    expect(answers).toEqual([true]);
    s.clock.advance(1500);
    stream.push(progress('setup'));
    await vi.waitFor(() => expect(answers).toEqual([]));
    stream.push(progress('cancelled', { message: 'cancelled before the transfer began' }));
    stream.end();
    await expect(running).rejects.toBeInstanceOf(TaskCancelled);
  });

  it('stops before the transfer when cancelled while the target prepares, releasing the target and never calling the source', async () => {
    const stream = new FakeStream();
    let reserve: (() => void) | undefined;
    const released: string[] = [];
    const base = intraCluster(stream);
    const s = runnerSetup({
      ...base,
      prepareMigration: async (c, request) => {
        if (!request.checkOnly) await new Promise<void>((resolve) => (reserve = resolve));
        return base.prepareMigration(c, request);
      },
      cancelMigration: async (_c, ref) => (released.push(ref.nodeId), true),
    });
    const running = s.runner.run(s.context);
    await vi.waitFor(() => expect(reserve).toBeDefined());
    await s.runner.cancel(s.task, 'bob@local');
    reserve!();
    await expect(running).rejects.toThrow(
      'cancelled by bob@local before the transfer began; the VM was not moved: it is still running on node node-1 of remote dc-east',
    );
    expect(released).toEqual(['node-2']);
    expect(stream.opened).toBe(false);
    expect(s.phases.map((p) => p.phase)).toEqual(['preflight', 'prepare', 'cancelled']);
  });

  it('answers 409 when the source is past the point of no return, and the migration goes on', async () => {
    const stream = new FakeStream();
    const s = runnerSetup({
      ...intraCluster(stream),
      cancelMigration: async () =>
        Promise.reject(
          new AgentError(
            ErrorCode.Conflict,
            'the VM already runs on the target; the migration can no longer be cancelled',
            'east:9443',
          ),
        ),
    });
    const running = s.runner.run(s.context);
    stream.push(progress('switchover'));
    await vi.waitFor(() => expect(s.log.some((l) => l.includes('source: switchover'))).toBe(true));
    await expect(s.runner.cancel(s.task, 'bob@local')).rejects.toMatchObject({
      code: ErrorCode.Conflict,
      message: expect.stringContaining('can no longer be cancelled'),
    });
    stream.push(progress('completed'));
    stream.end();
    await running;
    expect(s.phases.at(-1)!.phase).toBe('completed');
  });

  it('lets go at shutdown: the task stays as it is for the next start', async () => {
    const stream = new FakeStream();
    const s = runnerSetup({
      ...intraCluster(stream),
      migrateVm: (_c: AgentConnection, _r: MigrateVmRequest, signal?: AbortSignal) => {
        signal?.addEventListener('abort', () => stream.end());
        return stream;
      },
    });
    const running = s.runner.run(s.context);
    await vi.waitFor(() => expect(stream.opened).toBe(true));
    s.runner.suspend();
    await expect(running).rejects.toBeInstanceOf(TaskSuspended);
    expect(s.phases.map((p) => p.phase)).toEqual(['preflight', 'prepare', 'transfer']);
  });
});
