import { startCephCluster, type CephCluster } from '@debvisor/testing';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RbdCliRepository,
  type CephTool,
  type RbdCliOptions,
  type RunOptions,
} from '../src/drivers/rbd/rbd-cli.repository';
import { RbdStorageDriver } from '../src/drivers/rbd/rbd-storage.driver';
import {
  storageDriverContract,
  type StorageDriverFixture,
} from '../src/drivers/storage-driver.contract';
import { ErrorCode } from '../src/shared/agent-error';

const MiB = 1024 * 1024;

/** The repository, counting the commands it runs (hostile names must make none). */
class CountingCli extends RbdCliRepository {
  count = 0;
  override run(tool: CephTool, args: readonly string[], options?: RunOptions): Promise<string> {
    this.count++;
    return super.run(tool, args, options);
  }
}

function cliOptions(ceph: CephCluster, overrides: Partial<RbdCliOptions> = {}): RbdCliOptions {
  return {
    cluster: ceph.name,
    conf: ceph.confPath,
    keyring: ceph.clientKeyringPath,
    clientId: ceph.clientId,
    rbdBinary: 'rbd',
    cephBinary: 'ceph',
    radosBinary: 'rados',
    timeoutMs: 30_000,
    peerTimeoutMs: 10_000,
    ...overrides,
  };
}

describe('rbd storage driver on a real Ceph cluster', () => {
  let ceph: CephCluster;
  let cli: CountingCli;
  let driver: RbdStorageDriver;
  const pool = 'rbd';

  beforeAll(async () => {
    ceph = await startCephCluster();
    cli = new CountingCli(cliOptions(ceph));
    driver = new RbdStorageDriver(cli);
  }, 120_000);
  afterAll(() => ceph?.stop());

  describe('the storage driver contract', () => {
    storageDriverContract((): StorageDriverFixture => ({
      driver,
      pool,
      content: {
        write: (ref) => ceph.writeImage(ref.pool, ref.image, 0, randomBytes(64 * 1024)),
        checksum: (ref) => ceph.imageSha256(ref.pool, ref.image),
      },
      commandsRun: () => cli.count,
    }));
  });

  it('restores the exact bytes of an image on rollback', async () => {
    const original = randomBytes(4 * MiB);
    await ceph.importImage(pool, 'rollback-bytes', original);
    await driver.createSnapshot([{ pool, image: 'rollback-bytes' }], 'pristine');
    await ceph.writeImage(pool, 'rollback-bytes', MiB, randomBytes(2 * MiB));
    expect(await ceph.imageSha256(pool, 'rollback-bytes')).not.toBe(sha256(original));
    expect(await ceph.imageSha256(pool, 'rollback-bytes', 'pristine')).toBe(sha256(original));
    await driver.rollbackSnapshot([{ pool, image: 'rollback-bytes' }], 'pristine');
    expect(await ceph.imageSha256(pool, 'rollback-bytes')).toBe(sha256(original));
  });

  it('snapshots a two-disk VM as one RBD group snapshot', async () => {
    const disks = [
      { pool, image: 'gvm-disk0' },
      { pool, image: 'gvm-disk1' },
    ];
    const data = [randomBytes(2 * MiB), randomBytes(2 * MiB)];
    for (const [i, ref] of disks.entries()) await ceph.importImage(pool, ref.image, data[i]!);
    await driver.createSnapshot(disks, 'both');
    expect(await ceph.json('rbd', ['group', 'ls', pool])).toContain('debvisor.gvm-disk0');
    expect(await ceph.json('rbd', ['group', 'snap', 'ls', `${pool}/debvisor.gvm-disk0`])).toEqual([
      { snapshot: 'both', state: 'ok' },
    ]);
    for (const ref of disks) {
      const snaps = await ceph.json<{ namespace: { type: string; 'group snap'?: string } }[]>(
        'rbd',
        ['snap', 'ls', '--all', `${pool}/${ref.image}`],
      );
      expect(snaps.map((s) => [s.namespace.type, s.namespace['group snap']])).toEqual([
        ['group', 'both'],
      ]);
    }
    for (const ref of disks) await ceph.writeImage(pool, ref.image, 0, randomBytes(MiB));
    await driver.rollbackSnapshot(disks, 'both');
    for (const [i, ref] of disks.entries())
      expect(await ceph.imageSha256(pool, ref.image)).toBe(sha256(data[i]!));

    // Rolling back part of the group is refused: the group snapshot covers both disks.
    await expect(driver.rollbackSnapshot([disks[0]!], 'both')).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringContaining('gvm-disk1'),
    });
    // A disk added to the VM joins the group.
    await driver.createImage(pool, 'gvm-disk2', MiB);
    await driver.createSnapshot([...disks, { pool, image: 'gvm-disk2' }], 'three');
    const members = await ceph.json<{ image: string }[]>('rbd', [
      'group',
      'image',
      'list',
      `${pool}/debvisor.gvm-disk0`,
    ]);
    expect(members.map((m) => m.image).sort()).toEqual(['gvm-disk0', 'gvm-disk1', 'gvm-disk2']);
    // The same disks without the new one are refused (the group would take it too).
    await expect(driver.createSnapshot(disks, 'two-of-three')).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
    });
    await driver.removeSnapshot(disks, 'both');
    expect(await ceph.json('rbd', ['group', 'snap', 'ls', `${pool}/debvisor.gvm-disk0`])).toEqual([
      { snapshot: 'three', state: 'ok' },
    ]);
  });

  it("holds a VM lock that leaves the image writable and snapshottable (not librbd's exclusive lock)", async () => {
    const ref = { pool, image: 'locked-but-usable' };
    await driver.createImage(pool, ref.image, 4 * MiB);
    await driver.lockImage(ref, 'vm-running');
    // What QEMU does through librbd while the VM runs: write; what a scheduled snapshot does.
    await ceph.writeImage(pool, ref.image, 0, randomBytes(MiB));
    await ceph.exec('rbd', ['snap', 'create', '--no-progress', `${pool}/${ref.image}@by-hand`], {
      as: 'client',
    });
    await driver.createSnapshot([ref], 'by-driver');
    expect(await driver.imageHolder(ref)).toBe('vm-running');
    // The lock is a named lock on the image header (rados shows it), not one of librbd's (rbd lock ls).
    const { id } = await ceph.json<{ id: string }>('rbd', ['info', `${pool}/${ref.image}`]);
    const vmLock = await ceph.json<{ lockers: { cookie: string }[] }>('rados', [
      '-p',
      pool,
      'lock',
      'info',
      `rbd_header.${id}`,
      'debvisor',
    ]);
    expect(vmLock.lockers.map((l) => l.cookie)).toEqual(['vm-running']);
    expect(await ceph.json('rbd', ['lock', 'ls', `${pool}/${ref.image}`])).toEqual([]);
  });

  it("rolls back under a reader (as the peer's rbd-mirror is) but not under a writer", async () => {
    const ref = { pool, image: 'rollback-in-use' };
    await driver.createImage(pool, ref.image, 64 * MiB);
    await driver.createSnapshot([ref], 'base');
    const reader = spawn('rbd', [...ceph.cephArgs('client'), 'watch', `${pool}/${ref.image}`], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    try {
      await waitFor(
        'a watcher on the image',
        async () =>
          (await ceph.json<{ watchers: unknown[] }>('rbd', ['status', `${pool}/${ref.image}`]))
            .watchers[0],
      );
      await driver.rollbackSnapshot([ref], 'base');
    } finally {
      stopChild(reader);
    }
    // rbd bench writes until killed: it holds librbd's exclusive lock, as a running QEMU does.
    const writer = spawn(
      'rbd',
      [
        ...ceph.cephArgs('client'),
        'bench',
        '--io-type',
        'write',
        '--io-size',
        '4K',
        '--io-threads',
        '1',
        '--io-total',
        '100G',
        `${pool}/${ref.image}`,
      ],
      { stdio: ['pipe', 'ignore', 'ignore'] },
    );
    try {
      const locker = await waitFor(
        "the writer's exclusive lock",
        async () =>
          (await ceph.json<{ locker: string }[]>('rbd', ['lock', 'ls', `${pool}/${ref.image}`]))[0]
            ?.locker,
      );
      await expect(driver.rollbackSnapshot([ref], 'base')).rejects.toMatchObject({
        code: ErrorCode.FailedPrecondition,
        message: `the image ${pool}/${ref.image} is being written by ${locker}; stop that client before rolling back`,
      });
    } finally {
      stopChild(writer);
    }
  });

  it('fences an image: blocklists the client that has it open and breaks the VM lock', async () => {
    const ref = { pool, image: 'fence-me' };
    await driver.createImage(pool, ref.image, 4 * MiB);
    await driver.lockImage(ref, 'vm-old-site');
    // `rbd watch` keeps the image open (a watcher), as a running QEMU does, until its stdin closes.
    const watcher = spawn('rbd', [...ceph.cephArgs('client'), 'watch', `${pool}/${ref.image}`], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    try {
      const address = await waitFor('a watcher on the image', async () => {
        const status = await ceph.json<{ watchers: { address: string }[] }>('rbd', [
          'status',
          `${pool}/${ref.image}`,
        ]);
        return status.watchers[0]?.address;
      });
      const result = await driver.fenceImage(ref);
      expect(result.blocklisted).toEqual([address]);
      expect(result.locksBroken).toHaveLength(1);
      const blocklist = (await ceph.exec('ceph', ['osd', 'blocklist', 'ls'])).stdout.toString(
        'utf8',
      );
      expect(blocklist).toContain(address);
      expect(await driver.imageHolder(ref)).toBeUndefined();
    } finally {
      stopChild(watcher);
    }
  });

  it('answers a command against a cluster that does not respond within its timeout', async () => {
    // A "monitor" that accepts connections and never answers, as a hung peer site does.
    const blackHole = await listenBlackHole();
    try {
      const address = blackHole.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      const conf = join(ceph.dir, 'black-hole.conf');
      writeFileSync(
        conf,
        `[global]\nfsid = ${ceph.fsid}\nmon host = v2:127.0.0.1:${port}\nauth client required = cephx\n`,
      );
      const hung = new RbdStorageDriver(
        new RbdCliRepository(cliOptions(ceph, { conf, timeoutMs: 1_500 })),
      );
      const started = Date.now();
      await expect(hung.listImages(pool)).rejects.toMatchObject({
        code: ErrorCode.DeadlineExceeded,
        message: expect.stringContaining('did not answer rbd ls within 1.5 s'),
      });
      expect(Date.now() - started).toBeLessThan(4_000);
      expect((await hung.health()).status).toBe('failed');
    } finally {
      blackHole.close();
    }
  });

  it("never passes the tools' stderr (paths, keyrings) on in its errors", async () => {
    const error = await driver
      .listSnapshots({ pool, image: 'no-such-image' })
      .catch((e: unknown) => e as Error);
    expect(error).toMatchObject({
      code: ErrorCode.NotFound,
      message: `the RBD image ${pool}/no-such-image does not exist`,
    });
    const wrongKey = new RbdStorageDriver(
      new RbdCliRepository(cliOptions(ceph, { keyring: ceph.adminKeyringPath, timeoutMs: 10_000 })),
    );
    const denied = await wrongKey.listImages(pool).then(
      () => new Error('accepted'),
      (e: unknown) => e as Error,
    );
    expect(denied).toMatchObject({
      code: ErrorCode.Unavailable,
      message: `rbd ls: cannot connect to the Ceph cluster ${ceph.name}`,
    });
    expect(denied.message).not.toContain(ceph.dir);
  });

  it('reports HEALTH_OK and then, with the cluster stopped, fails within the command timeout', async () => {
    expect(await driver.cephHealth()).toBe('HEALTH_OK');
    expect(await driver.health()).toEqual({
      name: 'rbd',
      status: 'ok',
      message: `Ceph cluster ${ceph.name}: HEALTH_OK`,
    });
    await ceph.stopDaemons();
    const short = new RbdStorageDriver(
      new RbdCliRepository(cliOptions(ceph, { timeoutMs: 2_000 })),
    );
    const started = Date.now();
    await expect(short.getImage({ pool, image: 'rollback-bytes' })).rejects.toMatchObject({
      code: ErrorCode.DeadlineExceeded,
    });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await short.health()).status).toBe('failed');
  }, 60_000);
});

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not appear within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function stopChild(child: ChildProcess): void {
  child.stdin?.end();
  child.kill('SIGKILL');
}

/** A TCP server that accepts connections and never answers; close() also drops its connections. */
function listenBlackHole(): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  const close = server.close.bind(server);
  server.close = (callback) => {
    sockets.forEach((socket) => socket.destroy());
    return close(callback);
  };
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}
