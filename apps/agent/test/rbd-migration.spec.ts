import type { MigrationProgress__Output, MirrorStatus__Output, Vm__Output } from '@debvisor/proto';
import {
  buildTinyGuest,
  lastTinyGuestTick,
  pollUntil,
  startCephCluster,
  startCluster,
  startRbdMirrorPair,
  tinyGuestAppend,
  writeQemuVm,
  type AgentClient,
  type CephCluster,
  type RbdMirrorPair,
  type TestCluster,
  type TestVmSpec,
} from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rpcError } from './helpers';

/**
 * Cross-cluster live migration over real RBD snapshot mirroring: the tiny QEMU guest (TCG) runs
 * from an RBD image of Ceph cluster A, through the agents of cluster "rm-east" (A) and "rm-west"
 * (B), each agent with the rbd storage driver of its own Ceph cluster; rbd-mirror daemons replay
 * between the clusters. One pair of Ceph clusters and one guest for the whole file; the tests run
 * in order and build on each other's state.
 */

const MiB = 1024 ** 2;
const POOL = 'rbd';
const IMAGE = 'mover-disk0';
const PERMISSIONS = ['vm:*', 'migration:*', 'node:*', 'storage:*'];
/** rbd-mirror rewrites `rbd mirror image status` every 30 s: waits on it allow one period and some. */
const STATUS_WAIT_MS = 75_000;
/** West's pre-flight limit on a mirror's lag (migration.maxMirrorLagSeconds), low enough to trip in a test. */
const MAX_LAG_SECONDS = 5;
/**
 * How long a target waits for its mirrors at the switchover (migration.mirrorHandoverTimeoutSeconds,
 * the default): the VM is paused meanwhile. 10 s was too short for the final snapshot on a loaded CI
 * machine ("about 1 s to go"); the case that trips it stops rbd-mirror, so any bound fails it.
 */
const HANDOVER_TIMEOUT_SECONDS = 30;

/** What the agent's client needs for mirroring on top of profile rbd (as in rbd-mirroring.spec.ts). */
const MIRRORING_CLIENT_CAPS = {
  mon: [
    'profile rbd',
    'allow command "config-key set" with key prefix rbd/mirror/',
    'allow command "config-key get" with key prefix rbd/mirror/',
    'allow command "config-key rm" with key prefix rbd/mirror/',
    'allow command "auth get-or-create" with entity=client.rbd-mirror-peer',
    'allow command "service dump"',
    'allow command "service status"',
  ].join(', '),
  osd: 'profile rbd',
  mgr: 'profile rbd',
};

/** The switchover's parts as the source's completion message states them (ms). */
function switchoverParts(message: string): Record<string, number> {
  const parts = /paused about (\d+) ms: QEMU's downtime (\d+) ms, then (.*)$/.exec(message);
  if (!parts) throw new Error(`no switchover figures in: ${message}`);
  const figures: Record<string, number> = {
    paused: Number(parts[1]),
    qemuDowntime: Number(parts[2]),
  };
  for (const part of parts[3].split(', ')) {
    const [, name, ms] = /^(.*) (\d+) ms$/.exec(part) ?? [];
    figures[name] = Number(ms);
  }
  return figures;
}

/** A guest without disks: the same switchover without the storage step (the baseline). */
const light: TestVmSpec = {
  uuid: randomUUID(),
  name: 'light',
  vcpus: 1,
  memoryBytes: 96 * MiB,
  disks: [],
  nics: [],
  cpuModel: 'x86-64-v2',
  hugepages: false,
  tenant: '',
  labels: {
    'qemu-kernel': 'kernel',
    'qemu-initrd': 'initrd.cpio',
    'qemu-append': tinyGuestAppend({ dirtyMibPerSecond: 0 }),
  },
};

const mover: TestVmSpec = {
  uuid: randomUUID(),
  name: 'mover',
  vcpus: 1,
  memoryBytes: 96 * MiB,
  disks: [{ pool: POOL, image: IMAGE, sizeBytes: 32 * MiB, bus: 'virtio' }],
  nics: [],
  cpuModel: 'x86-64-v2',
  hugepages: false,
  tenant: '',
  // The guest runs from its initramfs and never writes its disk: the image's content before the
  // migration is the content it must have after it.
  labels: {
    'qemu-kernel': 'kernel',
    'qemu-initrd': 'initrd.cpio',
    'qemu-append': tinyGuestAppend({ dirtyMibPerSecond: 0 }),
  },
};

describe('cross-cluster live migration of a QEMU guest whose disk is a mirrored RBD image of a real Ceph cluster', () => {
  let a: CephCluster;
  let b: CephCluster;
  let pair: RbdMirrorPair;
  let east: TestCluster;
  let west: TestCluster;
  let viaEast: AgentClient;
  let viaWest: AgentClient;
  let content = '';
  const figures: Record<string, unknown>[] = [];

  beforeAll(async () => {
    const [tiny, ca, cb] = await Promise.all([
      buildTinyGuest(),
      startCephCluster({ name: 'rmsitea', clientCaps: MIRRORING_CLIENT_CAPS }),
      startCephCluster({ name: 'rmsiteb', clientCaps: MIRRORING_CLIENT_CAPS }),
    ]);
    [a, b] = [ca, cb];
    pair = await startRbdMirrorPair(a, b);
    await a.importImage(POOL, IMAGE, randomBytes(32 * MiB));
    content = await a.imageSha256(POOL, IMAGE);
    const agentConfig =
      (ceph: CephCluster, extra: Record<string, unknown> = {}) =>
      () => ({
        hypervisor: { driver: 'qemu' },
        qemu: { accel: 'tcg', machine: 'pc', bootDir: tiny.dir },
        storage: { driver: 'rbd' },
        rbd: {
          cluster: ceph.name,
          conf: ceph.confPath,
          keyring: ceph.clientKeyringPath,
          clientId: ceph.clientId,
        },
        migration: { progressIntervalMs: 100, ...extra },
      });
    [east, west] = await Promise.all([
      startCluster({
        clusterId: 'rm-east',
        nodes: 1,
        vmsPerNode: 0,
        agentConfig: agentConfig(a, { mirrorHandoverTimeoutSeconds: HANDOVER_TIMEOUT_SECONDS }),
        prepareNode: (_nodeId, stateDir) => {
          writeQemuVm(stateDir, mover);
          writeQemuVm(stateDir, light);
        },
      }),
      startCluster({
        clusterId: 'rm-west',
        nodes: 1,
        vmsPerNode: 0,
        agentConfig: agentConfig(b, {
          maxMirrorLagSeconds: MAX_LAG_SECONDS,
          mirrorHandoverTimeoutSeconds: HANDOVER_TIMEOUT_SECONDS,
        }),
      }),
    ]);
    viaEast = east.connect(await east.createApiKey(PERMISSIONS));
    viaWest = west.connect(await west.createApiKey(PERMISSIONS));
  }, 240_000);

  afterAll(async () => {
    console.log(`rbd migration figures: ${JSON.stringify(figures)}`);
    viaEast?.close();
    viaWest?.close();
    await Promise.all([east?.stop(), west?.stop()]);
    await pair?.stop();
    await Promise.all([a?.stop(), b?.stop()]);
  }, 120_000);

  const ref = { pool: POOL, image: IMAGE };
  const serialLog = (cluster: TestCluster, vm: TestVmSpec) =>
    join(cluster.agents[0].stateDir, 'run', vm.uuid, 'serial.log');
  /** Waits until the guest printed a tick beyond `after` in that cluster's serial log; answers it. */
  const tickBeyond = (cluster: TestCluster, after: number, vm = mover) =>
    pollUntil(`${vm.name} ticks beyond ${after} at ${cluster.clusterId}`, 90_000, async () => {
      const file = serialLog(cluster, vm);
      const tick = existsSync(file) ? lastTinyGuestTick(readFileSync(file, 'utf8')) : 0;
      return tick > after ? tick : undefined;
    });
  /** Waits until `to` holds `from`'s newest mirror snapshot completely and replays; answers `to`'s status. */
  const synced = async (from: AgentClient, to: AgentClient): Promise<MirrorStatus__Output> => {
    const primary = await from.storage.getMirrorStatus(ref);
    expect(primary.lastSnapshotAt).not.toBe('');
    return pollUntil(
      `the mirror holds the snapshot of ${primary.lastSnapshotAt} and replays`,
      STATUS_WAIT_MS,
      async () => {
        const mirror = await to.storage.getMirrorStatus(ref);
        return mirror.state === 'up+replaying' &&
          mirror.lastMirroredSnapshotAt >= primary.lastSnapshotAt
          ? mirror
          : undefined;
      },
    );
  };

  /** The VMs holding the image's agent lock (the rados lock "debvisor" on its header) in that cluster. */
  const vmLockers = async (ceph: CephCluster): Promise<string[]> => {
    const { id } = await ceph.json<{ id: string }>('rbd', ['info', `${POOL}/${IMAGE}`]);
    const info = await ceph.exec(
      'rados',
      ['-p', POOL, 'lock', 'info', `rbd_header.${id}`, 'debvisor', '--format', 'json'],
      { allowFailure: true },
    );
    if (info.code !== 0) return [];
    return (
      JSON.parse(info.stdout.toString('utf8')) as { lockers: { cookie: string }[] }
    ).lockers.map((locker) => locker.cookie);
  };

  type Side = { client: AgentClient; cluster: TestCluster };
  async function prepare(from: Side, to: Side, spec = mover) {
    const vm: Vm__Output = await from.client.vm.getVm({ uuid: spec.uuid });
    const source = await from.client.migration.prepareMigration({
      vm: vm.spec!,
      role: 'source',
      online: true,
      checkOnly: true,
    });
    expect(source.checks.filter((c: { result: string }) => c.result === 'fail')).toEqual([]);
    const migrationId = randomUUID();
    const prepared = await to.client.migration.prepareMigration({
      vm: vm.spec!,
      role: 'target',
      targetNodeId: 'node-1',
      migrationId,
      transport: 'tunnel',
      online: true,
      sourceNodeId: 'node-1',
      sourceCaPem: from.cluster.caPem,
      sourceCpuModel: source.cpuModel,
      sourceCpuFlags: source.cpuFlags,
      sourceDisks: source.disks,
    });
    return { migrationId, prepared };
  }

  async function migrate(
    from: Side,
    to: Side,
    spec = mover,
    beforeStart: () => Promise<void> = async () => undefined,
  ): Promise<MigrationProgress__Output[]> {
    const { migrationId, prepared } = await prepare(from, to, spec);
    expect(prepared.checks.filter((c: { result: string }) => c.result === 'fail')).toEqual([]);
    await beforeStart();
    const progress: MigrationProgress__Output[] = [];
    const started = Date.now();
    await from.client.migrateVm(
      {
        uuid: spec.uuid,
        migrationId,
        targetEndpoint: prepared.endpoint,
        cookie: prepared.cookie,
        transport: 'tunnel',
        mode: 'precopy',
        downtimeLimitMs: 300,
        targetCaPem: prepared.caPem,
        targetNodeId: prepared.nodeId,
      },
      (p) => progress.push(p),
    );
    const last = progress[progress.length - 1];
    figures.push({
      vm: spec.name,
      from: from.cluster.clusterId,
      to: to.cluster.clusterId,
      wallMs: Date.now() - started,
      phase: last.phase,
      totalTimeMs: last.totalTimeMs,
      message: last.message,
    });
    return progress;
  }

  it('pairs the pools through the agents, mirrors the disk and replays it at B with the same content', async () => {
    const token = await viaEast.storage.createPeerBootstrap({ pool: POOL, siteName: 'site-a' });
    const paired = await viaWest.storage.importPeerBootstrap({
      pool: POOL,
      siteName: 'site-b',
      token: token.token,
      direction: 'rx-tx',
    });
    expect(paired.peers).toEqual([
      expect.objectContaining({ siteName: 'site-a', direction: 'rx-tx' }),
    ]);
    const enabled = await viaEast.storage.enableMirroring({ ...ref, mode: 'snapshot' });
    expect(enabled).toMatchObject({ enabled: true, primary: true, mode: 'snapshot' });
    const mirror = await synced(viaEast, viaWest);
    expect(mirror).toMatchObject({ primary: false, globalId: enabled.globalId });
    expect(await b.imageSha256(POOL, IMAGE)).toBe(content);
  }, 120_000);

  it('runs the guest from the RBD image at A', async () => {
    await expect(
      viaEast.vm.startVm({ uuid: mover.uuid }, { deadlineMs: 60_000 }),
    ).resolves.toMatchObject({ runtime: { state: 'running' } });
    await expect(
      viaEast.vm.startVm({ uuid: light.uuid }, { deadlineMs: 60_000 }),
    ).resolves.toMatchObject({ runtime: { state: 'running' } });
    await tickBeyond(east, 0);
    await tickBeyond(east, 0, light);
    const watchers = await a.json<{ watchers: unknown[] }>('rbd', ['status', `${POOL}/${IMAGE}`]);
    expect(watchers.watchers.length).toBeGreaterThan(0);
  });

  it("refuses the move in pre-flight while B's rbd-mirror is stopped and the mirror lags, and passes once it replays again", async () => {
    await pair.mirrorB.stop();
    try {
      // A mirror snapshot that cannot arrive: after the limit, the mirror lags (or reports down).
      const taken = await viaEast.storage.createMirrorSnapshot(ref);
      await pollUntil(
        'pre-flight at B refuses the stalled mirror',
        STATUS_WAIT_MS,
        async () => {
          const { prepared } = await prepare(
            { client: viaEast, cluster: east },
            { client: viaWest, cluster: west },
          );
          const storage = prepared.checks.find(
            (c: { name: string }) => c.name === `storage:${POOL}/${IMAGE}`,
          );
          if (storage?.result !== 'fail') return undefined;
          expect(prepared.ok).toBe(false);
          expect(prepared.cookie).toBe('');
          expect(storage.reason).toMatch(
            /lags \d+ s behind the source \(limit 5 s, migration.maxMirrorLagSeconds\)|wait until it replays/,
          );
          return storage.reason;
        },
        1_000,
      );
      expect(taken.lastSnapshotAt).not.toBe('');
    } finally {
      await pair.mirrorB.start();
    }
    await synced(viaEast, viaWest);
    const { migrationId, prepared } = await prepare(
      { client: viaEast, cluster: east },
      { client: viaWest, cluster: west },
    );
    expect(prepared.checks.filter((c: { result: string }) => c.result === 'fail')).toEqual([]);
    // The reservation this pre-flight made is given back.
    await expect(
      viaWest.migration.cancelMigration({ migrationId, vmUuid: mover.uuid }),
    ).resolves.toEqual({ cancelled: true });
  }, 240_000);

  it('refuses post-copy for a VM with disks to another cluster: the guest would run on read-only mirrors', async () => {
    const { migrationId, prepared } = await prepare(
      { client: viaEast, cluster: east },
      { client: viaWest, cluster: west },
    );
    try {
      const error = await rpcError(
        viaEast.migrateVm({
          uuid: mover.uuid,
          migrationId,
          targetEndpoint: prepared.endpoint,
          cookie: prepared.cookie,
          transport: 'tunnel',
          mode: 'precopy',
          allowPostcopy: true,
          targetCaPem: prepared.caPem,
          targetNodeId: prepared.nodeId,
        }),
      );
      expect([error.code, error.details]).toEqual([
        status.FAILED_PRECONDITION,
        expect.stringMatching(/post-copy cannot move a VM with disks to another cluster/),
      ]);
    } finally {
      await viaWest.migration.cancelMigration({ migrationId, vmUuid: mover.uuid });
    }
    expect((await viaEast.vm.getVm({ uuid: mover.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
      lockedBy: '',
    });
  });

  it("fails the switchover when B's mirror cannot get the final snapshot: nothing was demoted, the guest resumes at A", async () => {
    const before = await tickBeyond(east, 0);
    // Pre-flight passes with B replaying; then B's rbd-mirror stops, so the final snapshot cannot arrive.
    const progress = await migrate(
      { client: viaEast, cluster: east },
      { client: viaWest, cluster: west },
      mover,
      () => pair.mirrorB.stop(),
    );
    try {
      const last = progress[progress.length - 1];
      expect(last, last.message).toMatchObject({ phase: 'failed' });
      expect(last.message).toMatch(
        new RegExp(
          `did not receive the final mirror snapshot within ${HANDOVER_TIMEOUT_SECONDS} s.*the VM keeps running on node node-1`,
        ),
      );
      // The wait was visible while it lasted.
      expect(
        progress.some(
          (p) =>
            p.phase === 'switchover' &&
            /waiting for 1 of 1 disk mirrors to hold the final mirror snapshot: rbd\/mover-disk0/.test(
              p.message,
            ),
        ),
      ).toBe(true);
      expect((await viaEast.vm.getVm({ uuid: mover.uuid })).runtime).toMatchObject({
        nodeId: 'node-1',
        state: 'running',
        lockedBy: '',
      });
      expect(await tickBeyond(east, before)).toBeGreaterThan(before);
      const [atA, atB] = await Promise.all([
        viaEast.storage.getMirrorStatus(ref),
        viaWest.storage.getMirrorStatus(ref),
      ]);
      expect([atA.primary, atB.primary]).toEqual([true, false]);
      expect((await rpcError(viaWest.vm.getVm({ uuid: mover.uuid }))).code).toBe(status.NOT_FOUND);
    } finally {
      await pair.mirrorB.start();
    }
    await synced(viaEast, viaWest);
  }, 240_000);

  it('live-migrates the running guest from A to B with its disk: it ticks on at B, B is primary with the content A held', async () => {
    const before = await tickBeyond(east, 0);
    const progress = await migrate(
      { client: viaEast, cluster: east },
      { client: viaWest, cluster: west },
    );
    const last = progress[progress.length - 1];
    expect(last, last.message).toMatchObject({ phase: 'completed' });
    expect(last.message).toMatch(
      /^the VM runs on node node-1 of the other cluster; paused about \d+ ms: QEMU's downtime \d+ ms, then final mirror snapshot \d+ ms, mirrors synced \d+ ms, disks demoted \d+ ms, promoted and resumed at the target \d+ ms$/,
    );
    expect((await viaWest.vm.getVm({ uuid: mover.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
    });
    expect((await rpcError(viaEast.vm.getVm({ uuid: mover.uuid }))).code).toBe(status.NOT_FOUND);
    expect(await tickBeyond(west, before)).toBeGreaterThan(before);

    const [atA, atB] = await Promise.all([
      viaEast.storage.getMirrorStatus(ref),
      viaWest.storage.getMirrorStatus(ref),
    ]);
    expect(atB).toMatchObject({ primary: true, splitBrain: false });
    expect(atA).toMatchObject({ primary: false, globalId: atB.globalId });
    // The guest never wrote its disk: B holds exactly what A held at the switchover.
    expect(await b.imageSha256(POOL, IMAGE)).toBe(content);
    // B's QEMU opened the image of B's cluster as the west agent's cephx user, and holds it there.
    const pid = Number(
      readFileSync(join(west.agents[0].stateDir, 'run', mover.uuid, 'pid'), 'utf8'),
    );
    expect(
      readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        .split('\0')
        .find((arg) => arg.startsWith('file=rbd:')),
    ).toContain(`conf=${b.confPath}`);
    expect(await vmLockers(b)).toEqual([mover.uuid]);
    expect(await vmLockers(a)).toEqual([]);
  }, 240_000);

  it('the same switchover without a disk to hand over (the baseline of the storage step)', async () => {
    const progress = await migrate(
      { client: viaEast, cluster: east },
      { client: viaWest, cluster: west },
      light,
    );
    const last = progress[progress.length - 1];
    expect(last, last.message).toMatchObject({ phase: 'completed' });
    expect(last.message).toMatch(
      /^the VM runs on node node-1 of the other cluster; paused about \d+ ms: QEMU's downtime \d+ ms, then resumed at the target \d+ ms$/,
    );
    expect(await tickBeyond(west, 0, light)).toBeGreaterThan(0);
  }, 240_000);

  it('live-migrates it back from B to A the same way, the disk following it', async () => {
    await synced(viaWest, viaEast);
    const before = await tickBeyond(west, 0);
    const progress = await migrate(
      { client: viaWest, cluster: west },
      { client: viaEast, cluster: east },
    );
    const last = progress[progress.length - 1];
    expect(last, last.message).toMatchObject({ phase: 'completed' });
    expect((await viaEast.vm.getVm({ uuid: mover.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
    });
    expect(await tickBeyond(east, before)).toBeGreaterThan(before);
    const [atA, atB] = await Promise.all([
      viaEast.storage.getMirrorStatus(ref),
      viaWest.storage.getMirrorStatus(ref),
    ]);
    expect([atA.primary, atB.primary]).toEqual([true, false]);
    expect(await a.imageSha256(POOL, IMAGE)).toBe(content);
    const measured = figures
      .filter((f) => f.phase === 'completed')
      .map((f) => ({ vm: f.vm, from: f.from, ...switchoverParts(String(f.message)) }));
    console.log(`switchover figures (ms): ${JSON.stringify(measured)}`);
  }, 240_000);
});
