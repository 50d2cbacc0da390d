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
import { status } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

const MiB = 1024 ** 2;
const PERMISSIONS = ['vm:*', 'migration:*', 'node:*'];

/** Tiny Linux guests (a kernel and a busybox initramfs), idle or dirtying memory at a set rate. */
function guest(
  name: string,
  dirtyMibPerSecond: number,
  memoryMib = 128,
  workingSetMib = 16,
): TestVmSpec {
  return {
    uuid: randomUUID(),
    name,
    vcpus: 1,
    memoryBytes: memoryMib * MiB,
    disks: [],
    nics: [],
    cpuModel: 'x86-64-v2',
    hugepages: false,
    tenant: '',
    labels: {
      'qemu-kernel': 'kernel',
      'qemu-initrd': 'initrd.cpio',
      'qemu-append': tinyGuestAppend({ dirtyMibPerSecond, workingSetMib }),
    },
  };
}

/** The threads of the QEMU whose pid file is `pidFile`, for a failure message. */
function qemuThreads(pidFile: string): string {
  const pid = existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim() : '';
  if (!/^\d+$/.test(pid) || !existsSync(`/proc/${pid}/task`)) return '(no QEMU)';
  return readdirSync(`/proc/${pid}/task`)
    .map((task) => {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      return `${name} ${fields[0]} ${fields[11]} ${fields[12]}`;
    })
    .join(', ');
}

/**
 * Where the QEMU whose pid file is `pidFile` writes its serial console and how far it got, for a
 * failure message: an offset past 0 beside an empty log means the guest printed and the test read
 * another file (the log replaced); an offset of 0 means the guest's UART never sent a byte.
 */
function qemuSerialWrites(pidFile: string): string {
  const pid = existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim() : '';
  if (!/^\d+$/.test(pid) || !existsSync(`/proc/${pid}/fd`)) return '(no QEMU)';
  const serial = readdirSync(`/proc/${pid}/fd`)
    .map((fd) => {
      try {
        return { fd, target: readlinkSync(`/proc/${pid}/fd/${fd}`) };
      } catch {
        return { fd, target: '' }; // closed meanwhile
      }
    })
    .filter(({ target }) => target.includes('serial.log'));
  if (serial.length === 0) return '(no serial log open)';
  return serial
    .map(({ fd, target }) => {
      const pos = /^pos:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      return `${target} at offset ${pos?.[1] ?? '?'}`;
    })
    .join(', ');
}

const idle = guest('idle', 0);
const crossing = guest('crossing', 0);
const cancelled = guest('cancelled', 4);
// Rewrites a 32 MiB working set at 64 MiB/s: a round of an 8 MiB/s link never gets below the downtime limit.
const busy = guest('busy', 64, 128, 32);
const orphaned = guest('orphaned', 4);

describe('live migration on real QEMU (TCG) between agents, within a cluster and across clusters', () => {
  let east: TestCluster;
  let west: TestCluster;
  let viaEast: AgentClient;
  let viaWest: AgentClient;

  beforeAll(async () => {
    const tiny = await buildTinyGuest();
    const agentConfig = () => ({
      hypervisor: { driver: 'qemu' },
      qemu: { accel: 'tcg', machine: 'pc', bootDir: tiny.dir },
      migration: { progressIntervalMs: 100 },
    });
    [east, west] = await Promise.all([
      startCluster({
        clusterId: 'qm-east',
        nodes: 2,
        vmsPerNode: 0,
        agentConfig,
        prepareNode: (nodeId, stateDir) => {
          if (nodeId === 'node-1')
            for (const spec of [idle, crossing, cancelled, busy, orphaned])
              writeQemuVm(stateDir, spec);
        },
      }),
      startCluster({ clusterId: 'qm-west', nodes: 1, vmsPerNode: 0, agentConfig }),
    ]);
    viaEast = east.connect(await east.createApiKey(PERMISSIONS));
    viaWest = west.connect(await west.createApiKey(PERMISSIONS));
    await Promise.all(
      [idle, crossing, cancelled, busy, orphaned].map((spec) =>
        viaEast.vm.startVm({ uuid: spec.uuid }, { deadlineMs: 60_000 }),
      ),
    );
    await Promise.all(
      [idle, crossing, cancelled, busy, orphaned].map((spec) =>
        waitForTicks(east, 'node-1', spec.uuid, 1),
      ),
    );
  }, 120_000);
  afterAll(async () => {
    viaEast?.close();
    viaWest?.close();
    await Promise.all([east?.stop(), west?.stop()]);
  });

  const serialLog = (cluster: TestCluster, nodeId: string, uuid: string) =>
    join(cluster.agents.find((a) => a.nodeId === nodeId)!.stateDir, 'run', uuid, 'serial.log');
  /**
   * Waits until the guest printed a tick beyond `after` on that node's serial log; answers the tick.
   * A tick follows each round of the guest's memory writes, which under TCG on a loaded 2-core CI
   * machine (five guests here, another test file beside) took over 30 s once for the busy guest.
   */
  async function waitForTicks(
    cluster: TestCluster,
    nodeId: string,
    uuid: string,
    after: number,
  ): Promise<number> {
    const file = serialLog(cluster, nodeId, uuid);
    try {
      const { value } = await eventually(
        async () => {
          const tick = existsSync(file) ? lastTinyGuestTick(readFileSync(file, 'utf8')) : 0;
          return tick > after ? tick : undefined;
        },
        90_000,
        200,
      );
      return value;
    } catch (error) {
      // what the next look at a guest that does not tick needs: its QEMU's view and threads
      const vm = await cluster.connect(await cluster.createApiKey(PERMISSIONS)).vm.getVm({ uuid });
      throw new Error(
        `${(error as Error).message}: no tick beyond ${after} on node ${nodeId}; the VM: ${JSON.stringify(vm.runtime)}; QEMU threads (name state utime stime): ${qemuThreads(join(file, '..', 'pid'))}; QEMU's serial writes: ${qemuSerialWrites(join(file, '..', 'pid'))}; serial log tail: ${existsSync(file) ? JSON.stringify(readFileSync(file, 'utf8').slice(-400)) : '(none)'}`,
      );
    }
  }

  interface Options {
    target: { client: AgentClient; nodeId: string; cluster: TestCluster };
    bandwidthLimitBytes?: number;
    allowPostcopy?: boolean;
    mode?: 'precopy' | 'postcopy' | 'auto';
    completionTimeoutSecondsPerGib?: number;
    onProgress?: (progress: MigrationProgress__Output, migrationId: string) => void;
  }

  async function migrate(spec: TestVmSpec, options: Options): Promise<MigrationProgress__Output[]> {
    const crossCluster = options.target.cluster !== east;
    const vm: Vm__Output = await viaEast.vm.getVm({ uuid: spec.uuid });
    const migrationId = randomUUID();
    const source = await viaEast.migration.prepareMigration({
      vm: vm.spec!,
      role: 'source',
      online: true,
      checkOnly: true,
    });
    expect(source.checks.filter((c: { result: string }) => c.result === 'fail')).toEqual([]);
    const prepared = await options.target.client.migration.prepareMigration({
      vm: vm.spec!,
      role: 'target',
      targetNodeId: options.target.nodeId,
      migrationId,
      transport: 'tunnel',
      online: true,
      allowPostcopy: options.allowPostcopy ?? false,
      sourceNodeId: 'node-1',
      sourceCaPem: crossCluster ? east.caPem : '',
      sourceCpuModel: source.cpuModel,
      sourceCpuFlags: source.cpuFlags,
    });
    expect(prepared.checks.filter((c: { result: string }) => c.result === 'fail')).toEqual([]);
    return viaEast.migrateVm(
      {
        uuid: spec.uuid,
        migrationId,
        targetEndpoint: prepared.endpoint,
        cookie: prepared.cookie,
        transport: 'tunnel',
        mode: options.mode ?? 'precopy',
        downtimeLimitMs: 300,
        bandwidthLimitBytes: options.bandwidthLimitBytes ?? 0,
        completionTimeoutSecondsPerGib: options.completionTimeoutSecondsPerGib ?? 0,
        allowPostcopy: options.allowPostcopy ?? false,
        targetCaPem: crossCluster ? prepared.caPem : '',
        targetNodeId: prepared.nodeId,
      },
      (progress) => options.onProgress?.(progress, migrationId),
    );
  }
  const final = (progress: MigrationProgress__Output[]) => progress[progress.length - 1];

  it('live-migrates a running guest to the other node through the tunnel; the guest goes on ticking there', async () => {
    const before = await waitForTicks(east, 'node-1', idle.uuid, 0);
    const progress = await migrate(idle, {
      target: { client: viaEast, nodeId: 'node-2', cluster: east },
    });
    expect(final(progress), final(progress).message).toMatchObject({
      phase: 'completed',
      message: 'the VM runs on node node-2',
    });
    expect(final(progress).totalTimeMs).toBeGreaterThan(0);
    expect(Number(final(progress).transferredBytes)).toBeGreaterThan(0);
    expect((await viaEast.vm.getVm({ uuid: idle.uuid })).runtime).toMatchObject({
      nodeId: 'node-2',
      state: 'running',
    });
    // The guest's memory (its tick counter) came along: it counts on from where it was.
    expect(await waitForTicks(east, 'node-2', idle.uuid, before)).toBeGreaterThan(before);
    expect(
      (await viaEast.vm.listVms({ nodeId: 'node-1' })).vms.map((vm) => vm.spec!.uuid),
    ).not.toContain(idle.uuid);
  });

  it('live-migrates a running guest to another cluster through the tunnel, with pinned CAs', async () => {
    const progress = await migrate(crossing, {
      target: { client: viaWest, nodeId: 'node-1', cluster: west },
    });
    expect(final(progress), final(progress).message).toMatchObject({ phase: 'completed' });
    expect((await viaWest.vm.getVm({ uuid: crossing.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
    });
    expect((await rpcError(viaEast.vm.getVm({ uuid: crossing.uuid }))).code).toBe(status.NOT_FOUND);
    expect(await waitForTicks(west, 'node-1', crossing.uuid, 0)).toBeGreaterThan(0);
  });

  it('cancels in the middle: the guest runs on at the source and nothing is left at the target', async () => {
    let cancel: Promise<unknown> | undefined;
    const progress = await migrate(cancelled, {
      target: { client: viaEast, nodeId: 'node-2', cluster: east },
      bandwidthLimitBytes: 2 * MiB,
      onProgress: (p, migrationId) => {
        if (p.phase === 'precopy' && Number(p.transferredBytes) > 0 && !cancel)
          cancel = viaEast.migration.cancelMigration({ migrationId, vmUuid: cancelled.uuid });
      },
    });
    expect(await cancel).toEqual({ cancelled: true });
    expect(final(progress)).toMatchObject({ phase: 'cancelled' });
    expect((await viaEast.vm.getVm({ uuid: cancelled.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
      lockedBy: '',
    });
    const ticking = await waitForTicks(east, 'node-1', cancelled.uuid, 0);
    expect(await waitForTicks(east, 'node-1', cancelled.uuid, ticking)).toBeGreaterThan(ticking);
    await eventually(
      async () =>
        (await viaEast.vm.listVms({ nodeId: 'node-2' })).vms.some(
          (vm) => vm.spec!.uuid === cancelled.uuid,
        )
          ? undefined
          : true,
      10_000,
    );
  });

  it('a guest dirtying memory faster than the bandwidth limit does not converge: aborts cleanly without post-copy, completes with it', async () => {
    const refused = await migrate(busy, {
      target: { client: viaEast, nodeId: 'node-2', cluster: east },
      bandwidthLimitBytes: 8 * MiB,
      completionTimeoutSecondsPerGib: 120,
    });
    expect(final(refused)).toMatchObject({
      phase: 'failed',
      message: expect.stringMatching(/did not complete within 15 s.*keeps running on node node-1/),
    });
    // Past the first full pass, the guest kept dirtying memory the link had to carry again.
    expect(
      refused.some((p) => Number(p.iteration) >= 2 && Number(p.dirtyRateBytes) > 0),
      JSON.stringify(refused.slice(-2)),
    ).toBe(true);
    expect((await viaEast.vm.getVm({ uuid: busy.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
      lockedBy: '',
    });
    // The guest itself runs on at the source (not only its QEMU): a guest that stops here would
    // otherwise show up only as a silent guest at the target of the post-copy migration below.
    const ticking = await waitForTicks(east, 'node-1', busy.uuid, 0);
    expect(await waitForTicks(east, 'node-1', busy.uuid, ticking)).toBeGreaterThan(ticking);
    await eventually(
      async () =>
        (await viaEast.vm.listVms({ nodeId: 'node-2' })).vms.some(
          (vm) => vm.spec!.uuid === busy.uuid,
        )
          ? undefined
          : true,
      10_000,
    );

    const progress = await migrate(busy, {
      target: { client: viaEast, nodeId: 'node-2', cluster: east },
      bandwidthLimitBytes: 8 * MiB,
      completionTimeoutSecondsPerGib: 120,
      allowPostcopy: true,
    });
    expect(final(progress), final(progress).message).toMatchObject({ phase: 'completed' });
    expect(progress.some((p) => p.phase === 'postcopy')).toBe(true);
    expect((await viaEast.vm.getVm({ uuid: busy.uuid })).runtime).toMatchObject({
      nodeId: 'node-2',
      state: 'running',
    });
    expect(await waitForTicks(east, 'node-2', busy.uuid, 0)).toBeGreaterThan(0);
  }, 180_000);

  it('leaves the guest running at the source when the target agent is killed mid-migration', async () => {
    let killed: Promise<void> | undefined;
    const progress = await migrate(orphaned, {
      target: { client: viaEast, nodeId: 'node-2', cluster: east },
      bandwidthLimitBytes: 2 * MiB,
      onProgress: (p) => {
        if (p.phase === 'precopy' && Number(p.transferredBytes) > 0 && !killed)
          killed = east.agents[1].kill();
      },
    });
    await killed;
    expect(final(progress)).toMatchObject({
      phase: 'failed',
      message: expect.stringMatching(/keeps running on node node-1/),
    });
    expect((await viaEast.vm.getVm({ uuid: orphaned.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
      lockedBy: '',
    });
    const ticking = await waitForTicks(east, 'node-1', orphaned.uuid, 0);
    expect(await waitForTicks(east, 'node-1', orphaned.uuid, ticking)).toBeGreaterThan(ticking);
    await east.agents[1].restart();
    expect(
      (await viaEast.vm.listVms({ nodeId: 'node-2' })).vms.map((vm) => vm.spec!.uuid),
    ).not.toContain(orphaned.uuid);
  }, 180_000);
});
