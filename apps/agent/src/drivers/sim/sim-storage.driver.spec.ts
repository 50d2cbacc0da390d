import { startEtcd, type EtcdInstance } from '@debvisor/testing';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import { ETCD_KEYS } from '../../shared/etcd-keys';
import { SimStorageDriver } from './sim-storage.driver';

const GiB = 1024 ** 3;

/** The sim driver's own behaviour on a real etcd: content versions, snapshots, locks, fencing. */
describe('SimStorageDriver (real etcd)', () => {
  let etcdServer: EtcdInstance;
  let etcd: Etcd3;
  let node1: SimStorageDriver;
  let node2: SimStorageDriver;
  let n = 0;
  const image = () => `img-${++n}`;

  beforeAll(async () => {
    etcdServer = await startEtcd();
    etcd = new Etcd3(etcdServer.clientOptions());
    const options = {
      etcd,
      clock: { now: () => new Date(), sleep: async () => undefined },
      clusterId: 'east',
      etcdEndpoints: [etcdServer.endpoint],
      peerEtcd: { tls: etcdServer.tls },
      peerTimeoutMs: 1_000,
      staleAfterMs: 5_000,
    };
    node1 = new SimStorageDriver({ ...options, nodeId: 'node-1' });
    node2 = new SimStorageDriver({ ...options, nodeId: 'node-2' });
  });
  afterAll(async () => {
    node1?.close();
    node2?.close();
    etcd?.close();
    await etcdServer?.stop();
  });

  async function refusal(call: Promise<unknown>): Promise<AgentError> {
    const error = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(error instanceof AgentError))
      throw new Error(`expected an AgentError, got ${String(error)}`);
    return error;
  }

  it('creates images that every node of the cluster sees, and refuses a second of the same name', async () => {
    const name = image();
    const created = await node1.createImage('rbd', name, 10 * GiB);
    expect(await node2.getImage({ pool: 'rbd', image: name })).toEqual(created);
    expect((await node2.listImages('rbd')).map((i) => i.image)).toContain(name);
    expect(await node2.getImage({ pool: 'rbd', image: 'absent' })).toBeUndefined();
    expect((await refusal(node2.createImage('rbd', name, GiB))).code).toBe(ErrorCode.AlreadyExists);
  });

  it('refuses hostile pool, image and snapshot names before touching etcd', async () => {
    for (const call of [
      () => node1.createImage('-rf', 'x', 1),
      () => node1.createImage('rbd', '../../nodes/x', 1),
      () => node1.listImages('rbd/'),
      () => node1.createSnapshot([{ pool: 'rbd', image: 'x' }], '--all'),
      () => node1.lockImage({ pool: 'rbd', image: 'a b' }, 'vm'),
    ]) {
      expect((await refusal(call())).code).toBe(ErrorCode.InvalidArgument);
    }
    expect(await etcd.get(ETCD_KEYS.simRbdImage('rbd', '../../nodes/x')).string()).toBeNull();
  });

  it('reads an image record written before content versions existed, with a stable checksum', async () => {
    await etcd.put(ETCD_KEYS.simRbdImage('rbd', 'legacy')).value(
      JSON.stringify({
        pool: 'rbd',
        image: 'legacy',
        sizeBytes: GiB,
        createdAt: '2026-01-01T00:00:00.000Z',
      }),
    );
    const first = await node1.imageContent({ pool: 'rbd', image: 'legacy' });
    expect(first).toEqual({ version: 0, checksum: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(await node2.imageContent({ pool: 'rbd', image: 'legacy' })).toEqual(first);
    expect(await node1.imageHolder({ pool: 'rbd', image: 'legacy' })).toBeUndefined();
  });

  it('restores the content a snapshot saw: snapshot, write, rollback', async () => {
    const ref = { pool: 'rbd', image: image() };
    await node1.createImage(ref.pool, ref.image, GiB);
    await node1.writeImage(ref, 'vm-a');
    const before = await node1.imageContent(ref);
    const [snap] = await node1.createSnapshot([ref], 'before-upgrade');
    expect(snap).toMatchObject({ ...ref, snapshot: 'before-upgrade', sizeBytes: GiB });
    const written = await node1.writeImage(ref, 'vm-a');
    expect(written.checksum).not.toBe(before.checksum);
    expect(written.version).toBe(before.version + 1);
    await node2.rollbackSnapshot([ref], 'before-upgrade');
    expect(await node1.imageContent(ref)).toEqual(before);
    expect((await node1.listSnapshots(ref)).map((s) => s.snapshot)).toEqual(['before-upgrade']);
    await node1.removeSnapshot([ref], 'before-upgrade');
    expect(await node1.listSnapshots(ref)).toEqual([]);
    expect((await refusal(node1.rollbackSnapshot([ref], 'before-upgrade'))).code).toBe(
      ErrorCode.NotFound,
    );
  });

  it('snapshots several images at one point, or none of them when one cannot take it', async () => {
    const disks = [
      { pool: 'rbd', image: image() },
      { pool: 'rbd', image: image() },
    ];
    for (const disk of disks) await node1.createImage(disk.pool, disk.image, GiB);
    const taken = await node1.createSnapshot(disks, 'group-1');
    expect(taken).toHaveLength(2);
    expect(new Set(taken.map((s) => s.createdAt)).size).toBe(1);

    // The second image already has group-2: the group snapshot fails as a whole.
    await node1.createSnapshot([disks[1]], 'group-2');
    expect((await refusal(node1.createSnapshot(disks, 'group-2'))).code).toBe(
      ErrorCode.AlreadyExists,
    );
    expect((await node1.listSnapshots(disks[0])).map((s) => s.snapshot)).toEqual(['group-1']);

    // A group rollback restores both images.
    const saved = await Promise.all(disks.map((d) => node1.imageContent(d)));
    for (const disk of disks) await node1.writeImage(disk, 'vm-g');
    await node1.rollbackSnapshot(disks, 'group-1');
    expect(await Promise.all(disks.map((d) => node1.imageContent(d)))).toEqual(saved);
  });

  it('serializes concurrent writers on one image: no write is lost', async () => {
    const ref = { pool: 'rbd', image: image() };
    await node1.createImage(ref.pool, ref.image, GiB);
    const start = (await node1.imageContent(ref)).version;
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? node1 : node2).writeImage(ref, 'vm-w')),
    );
    expect((await node1.imageContent(ref)).version).toBe(start + 10);
  });

  it('gives an image to one VM at a time, naming the holder to the others', async () => {
    const ref = { pool: 'rbd', image: image() };
    await node1.createImage(ref.pool, ref.image, GiB);
    const results = await Promise.allSettled([
      node1.lockImage(ref, 'vm-1'),
      node2.lockImage(ref, 'vm-2'),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const holder = (await node1.imageHolder(ref))!;
    const loser = holder === 'vm-1' ? 'vm-2' : 'vm-1';
    const refused = await refusal((holder === 'vm-1' ? node2 : node1).lockImage(ref, loser));
    expect(refused.code).toBe(ErrorCode.FailedPrecondition);
    expect(refused.message).toContain(holder);

    await node2.lockImage(ref, holder); // the same VM again (e.g. moved to node-2): idempotent
    await node1.unlockImage(ref, loser); // not the holder: nothing to release
    expect(await node1.imageHolder(ref)).toBe(holder);
    expect((await refusal(node1.writeImage(ref, loser))).message).toContain(holder);
    expect((await refusal(node1.rollbackSnapshot([ref], 'x'))).code).toBe(ErrorCode.NotFound);
    await node1.createSnapshot([ref], 'x');
    expect((await refusal(node1.rollbackSnapshot([ref], 'x'))).message).toMatch(
      new RegExp(`in use by ${holder}`),
    );
    await node1.unlockImage(ref, holder);
    expect(await node1.imageHolder(ref)).toBeUndefined();
  });

  it('fences: the holder’s client is blocklisted and its lock broken; the fenced node can neither write nor lock', async () => {
    const ref = { pool: 'rbd', image: image() };
    await node1.createImage(ref.pool, ref.image, GiB);
    await node2.lockImage(ref, 'vm-f');
    expect(await node1.fenceImage(ref)).toEqual({
      blocklisted: [node2.clientOf('vm-f')],
      locksBroken: ['vm-f'],
    });
    expect(await node1.imageHolder(ref)).toBeUndefined();
    expect((await refusal(node2.writeImage(ref, 'vm-f'))).message).toMatch(
      /blocklisted \(fenced\)/,
    );
    expect((await refusal(node2.lockImage(ref, 'vm-f'))).code).toBe(ErrorCode.FailedPrecondition);
    // node-2's other VMs are not fenced; the survivor takes over.
    await node2.writeImage(
      { pool: 'rbd', image: (await node2.createImage('rbd', image(), GiB)).image },
      'vm-other',
    );
    await node1.lockImage(ref, 'vm-f');
    await node1.writeImage(ref, 'vm-f');
    expect(
      await node1.fenceImage({ pool: 'rbd', image: image() }).catch((e: AgentError) => e.code),
    ).toBe(ErrorCode.NotFound);
  });

  it('answers the pool status of a pool without mirroring, and refuses mirroring calls on an image without it', async () => {
    expect(await node1.poolMirrorStatus('unpaired')).toMatchObject({
      pool: 'unpaired',
      mode: 'disabled',
      peers: [],
    });
    const ref = { pool: 'rbd', image: image() };
    await node1.createImage(ref.pool, ref.image, GiB);
    expect(await node1.mirrorStatus(ref)).toMatchObject({
      enabled: false,
      state: '',
      globalId: '',
    });
    for (const call of [
      () => node1.promote(ref, false),
      () => node1.demote(ref),
      () => node1.resync(ref),
      () => node1.createMirrorSnapshot(ref),
    ]) {
      expect((await refusal(call())).message).toMatch(/mirroring is not enabled/);
    }
    expect((await refusal(node1.enableMirroring(ref, '30s'))).code).toBe(ErrorCode.InvalidArgument);
  });
});
