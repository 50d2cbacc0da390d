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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './helpers';

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
    private readonly bytesPerSecond: number,
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
const busy: TestVmSpec = {
  uuid: randomUUID(),
  name: 'resumed',
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

/**
 * Two clusters (one node each, so that the test may put its relay between them: within a cluster
 * the source insists on the target's registered endpoint). Across clusters the resumption also
 * needs the peer CA pinned for the migration, which the target keeps until post-copy is done.
 */
describe('post-copy whose link between the agents breaks is resumed by the agents (real QEMU, TCG)', () => {
  let east: TestCluster;
  let west: TestCluster;
  let viaEast: AgentClient;
  let viaWest: AgentClient;

  beforeAll(async () => {
    const tiny = await buildTinyGuest();
    const agentConfig = () => ({
      hypervisor: { driver: 'qemu' },
      qemu: { accel: 'tcg', machine: 'pc', bootDir: tiny.dir },
      migration: { progressIntervalMs: 100, postcopyRecoveryWindowSeconds: 600 },
    });
    [east, west] = await Promise.all([
      startCluster({
        clusterId: 'pcr-east',
        nodes: 1,
        vmsPerNode: 0,
        agentConfig,
        prepareNode: (_nodeId, stateDir) => writeQemuVm(stateDir, busy),
      }),
      startCluster({ clusterId: 'pcr-west', nodes: 1, vmsPerNode: 0, agentConfig }),
    ]);
    const permissions = ['vm:*', 'migration:*', 'node:*'];
    viaEast = east.connect(await east.createApiKey(permissions));
    viaWest = west.connect(await west.createApiKey(permissions));
    await viaEast.vm.startVm({ uuid: busy.uuid }, { deadlineMs: 60_000 });
  }, 120_000);
  afterAll(async () => {
    viaEast?.close();
    viaWest?.close();
    await Promise.all([east?.stop(), west?.stop()]);
  });

  const runDir = (cluster: TestCluster) => join(cluster.agents[0].stateDir, 'run', busy.uuid);
  const ticks = (cluster: TestCluster) => {
    const file = join(runDir(cluster), 'serial.log');
    return existsSync(file) ? lastTinyGuestTick(readFileSync(file, 'utf8')) : 0;
  };
  const qemuAlive = (cluster: TestCluster) => {
    const pidFile = join(runDir(cluster), 'pid');
    const pid = existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim() : '';
    return pid !== '' && existsSync(`/proc/${pid}`);
  };
  /** Waits for a tick beyond `after` on that cluster's node; answers it. */
  async function tickBeyond(cluster: TestCluster, after: number): Promise<number> {
    const { value } = await eventually(
      async () => (ticks(cluster) > after ? ticks(cluster) : undefined),
      120_000,
      200,
    );
    return value;
  }

  it('cuts the link mid-post-copy and restores it: the migration resumes and completes, the guest ticks on at the target, once', async () => {
    const before = await tickBeyond(east, 0);
    const vm: Vm__Output = await viaEast.vm.getVm({ uuid: busy.uuid });
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
    expect(prepared.checks.filter((c) => c.result === 'fail')).toEqual([]);
    const link = await AgentLink.open(prepared.endpoint, 16 * MiB);
    const paused: string[] = [];
    let postcopyRemaining = 0;
    try {
      const progress = await viaEast.migrateVm(
        {
          uuid: busy.uuid,
          migrationId,
          targetEndpoint: link.endpoint,
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
        (p: MigrationProgress__Output) => {
          // post-copy under way and committed (the switch's own message is the policy's reason)
          if (p.phase === 'postcopy' && p.message === '' && link.cuts === 0) {
            postcopyRemaining = Number(p.remainingBytes);
            link.cut();
          }
          if (p.message.startsWith('paused:')) {
            paused.push(p.message);
            link.restore();
          }
        },
      );
      const final = progress.at(-1)!;
      expect(final, final.message).toMatchObject({ phase: 'completed' });
      expect(link.cuts).toBe(1);
      expect(postcopyRemaining).toBeGreaterThan(0);
      expect(paused[0]).toMatch(
        /^paused: the link to node node-1 was lost during post-copy; recovering until \d\d:\d\d UTC/,
      );
      expect(progress.some((p) => p.message.startsWith('post-copy resumed'))).toBe(true);
    } finally {
      link.close();
    }

    // the VM runs at the target, with its memory: the tick counter goes on from where it was
    expect((await viaWest.vm.getVm({ uuid: busy.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
    });
    const there = await tickBeyond(west, before);
    expect(await tickBeyond(west, there)).toBeGreaterThan(there);
    // exactly once: the source's QEMU is gone and its cluster no longer has the VM
    expect(qemuAlive(west)).toBe(true);
    expect(qemuAlive(east)).toBe(false);
    expect((await viaEast.vm.listVms({})).vms.map((v) => v.spec!.uuid)).not.toContain(busy.uuid);
  }, 300_000);
});
