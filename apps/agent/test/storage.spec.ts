import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster, type AgentClient, type TestCluster } from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

/** Fixed VMs: app-01 (two disks, a guest agent) on node-1; plain-01 (no guest agent) on node-1; thief-01 on node-2, defined with app-01's first disk. */
const APP = '3f1d2c4b-5a69-4e7f-8a1b-2c3d4e5f6a70';
const PLAIN = '4a2e3d5c-6b7a-4f80-9b2c-3d4e5f6a7b81';
const THIEF = '5b3f4e6d-7c8b-4a91-8c3d-4e5f6a7b8c92';
const GiB = 2 ** 30;

function simVm(uuid: string, name: string, disks: string[], labels: Record<string, string> = {}) {
  return {
    spec: {
      uuid,
      name,
      vcpus: 1,
      memoryBytes: GiB,
      disks: disks.map((image) => ({ pool: 'rbd', image, sizeBytes: GiB, bus: 'virtio' })),
      nics: [],
      cpuModel: 'host-model',
      hugepages: false,
      tenant: '',
      labels,
    },
    state: 'stopped',
    stateChangedAt: '2026-01-01T00:00:00.000Z',
    bootedAt: null,
    transition: null,
  };
}

/** The sim hypervisor's state file (<stateDir>/sim/vms.json), written before the agent starts. */
function writeSimVms(stateDir: string, vms: ReturnType<typeof simVm>[]): void {
  mkdirSync(join(stateDir, 'sim'), { recursive: true });
  writeFileSync(join(stateDir, 'sim', 'vms.json'), JSON.stringify({ version: 1, vms }));
}

describe('VM snapshots and disk exclusivity (real etcd, two real agents, sim drivers)', () => {
  let cluster: TestCluster;
  let viaNode: AgentClient[];

  beforeAll(async () => {
    cluster = await startCluster({
      clusterId: 'storage',
      nodes: 2,
      vmsPerNode: 0,
      timeScale: 0.01,
      prepareNode: (nodeId, stateDir) => {
        if (nodeId === 'node-1') {
          writeSimVms(stateDir, [
            simVm(APP, 'app-01', ['app-01-disk0', 'app-01-disk1'], { 'sim-guest-agent': 'yes' }),
            simVm(PLAIN, 'plain-01', ['plain-01-disk0']),
          ]);
        } else writeSimVms(stateDir, [simVm(THIEF, 'thief-01', ['app-01-disk0'])]);
      },
    });
    for (const image of ['app-01-disk0', 'app-01-disk1', 'plain-01-disk0'])
      await cluster.createSimImage({ pool: 'rbd', image, sizeBytes: GiB });
    const key = await cluster.createApiKey(['vm:*', 'storage:*', 'migration:*'], {
      principal: 'manager:storage',
    });
    viaNode = cluster.agents.map((agent) => cluster.connect(key, agent));
  });
  afterAll(async () => {
    for (const client of viaNode ?? []) client.close();
    await cluster?.stop();
  });

  it('snapshots a stopped VM with all its disks through another node, crash-consistent with the reason', async () => {
    const taken = await viaNode[1].storage.snapshotVm({
      vmUuid: APP,
      snapshot: 'cold',
      freeze: true,
    });
    expect(taken).toMatchObject({
      vmUuid: APP,
      snapshot: 'cold',
      consistency: 'crash',
      consistencyReason: 'the VM was stopped: no guest to freeze',
      group: true,
    });
    expect(taken.disks.map((d) => `${d.pool}/${d.image}@${d.snapshot}`)).toEqual([
      'rbd/app-01-disk0@cold',
      'rbd/app-01-disk1@cold',
    ]);
    await cluster.agents[0].process.waitFor(
      /"rpc":"StorageService.SnapshotVm".*"forwardedBy":"node-2".*"msg":"rpc ok"/,
      5_000,
    );
  });

  it('freezes a running guest that has a guest agent (application-consistent), and says why not otherwise', async () => {
    await viaNode[0].vm.startVm({ uuid: APP });
    await viaNode[0].vm.startVm({ uuid: PLAIN });
    await expect(
      viaNode[0].storage.snapshotVm({ vmUuid: APP, snapshot: 'warm', freeze: true }),
    ).resolves.toMatchObject({ consistency: 'application', consistencyReason: '' });
    await expect(
      viaNode[1].storage.snapshotVm({ vmUuid: APP, snapshot: 'unfrozen', freeze: false }),
    ).resolves.toMatchObject({
      consistency: 'crash',
      consistencyReason: 'freezing the guest filesystems was not asked for',
    });
    const plain = await viaNode[1].storage.snapshotVm({
      vmUuid: PLAIN,
      snapshot: 'warm',
      freeze: true,
    });
    expect(plain).toMatchObject({
      consistency: 'crash',
      consistencyReason: expect.stringMatching(/^no QEMU guest agent answered within \d+ ms$/),
      group: false,
    });
  });

  it("lists a VM's snapshots from any node with the consistency each was taken with", async () => {
    for (const client of viaNode) {
      const { snapshots } = await client.storage.listVmSnapshots({ uuid: APP });
      expect(snapshots.map((s) => [s.snapshot, s.consistency])).toEqual([
        ['cold', 'crash'],
        ['warm', 'application'],
        ['unfrozen', 'crash'],
      ]);
      expect(snapshots.every((s) => s.disks.length === 2 && s.group)).toBe(true);
    }
  });

  it('never starts a second VM on a disk a running VM holds, naming the holder', async () => {
    const error = await rpcError(viaNode[0].vm.startVm({ uuid: THIEF }));
    expect([error.code, error.details]).toEqual([
      status.FAILED_PRECONDITION,
      expect.stringContaining(`image rbd/app-01-disk0 is in use by VM ${APP} (app-01)`),
    ]);
    await expect(viaNode[1].vm.getVm({ uuid: THIEF })).resolves.toMatchObject({
      runtime: { state: 'stopped' },
    });
  });

  it('refuses to roll back a running VM, saying to stop it first', async () => {
    const error = await rpcError(viaNode[1].storage.rollbackVm({ vmUuid: APP, snapshot: 'cold' }));
    expect([error.code, error.details]).toEqual([
      status.FAILED_PRECONDITION,
      'VM app-01 is running; stop it first: only a stopped VM can be rolled back to a snapshot',
    ]);
  });

  it('rolls a stopped VM back through another node, and its disks are free for another VM once it stopped', async () => {
    await viaNode[1].vm.stopVm({ uuid: APP });
    await expect(
      viaNode[1].storage.rollbackVm({ vmUuid: APP, snapshot: 'cold' }),
    ).resolves.toMatchObject({ snapshot: 'cold', group: true });
    await expect(viaNode[0].vm.startVm({ uuid: THIEF })).resolves.toMatchObject({
      runtime: { state: 'running', nodeId: 'node-2' },
    });
    const error = await rpcError(viaNode[0].vm.startVm({ uuid: APP }));
    expect([error.code, error.details]).toEqual([
      status.FAILED_PRECONDITION,
      expect.stringContaining(`image rbd/app-01-disk0 is in use by VM ${THIEF} (thief-01)`),
    ]);
    await viaNode[0].vm.stopVm({ uuid: THIEF });
    await expect(viaNode[0].vm.startVm({ uuid: APP })).resolves.toMatchObject({
      runtime: { state: 'running' },
    });
    await viaNode[0].vm.stopVm({ uuid: APP });
  });

  it('deletes a VM snapshot from every disk, then answers NOT_FOUND for it', async () => {
    await expect(
      viaNode[1].storage.deleteVmSnapshot({ vmUuid: APP, snapshot: 'unfrozen' }),
    ).resolves.toEqual({ deleted: true });
    expect(
      (await viaNode[0].storage.listVmSnapshots({ uuid: APP })).snapshots.map((s) => s.snapshot),
    ).toEqual(['cold', 'warm']);
    expect(
      (
        await viaNode[0].storage.listSnapshots({ pool: 'rbd', image: 'app-01-disk1' })
      ).snapshots.map((s) => s.snapshot),
    ).toEqual(['cold', 'warm']);
    const error = await rpcError(
      viaNode[1].storage.deleteVmSnapshot({ vmUuid: APP, snapshot: 'unfrozen' }),
    );
    expect(error.code).toBe(status.NOT_FOUND);
  });

  it('refuses hostile or malformed names with INVALID_ARGUMENT before anything runs', async () => {
    for (const snapshot of ['-rf', '../etc', 'a b', 'x;rm', '', 'a'.repeat(65)]) {
      const error = await rpcError(
        viaNode[0].storage.snapshotVm({ vmUuid: APP, snapshot, freeze: true }),
      );
      expect([error.code, error.details]).toEqual([
        status.INVALID_ARGUMENT,
        expect.stringMatching(/^invalid request: snapshot: a snapshot name is/),
      ]);
    }
    for (const request of [
      { pool: '-p', image: 'app-01-disk0', snapshot: 's' },
      { pool: 'rbd', image: '--all', snapshot: 's' },
      { pool: 'rbd', image: 'app-01-disk0', snapshot: '@x' },
    ]) {
      expect((await rpcError(viaNode[0].storage.snapshotRbd(request))).code).toBe(
        status.INVALID_ARGUMENT,
      );
    }
    expect(
      (await rpcError(viaNode[0].storage.rollbackVm({ vmUuid: 'not-a-uuid', snapshot: 'cold' })))
        .code,
    ).toBe(status.INVALID_ARGUMENT);
    expect(
      (await viaNode[0].storage.listVmSnapshots({ uuid: APP })).snapshots.map((s) => s.snapshot),
    ).toEqual(['cold', 'warm']);
    expect(
      (
        await viaNode[0].storage.listSnapshots({ pool: 'rbd', image: 'app-01-disk0' })
      ).snapshots.map((s) => s.snapshot),
    ).toEqual(['cold', 'warm']);
  });

  it('enables mirroring of an image, pairs the pool and reports both, refusing what it cannot do before anything runs', async () => {
    await expect(
      viaNode[0].storage.enableMirroring({
        pool: 'rbd',
        image: 'app-01-disk1',
        mode: '',
        scheduleInterval: '5m',
      }),
    ).resolves.toMatchObject({
      enabled: true,
      primary: true,
      mode: 'snapshot',
      scheduleInterval: '5m',
    });
    await expect(
      viaNode[1].storage.getMirrorStatus({ pool: 'rbd', image: 'app-01-disk1' }),
    ).resolves.toMatchObject({ enabled: true, globalId: expect.stringMatching(/.+/) });
    const bootstrap = await viaNode[1].storage.createPeerBootstrap({ pool: 'rbd', siteName: '' });
    expect(bootstrap.siteName).toBe('storage');
    expect(bootstrap.token).toMatch(/^[A-Za-z0-9+/=]{40,}$/);
    await expect(
      viaNode[0].storage.getPoolMirrorStatus({ pool: '', siteName: '' }),
    ).resolves.toMatchObject({ pool: 'rbd', mode: 'image', siteName: 'storage' });

    const journal = await rpcError(
      viaNode[0].storage.enableMirroring({
        pool: 'rbd',
        image: 'app-01-disk0',
        mode: 'journal',
        scheduleInterval: '',
      }),
    );
    expect([journal.code, journal.details]).toEqual([
      status.INVALID_ARGUMENT,
      expect.stringContaining('only snapshot-based mirroring is supported'),
    ]);
    expect(
      (
        await rpcError(
          viaNode[0].storage.enableMirroring({
            pool: 'rbd',
            image: 'app-01-disk0',
            mode: '',
            scheduleInterval: '5 minutes',
          }),
        )
      ).code,
    ).toBe(status.INVALID_ARGUMENT);
    await expect(
      viaNode[0].storage.getMirrorStatus({ pool: 'rbd', image: 'app-01-disk0' }),
    ).resolves.toMatchObject({ enabled: false });
    // A malformed token is refused without being repeated (it would carry a Ceph key).
    const secret = `${bootstrap.token.slice(0, 20)}"secret-part"`;
    const refused = await rpcError(
      viaNode[0].storage.importPeerBootstrap({
        pool: 'rbd',
        siteName: 'west',
        token: secret,
        direction: '',
      }),
    );
    expect([refused.code, refused.details]).toEqual([
      status.INVALID_ARGUMENT,
      'invalid request: token: a bootstrap token is base64 text',
    ]);
  });

  it('snapshots and rolls back single images, refusing the rollback of an image a running VM holds', async () => {
    await expect(
      viaNode[1].storage.snapshotRbd({
        pool: '',
        image: 'plain-01-disk0',
        snapshot: 'image-level',
      }),
    ).resolves.toMatchObject({ pool: 'rbd', snapshot: 'image-level' });
    const error = await rpcError(
      viaNode[1].storage.rollbackRbd({
        pool: 'rbd',
        image: 'plain-01-disk0',
        snapshot: 'image-level',
      }),
    );
    expect([error.code, error.details]).toEqual([
      status.FAILED_PRECONDITION,
      `image rbd/plain-01-disk0 is in use by VM ${PLAIN}; stop the VM before rolling its disk back`,
    ]);
    await viaNode[0].vm.stopVm({ uuid: PLAIN });
    await expect(
      viaNode[1].storage.rollbackRbd({
        pool: 'rbd',
        image: 'plain-01-disk0',
        snapshot: 'image-level',
      }),
    ).resolves.toMatchObject({ snapshot: 'image-level' });
  });

  it('refuses to snapshot a VM, and to change its images, while the VM migrates, naming the migration', async () => {
    const vm = await viaNode[0].vm.startVm({ uuid: PLAIN });
    const source = await viaNode[0].migration.prepareMigration({
      vm: vm.spec!,
      role: 'source',
      online: true,
      checkOnly: true,
    });
    expect(source.ok, JSON.stringify(source.checks)).toBe(true);
    const migrationId = randomUUID();
    const prepared = await viaNode[0].migration.prepareMigration({
      vm: vm.spec!,
      role: 'target',
      targetNodeId: 'node-2',
      migrationId,
      transport: 'tunnel',
      online: true,
      sourceNodeId: 'node-1',
      sourceCaPem: '',
      sourceCpuModel: source.cpuModel,
      sourceCpuFlags: source.cpuFlags,
      sourceDisks: source.disks,
    });
    expect(prepared.ok, JSON.stringify(prepared.checks)).toBe(true);
    let refusals: Promise<[string, string]> | undefined;
    const progress = await viaNode[1].migrateVm(
      {
        uuid: PLAIN,
        migrationId,
        targetEndpoint: prepared.endpoint,
        targetDataEndpoint: prepared.dataEndpoint,
        cookie: prepared.cookie,
        transport: 'tunnel',
        mode: 'precopy',
        downtimeLimitMs: 300,
        // 1 GiB at 1 MB/s: minutes of modelled time, seconds at this time scale
        bandwidthLimitBytes: 1_000_000,
        completionTimeoutSecondsPerGib: 0,
        targetCaPem: '',
        targetNodeId: 'node-2',
        offline: false,
      },
      (p) => {
        if (p.phase !== 'precopy' || refusals) return;
        refusals = (async () => {
          const snapshot = await rpcError(
            viaNode[1].storage.snapshotVm({ vmUuid: PLAIN, snapshot: 'during', freeze: true }),
          );
          const demote = await rpcError(
            viaNode[1].storage.snapshotRbd({
              pool: 'rbd',
              image: 'plain-01-disk0',
              snapshot: 'during',
            }),
          );
          await viaNode[0].migration.cancelMigration({ migrationId, vmUuid: PLAIN });
          return [
            `${status[snapshot.code]}: ${snapshot.details}`,
            `${status[demote.code]}: ${demote.details}`,
          ];
        })();
      },
    );
    expect(await refusals).toEqual([
      'FAILED_PRECONDITION: VM plain-01 is busy: a migration operation is in progress; try again when it has finished',
      'FAILED_PRECONDITION: VM plain-01 (using image rbd/plain-01-disk0) is busy: a migration operation is in progress; try again when it has finished',
    ]);
    expect(progress[progress.length - 1]).toMatchObject({ phase: 'cancelled' });
    await eventually(
      async () =>
        (await viaNode[0].vm.getVm({ uuid: PLAIN })).runtime!.lockedBy === '' ? true : undefined,
      5_000,
    );
    expect(
      (
        await viaNode[0].storage.listSnapshots({ pool: 'rbd', image: 'plain-01-disk0' })
      ).snapshots.map((s) => s.snapshot),
    ).toEqual(['warm', 'image-level']);
    await viaNode[0].vm.stopVm({ uuid: PLAIN });
  });
});
