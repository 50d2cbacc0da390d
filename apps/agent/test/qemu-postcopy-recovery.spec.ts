import type { MigrationProgress__Output, Vm__Output } from '@debvisor/proto';
import {
  buildTinyGuest,
  lastTinyGuestTick,
  startCluster,
  tinyGuestAppend,
  writeQemuVm,
  type AgentClient,
  type TestCluster,
  type TestVmSpec,
} from '@debvisor/testing';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

const MiB = 1024 ** 2;

/**
 * The link between the two agents as the test controls it: a TCP relay in front of the target
 * agent's one port (the control stream and the data connections both go through it), each
 * direction paced at `bytesPerSecond` like a datacenter link. cut() breaks every connection and
 * refuses new ones until restore().
 */
class AgentLink {
  private readonly sockets = new Set<Socket>();
  private down = false;
  cuts = 0;

  private constructor(
    private readonly server: Server,
    private readonly target: { host: string; port: number },
    /** The link's pace: slowed down once post-copy begins (it has long to go when cut), fast once restored. */
    public bytesPerSecond: number,
  ) {
    server.on('connection', (client) => this.relay(client));
  }

  static async open(targetEndpoint: string, bytesPerSecond: number): Promise<AgentLink> {
    const at = targetEndpoint.lastIndexOf(':');
    const target = {
      host: targetEndpoint.slice(0, at).replace(/^\[|\]$/g, ''),
      port: Number(targetEndpoint.slice(at + 1)),
    };
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    return new AgentLink(server, target, bytesPerSecond);
  }

  get endpoint(): string {
    const address = this.server.address();
    if (!address || typeof address === 'string') throw new Error('the relay does not listen');
    return `127.0.0.1:${address.port}`;
  }

  cut(): void {
    this.down = true;
    this.cuts++;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  restore(): void {
    this.down = false;
  }

  close(): void {
    this.cut();
    this.server.close();
  }

  private relay(client: Socket): void {
    if (this.down) {
      client.destroy();
      return;
    }
    const server = createConnection(this.target);
    for (const socket of [client, server]) {
      this.sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.sockets.delete(socket);
        client.destroy();
        server.destroy();
      });
    }
    this.pace(client, server);
    this.pace(server, client);
  }

  /** Copies `from` to `to`, each chunk taking its share of a second (the link's pace, not a wait). */
  private pace(from: Socket, to: Socket): void {
    from.on('data', (chunk: Buffer) => {
      to.write(chunk);
      from.pause();
      setTimeout(() => from.resume(), (chunk.length / this.bytesPerSecond) * 1000);
    });
  }
}

/** Rewrites a 32 MiB working set at 64 MiB/s: post-copy has pages left to pull for a while. */
function busyGuest(name: string): TestVmSpec {
  return {
    uuid: randomUUID(),
    name,
    vcpus: 1,
    memoryBytes: 128 * MiB,
    disks: [],
    nics: [],
    cpuModel: 'x86-64-v2',
    hugepages: false,
    tenant: '',
    labels: {
      'qemu-kernel': 'kernel',
      'qemu-initrd': 'initrd.cpio',
      // page_poison=1: no page is zero, so post-copy carries the whole of the guest's memory
      'qemu-append': `${tinyGuestAppend({ dirtyMibPerSecond: 64, workingSetMib: 32 })} page_poison=1`,
    },
  };
}

/**
 * Two clusters of one node each, a busy guest running in the first, the agents configured with
 * `windowSeconds` of post-copy recovery. Two clusters so that the test may put its relay between
 * the agents (within a cluster the source insists on the target's registered endpoint); across
 * clusters the resumption also needs the peer CA pinned for the migration, which the target keeps
 * until post-copy is done.
 */
function clusters(name: string, windowSeconds: number) {
  const guest = busyGuest(name);
  const ctx = {} as {
    east: TestCluster;
    west: TestCluster;
    viaEast: AgentClient;
    viaWest: AgentClient;
  };
  beforeAll(async () => {
    const tiny = await buildTinyGuest();
    const agentConfig = () => ({
      hypervisor: { driver: 'qemu' },
      qemu: { accel: 'tcg', machine: 'pc', bootDir: tiny.dir },
      migration: { progressIntervalMs: 100, postcopyRecoveryWindowSeconds: windowSeconds },
    });
    [ctx.east, ctx.west] = await Promise.all([
      startCluster({
        clusterId: `${name}-east`,
        nodes: 1,
        vmsPerNode: 0,
        agentConfig,
        prepareNode: (_nodeId, stateDir) => writeQemuVm(stateDir, guest),
      }),
      startCluster({ clusterId: `${name}-west`, nodes: 1, vmsPerNode: 0, agentConfig }),
    ]);
    const permissions = ['vm:*', 'migration:*', 'node:*'];
    ctx.viaEast = ctx.east.connect(await ctx.east.createApiKey(permissions));
    ctx.viaWest = ctx.west.connect(await ctx.west.createApiKey(permissions));
    await ctx.viaEast.vm.startVm({ uuid: guest.uuid }, { deadlineMs: 60_000 });
  }, 120_000);
  afterAll(async () => {
    ctx.viaEast?.close();
    ctx.viaWest?.close();
    await Promise.all([ctx.east?.stop(), ctx.west?.stop()]);
  });

  const runDir = (cluster: TestCluster) => join(cluster.agents[0].stateDir, 'run', guest.uuid);
  const ticks = (cluster: TestCluster) => {
    const file = join(runDir(cluster), 'serial.log');
    return existsSync(file) ? lastTinyGuestTick(readFileSync(file, 'utf8')) : 0;
  };
  return {
    ctx,
    guest,
    qemuAlive(cluster: TestCluster): boolean {
      const pidFile = join(runDir(cluster), 'pid');
      const pid = existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim() : '';
      return pid !== '' && existsSync(`/proc/${pid}`);
    },
    /** Waits for a tick beyond `after` on that cluster's node; answers it. */
    async tickBeyond(cluster: TestCluster, after: number): Promise<number> {
      const { value } = await eventually(
        async () => (ticks(cluster) > after ? ticks(cluster) : undefined),
        120_000,
        200,
      );
      return value;
    },
    /** Prepares the move east → west; answers the MigrateVm request (its endpoint to be set). */
    async prepare() {
      const { viaEast, viaWest, east } = ctx;
      const vm: Vm__Output = await viaEast.vm.getVm({ uuid: guest.uuid });
      const migrationId = randomUUID();
      const source = await viaEast.migration.prepareMigration({
        vm: vm.spec!,
        role: 'source',
        online: true,
        checkOnly: true,
      });
      const prepared = await viaWest.migration.prepareMigration({
        vm: vm.spec!,
        role: 'target',
        targetNodeId: 'node-1',
        migrationId,
        transport: 'tunnel',
        online: true,
        allowPostcopy: true,
        sourceNodeId: 'node-1',
        sourceCaPem: east.caPem,
        sourceCpuModel: source.cpuModel,
        sourceCpuFlags: source.cpuFlags,
      });
      expect(prepared.checks.filter((c: { result: string }) => c.result === 'fail')).toEqual([]);
      return {
        targetEndpoint: prepared.endpoint,
        request: {
          uuid: guest.uuid,
          migrationId,
          cookie: prepared.cookie,
          transport: 'tunnel',
          mode: 'postcopy',
          downtimeLimitMs: 300,
          bandwidthLimitBytes: 0,
          completionTimeoutSecondsPerGib: 0,
          allowPostcopy: true,
          targetCaPem: prepared.caPem,
          targetNodeId: prepared.nodeId,
        },
      };
    },
  };
}

/** Post-copy under way and committed: the switch's own progress carries the policy's reason. */
const committedPostcopy = (p: MigrationProgress__Output) =>
  p.phase === 'postcopy' && p.message === '';

describe('post-copy whose link between the agents breaks is resumed by the agents (real QEMU, TCG)', () => {
  const { ctx, guest, qemuAlive, tickBeyond, prepare } = clusters('pcr', 600);

  it('cuts the link mid-post-copy and restores it: the migration resumes and completes, the guest ticks on at the target, once', async () => {
    const { viaEast, viaWest, east, west } = ctx;
    const before = await tickBeyond(east, 0);
    const { targetEndpoint, request } = await prepare();
    const link = await AgentLink.open(targetEndpoint, 16 * MiB);
    const paused: string[] = [];
    let postcopyRemaining = 0;
    try {
      const progress = await viaEast.migrateVm(
        { ...request, targetEndpoint: link.endpoint },
        (p) => {
          if (p.phase === 'postcopy' && link.cuts === 0) link.bytesPerSecond = 1 * MiB;
          if (committedPostcopy(p) && link.cuts === 0) {
            postcopyRemaining = Number(p.remainingBytes);
            link.cut();
          }
          if (p.message.startsWith('paused:')) {
            paused.push(p.message);
            link.bytesPerSecond = 64 * MiB;
            link.restore();
          }
        },
      );
      const final = progress.at(-1)!;
      expect(final, final.message).toMatchObject({ phase: 'completed' });
      expect(link.cuts).toBe(1);
      // cut with seconds of pages still to go (a slow link once post-copy began)
      expect(postcopyRemaining).toBeGreaterThan(1 * MiB);
      expect(paused[0]).toMatch(
        /^paused: the link to node node-1 was lost during post-copy; recovering until \d\d:\d\d UTC/,
      );
      expect(progress.some((p) => p.message.startsWith('post-copy resumed'))).toBe(true);
    } finally {
      link.close();
    }

    // the VM runs at the target, with its memory: the tick counter goes on from where it was
    expect((await viaWest.vm.getVm({ uuid: guest.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
    });
    const there = await tickBeyond(west, before);
    expect(await tickBeyond(west, there)).toBeGreaterThan(there);
    // exactly once: the source's QEMU is gone and its cluster no longer has the VM
    expect(qemuAlive(west)).toBe(true);
    expect(qemuAlive(east)).toBe(false);
    expect((await viaEast.vm.listVms({})).vms.map((v) => v.spec!.uuid)).not.toContain(guest.uuid);
  }, 300_000);
});

describe('post-copy whose link stays down past the recovery window (real QEMU, TCG)', () => {
  const { ctx, guest, qemuAlive, tickBeyond, prepare } = clusters('pcw', 5);

  it('keeps the VM paused on both ends and says what to do; run again once the link is back, it completes at the target', async () => {
    const { viaEast, viaWest, east, west } = ctx;
    const before = await tickBeyond(east, 0);
    const { targetEndpoint, request } = await prepare();
    const link = await AgentLink.open(targetEndpoint, 16 * MiB);
    try {
      const stranded = await viaEast.migrateVm(
        { ...request, targetEndpoint: link.endpoint },
        (p) => {
          if (p.phase === 'postcopy' && link.cuts === 0) link.bytesPerSecond = 1 * MiB;
          if (committedPostcopy(p) && link.cuts === 0) link.cut();
        },
      );
      const outcome = stranded.at(-1)!;
      expect(outcome.phase).toBe('failed');
      expect(outcome.message).toMatch(
        /^needs operator: VM pcw is paused on node node-1 .* and on node node-1 .*, so do not stop, restart or start it on either node; 1\) restore the link .*; 2\) run the migration again with the same migration id/,
      );
      expect(stranded.some((p) => p.message.startsWith('paused:'))).toBe(true);
      // neither end was stopped, and neither may run it on its own
      expect(qemuAlive(east)).toBe(true);
      expect(qemuAlive(west)).toBe(true);
      expect((await rpcError(viaEast.vm.startVm({ uuid: guest.uuid }))).code).toBe(
        status.FAILED_PRECONDITION,
      );

      // the operator restores the link and runs the migration again: it resumes and completes
      link.bytesPerSecond = 64 * MiB;
      link.restore();
      const progress = await viaEast.migrateVm({ ...request, targetEndpoint: link.endpoint });
      const final = progress.at(-1)!;
      expect(final, final.message).toMatchObject({ phase: 'completed' });
      expect(progress.some((p) => p.message.startsWith('post-copy resumed'))).toBe(true);
    } finally {
      link.close();
    }
    const there = await tickBeyond(west, before);
    expect(await tickBeyond(west, there)).toBeGreaterThan(there);
    expect(qemuAlive(east)).toBe(false);
    expect((await viaWest.vm.getVm({ uuid: guest.uuid })).runtime).toMatchObject({
      state: 'running',
    });
  }, 300_000);
});
