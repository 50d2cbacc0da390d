import {
  buildTinyGuest,
  startCephCluster,
  startCluster,
  tinyGuestAppend,
  writeQemuVm,
  type AgentClient,
  type CephCluster,
  type TestCluster,
  type TestVmSpec,
} from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rpcError } from './helpers';

const MiB = 1024 ** 2;

/** The tiny guest (kernel + busybox initramfs, no guest agent) with an RBD disk. */
function guest(name: string, image: string): TestVmSpec {
  return {
    uuid: randomUUID(),
    name,
    vcpus: 1,
    memoryBytes: 128 * MiB,
    disks: [{ pool: 'rbd', image, sizeBytes: 64 * MiB, bus: 'virtio' }],
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
}

const app = guest('rbd-app', 'rbd-app-disk0');
const thief = guest('rbd-thief', 'rbd-app-disk0');

describe('VM snapshots on real QEMU (TCG) and a real Ceph cluster', () => {
  let ceph: CephCluster;
  let cluster: TestCluster;
  let client: AgentClient;

  beforeAll(async () => {
    const [tiny, started] = await Promise.all([buildTinyGuest(), startCephCluster()]);
    ceph = started;
    await ceph.exec('rbd', ['create', '--size', '64M', '--', 'rbd/rbd-app-disk0']);
    cluster = await startCluster({
      clusterId: 'rbd-qemu',
      nodes: 1,
      vmsPerNode: 0,
      agentConfig: () => ({
        hypervisor: { driver: 'qemu' },
        qemu: { accel: 'tcg', machine: 'pc', bootDir: tiny.dir },
        storage: { driver: 'rbd' },
        rbd: {
          cluster: ceph.name,
          conf: ceph.confPath,
          keyring: ceph.clientKeyringPath,
          clientId: ceph.clientId,
        },
      }),
      prepareNode: (_nodeId, stateDir) => {
        writeQemuVm(stateDir, app);
        writeQemuVm(stateDir, thief);
      },
    });
    client = cluster.connect(await cluster.createApiKey(['vm:*', 'storage:*']));
  }, 180_000);
  afterAll(async () => {
    client?.close();
    await cluster?.stop();
    await ceph?.stop();
  });

  it("runs the guest from the RBD image through librbd, as the agent's cephx user with its conf and keyring", async () => {
    await expect(
      client.vm.startVm({ uuid: app.uuid }, { deadlineMs: 60_000 }),
    ).resolves.toMatchObject({ runtime: { state: 'running' } });
    const cmdline = readFileSync(
      `/proc/${Number(readFileSync(join(cluster.agents[0].stateDir, 'run', app.uuid, 'pid'), 'utf8'))}/cmdline`,
      'utf8',
    ).split('\0');
    expect(cmdline.find((arg) => arg.startsWith('file=rbd:'))).toBe(
      `file=rbd:rbd/rbd-app-disk0:id=${ceph.clientId}:conf=${ceph.confPath}:keyring=${ceph.clientKeyringPath},format=raw,if=none,id=disk0,cache=writeback,discard=unmap`,
    );
    const watchers = await ceph.json<{ watchers: unknown[] }>('rbd', [
      'status',
      'rbd/rbd-app-disk0',
    ]);
    expect(watchers.watchers).toHaveLength(1);
  });

  it('refuses to start a second VM on the running VM’s image, naming the holder', async () => {
    const error = await rpcError(client.vm.startVm({ uuid: thief.uuid }, { deadlineMs: 60_000 }));
    expect([error.code, error.details]).toEqual([
      status.FAILED_PRECONDITION,
      expect.stringContaining(`image rbd/rbd-app-disk0 is in use by VM ${app.uuid} (rbd-app)`),
    ]);
  });

  it('states crash consistency for a guest without a guest agent, and restores the snapshot after a write', async () => {
    const taken = await client.storage.snapshotVm(
      { vmUuid: app.uuid, snapshot: 'before', freeze: true },
      { deadlineMs: 60_000 },
    );
    expect(taken).toMatchObject({
      consistency: 'crash',
      consistencyReason: 'no QEMU guest agent answered within 10000 ms',
      group: false,
    });
    const before = await ceph.imageSha256('rbd', 'rbd-app-disk0', 'before');

    const error = await rpcError(
      client.storage.rollbackVm({ vmUuid: app.uuid, snapshot: 'before' }),
    );
    expect([error.code, error.details]).toEqual([
      status.FAILED_PRECONDITION,
      expect.stringMatching(/is running; stop it first/),
    ]);

    await client.vm.stopVm({ uuid: app.uuid });
    await ceph.writeImage('rbd', 'rbd-app-disk0', 4 * MiB, Buffer.alloc(MiB, 0x5a));
    expect(await ceph.imageSha256('rbd', 'rbd-app-disk0')).not.toBe(before);
    await expect(
      client.storage.rollbackVm({ vmUuid: app.uuid, snapshot: 'before' }, { deadlineMs: 60_000 }),
    ).resolves.toMatchObject({ snapshot: 'before' });
    expect(await ceph.imageSha256('rbd', 'rbd-app-disk0')).toBe(before);
    await expect(client.storage.listVmSnapshots({ uuid: app.uuid })).resolves.toMatchObject({
      snapshots: [{ snapshot: 'before', consistency: 'crash' }],
    });
  });

  it('frees the image when the VM stopped, so that another VM may use it', async () => {
    await expect(
      client.vm.startVm({ uuid: thief.uuid }, { deadlineMs: 60_000 }),
    ).resolves.toMatchObject({ runtime: { state: 'running' } });
    await client.vm.stopVm({ uuid: thief.uuid });
  });
});
