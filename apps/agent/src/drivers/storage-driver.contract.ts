import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { CEPH_HEALTH, type ImageRef, type StorageDriver } from './storage.driver';

/**
 * What a storage driver under the contract gives the suite. Built in the caller's beforeAll; the
 * suite reads it when each case runs.
 */
export interface StorageDriverFixture {
  driver: StorageDriver;
  /** A pool that exists; every case uses image names of its own in it. */
  pool: string;
  /**
   * Image content, where the driver has some (rbd: rbd import-diff / rbd export; sim: its
   * simulated content). Without it the data checks are left out and the rest still runs.
   */
  content?: {
    /** Changes the image's content (to something it did not hold before). */
    write(ref: ImageRef): Promise<void>;
    /** A digest of the image's content. */
    checksum(ref: ImageRef): Promise<string>;
  };
  /** How many commands / storage requests the driver has made so far: hostile names must make none. */
  commandsRun?(): number;
}

const MiB = 1024 * 1024;

/** Names no driver may pass on: options, paths, snapshot separators, control characters, empty. */
export const HOSTILE_NAMES = [
  '-rf',
  '--help',
  'a/b',
  '../etc',
  'img@snap',
  '',
  ' x',
  'x\n',
  'tab\there',
  '-',
  'a'.repeat(65),
  'é',
];

/**
 * Registers the storage-driver contract cases (vitest `it`s) in the caller's describe block:
 * images, single- and multi-image snapshots with rollback, VM locks, fencing, hostile names and
 * not-found errors. Run by the rbd driver's spec on a real Ceph cluster and by the sim driver's.
 */
export function storageDriverContract(fixture: () => StorageDriverFixture): void {
  const unique = (what: string) => `${what}-${randomBytes(4).toString('hex')}`;
  const newImage = async (what = 'disk', sizeBytes = 4 * MiB): Promise<ImageRef> => {
    const { driver, pool } = fixture();
    const image = unique(what);
    await driver.createImage(pool, image, sizeBytes);
    return { pool, image };
  };
  const code = (code: ErrorCode) => expect.objectContaining({ code });

  // Images.

  it('creates an image and shows it in getImage and listImages', async () => {
    const { driver, pool } = fixture();
    const image = unique('create');
    const created = await driver.createImage(pool, image, 8 * MiB);
    expect(created).toMatchObject({ pool, image, sizeBytes: 8 * MiB });
    expect(Date.parse(created.createdAt)).toBeGreaterThan(Date.now() - 10 * 60_000);
    expect(await driver.getImage({ pool, image })).toEqual(created);
    const listed = await driver.listImages(pool);
    expect(listed.find((i) => i.image === image)).toEqual(created);
  });

  it('refuses to create an image that exists with ALREADY_EXISTS', async () => {
    const ref = await newImage();
    await expect(fixture().driver.createImage(ref.pool, ref.image, MiB)).rejects.toEqual(
      code(ErrorCode.AlreadyExists),
    );
    expect((await fixture().driver.getImage(ref))?.sizeBytes).toBe(4 * MiB);
  });

  it('refuses an image size that is not a positive whole number of bytes', async () => {
    const { driver, pool } = fixture();
    for (const size of [0, -1, 1.5, Number.NaN]) {
      await expect(driver.createImage(pool, unique('size'), size)).rejects.toEqual(
        code(ErrorCode.InvalidArgument),
      );
    }
  });

  it('answers undefined for an image that does not exist and NOT_FOUND where one is needed', async () => {
    const { driver, pool } = fixture();
    const missing = { pool, image: unique('missing') };
    expect(await driver.getImage(missing)).toBeUndefined();
    await expect(driver.listSnapshots(missing)).rejects.toEqual(code(ErrorCode.NotFound));
    await expect(driver.createSnapshot([missing], 'snap')).rejects.toEqual(
      code(ErrorCode.NotFound),
    );
    await expect(driver.lockImage(missing, 'vm-missing')).rejects.toEqual(code(ErrorCode.NotFound));
    await expect(driver.imageHolder(missing)).rejects.toEqual(code(ErrorCode.NotFound));
  });

  it('reports its health and the storage cluster health', async () => {
    const { driver } = fixture();
    expect((await driver.health()).status).toBe('ok');
    expect(CEPH_HEALTH).toContain(await driver.cephHealth());
  });

  // Snapshots of one image.

  it('takes, lists and removes a snapshot of one image', async () => {
    const { driver } = fixture();
    const ref = await newImage();
    const [taken] = await driver.createSnapshot([ref], 'before-upgrade');
    expect(taken).toMatchObject({ ...ref, snapshot: 'before-upgrade', sizeBytes: 4 * MiB });
    expect(Date.parse(taken!.createdAt)).toBeGreaterThan(Date.now() - 10 * 60_000);
    expect(await driver.listSnapshots(ref)).toEqual([taken]);
    await expect(driver.createSnapshot([ref], 'before-upgrade')).rejects.toEqual(
      code(ErrorCode.AlreadyExists),
    );
    await driver.removeSnapshot([ref], 'before-upgrade');
    expect(await driver.listSnapshots(ref)).toEqual([]);
    await expect(driver.removeSnapshot([ref], 'before-upgrade')).rejects.toEqual(
      code(ErrorCode.NotFound),
    );
    await expect(driver.rollbackSnapshot([ref], 'before-upgrade')).rejects.toEqual(
      code(ErrorCode.NotFound),
    );
  });

  it('lists snapshots oldest first', async () => {
    const { driver } = fixture();
    const ref = await newImage();
    for (const name of ['one', 'two', 'three']) await driver.createSnapshot([ref], name);
    expect((await driver.listSnapshots(ref)).map((s) => s.snapshot)).toEqual([
      'one',
      'two',
      'three',
    ]);
  });

  it('rolls one image back to its snapshot', async () => {
    const { driver, content } = fixture();
    const ref = await newImage();
    if (content) await content.write(ref);
    const before = content && (await content.checksum(ref));
    await driver.createSnapshot([ref], 'good');
    if (content) {
      await content.write(ref);
      expect(await content.checksum(ref)).not.toBe(before);
    }
    await driver.rollbackSnapshot([ref], 'good');
    if (content) expect(await content.checksum(ref)).toBe(before);
    expect((await driver.listSnapshots(ref)).map((s) => s.snapshot)).toEqual(['good']);
  });

  // Snapshots of several images (a VM's disks) at one point.

  it('takes one snapshot of several images and rolls them back together', async () => {
    const { driver, content } = fixture();
    const disks = [await newImage('vm-disk0'), await newImage('vm-disk1')];
    for (const ref of disks) if (content) await content.write(ref);
    const before = content && (await Promise.all(disks.map((ref) => content.checksum(ref))));
    const taken = await driver.createSnapshot(disks, 'nightly');
    expect(taken.map((s) => [s.pool, s.image, s.snapshot])).toEqual(
      disks.map((ref) => [ref.pool, ref.image, 'nightly']),
    );
    for (const ref of disks)
      expect((await driver.listSnapshots(ref)).map((s) => s.snapshot)).toEqual(['nightly']);
    if (content) {
      for (const ref of disks) await content.write(ref);
      expect(await Promise.all(disks.map((ref) => content.checksum(ref)))).not.toEqual(before);
    }
    await driver.rollbackSnapshot(disks, 'nightly');
    if (content)
      expect(await Promise.all(disks.map((ref) => content.checksum(ref)))).toEqual(before);
    // A second snapshot of the same disks works as well (the same group, for rbd).
    await driver.createSnapshot(disks, 'nightly-2');
    await driver.removeSnapshot(disks, 'nightly');
    for (const ref of disks)
      expect((await driver.listSnapshots(ref)).map((s) => s.snapshot)).toEqual(['nightly-2']);
  });

  it('changes nothing when one of several images lacks the snapshot', async () => {
    const { driver, content } = fixture();
    const [a, b] = [await newImage('lack-a'), await newImage('lack-b')];
    await driver.createSnapshot([a], 'only-a');
    if (content) await content.write(a);
    const before = content && (await content.checksum(a));
    await expect(driver.rollbackSnapshot([a, b], 'only-a')).rejects.toEqual(
      code(ErrorCode.NotFound),
    );
    await expect(driver.removeSnapshot([a, b], 'only-a')).rejects.toEqual(code(ErrorCode.NotFound));
    if (content) expect(await content.checksum(a)).toBe(before);
    expect((await driver.listSnapshots(a)).map((s) => s.snapshot)).toEqual(['only-a']);
  });

  it('refuses a snapshot of no images or of one image named twice', async () => {
    const { driver } = fixture();
    const ref = await newImage();
    await expect(driver.createSnapshot([], 'empty')).rejects.toEqual(
      code(ErrorCode.InvalidArgument),
    );
    await expect(driver.createSnapshot([ref, { ...ref }], 'twice')).rejects.toEqual(
      code(ErrorCode.InvalidArgument),
    );
    expect(await driver.listSnapshots(ref)).toEqual([]);
  });

  it('refuses to roll back an image that a VM holds, naming the VM', async () => {
    const { driver, content } = fixture();
    const ref = await newImage();
    await driver.createSnapshot([ref], 'held');
    if (content) await content.write(ref);
    const before = content && (await content.checksum(ref));
    await driver.lockImage(ref, 'vm-holding-1');
    const refusal = await driver.rollbackSnapshot([ref], 'held').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refusal).toBeInstanceOf(AgentError);
    expect(refusal).toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringContaining('vm-holding-1'),
    });
    if (content) expect(await content.checksum(ref)).toBe(before);
    await driver.unlockImage(ref, 'vm-holding-1');
    await driver.rollbackSnapshot([ref], 'held');
  });

  // VM locks.

  it('lets one VM hold an image, refuses another naming the holder, and lets go', async () => {
    const { driver } = fixture();
    const ref = await newImage();
    expect(await driver.imageHolder(ref)).toBeUndefined();
    await driver.lockImage(ref, 'vm-first');
    await driver.lockImage(ref, 'vm-first'); // the same holder again: fine
    expect(await driver.imageHolder(ref)).toBe('vm-first');
    await expect(driver.lockImage(ref, 'vm-second')).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringContaining('vm-first'),
    });
    // Someone else's unlock does not free it (refused or ignored).
    await driver.unlockImage(ref, 'vm-second').catch(() => undefined);
    expect(await driver.imageHolder(ref)).toBe('vm-first');
    await driver.unlockImage(ref, 'vm-first');
    expect(await driver.imageHolder(ref)).toBeUndefined();
    await driver.unlockImage(ref, 'vm-first'); // unlocking a free image: fine
    await driver.lockImage(ref, 'vm-second');
    expect(await driver.imageHolder(ref)).toBe('vm-second');
  });

  it('keeps the locks of different images apart', async () => {
    const { driver } = fixture();
    const [a, b] = [await newImage('lock-a'), await newImage('lock-b')];
    await driver.lockImage(a, 'vm-a');
    await driver.lockImage(b, 'vm-b');
    expect([await driver.imageHolder(a), await driver.imageHolder(b)]).toEqual(['vm-a', 'vm-b']);
  });

  it('fences an image: its lock is broken and another VM can take it', async () => {
    const { driver } = fixture();
    const ref = await newImage();
    await driver.lockImage(ref, 'vm-dead-site');
    const fenced = await driver.fenceImage(ref);
    expect(fenced.locksBroken.length).toBeGreaterThan(0);
    expect(await driver.imageHolder(ref)).toBeUndefined();
    await driver.lockImage(ref, 'vm-survivor');
    expect(await driver.imageHolder(ref)).toBe('vm-survivor');
  });

  // Hostile names: refused with INVALID_ARGUMENT before the driver runs anything.

  it('refuses hostile pool, image, snapshot and holder names before any command runs', async () => {
    const { driver, pool, commandsRun } = fixture();
    const good = await newImage();
    const before = commandsRun?.();
    const calls: [string, () => Promise<unknown>][] = [];
    for (const bad of HOSTILE_NAMES) {
      const badImage = { pool, image: bad };
      const badPool = { pool: bad, image: good.image };
      calls.push(
        [`listImages(${JSON.stringify(bad)})`, () => driver.listImages(bad)],
        [`getImage image ${JSON.stringify(bad)}`, () => driver.getImage(badImage)],
        [`getImage pool ${JSON.stringify(bad)}`, () => driver.getImage(badPool)],
        [`createImage ${JSON.stringify(bad)}`, () => driver.createImage(pool, bad, MiB)],
        [`createImage pool ${JSON.stringify(bad)}`, () => driver.createImage(bad, 'fine', MiB)],
        [
          `createSnapshot image ${JSON.stringify(bad)}`,
          () => driver.createSnapshot([good, badImage], 'fine'),
        ],
        [`createSnapshot name ${JSON.stringify(bad)}`, () => driver.createSnapshot([good], bad)],
        [`listSnapshots ${JSON.stringify(bad)}`, () => driver.listSnapshots(badImage)],
        [`removeSnapshot ${JSON.stringify(bad)}`, () => driver.removeSnapshot([good], bad)],
        [
          `rollbackSnapshot ${JSON.stringify(bad)}`,
          () => driver.rollbackSnapshot([badImage], 'fine'),
        ],
        [`lockImage ${JSON.stringify(bad)}`, () => driver.lockImage(badImage, 'vm-1')],
        [`imageHolder ${JSON.stringify(bad)}`, () => driver.imageHolder(badPool)],
        [`fenceImage ${JSON.stringify(bad)}`, () => driver.fenceImage(badImage)],
        [`enableMirroring ${JSON.stringify(bad)}`, () => driver.enableMirroring(badImage, '1h')],
        [`mirrorStatus ${JSON.stringify(bad)}`, () => driver.mirrorStatus(badPool)],
        [`promote ${JSON.stringify(bad)}`, () => driver.promote(badImage, true)],
        [`demote ${JSON.stringify(bad)}`, () => driver.demote(badImage)],
        [`poolMirrorStatus ${JSON.stringify(bad)}`, () => driver.poolMirrorStatus(bad)],
      );
    }
    for (const holder of ['-x', '', 'vm 1', 'vm\n1', '--lock-cookie']) {
      calls.push([
        `lockImage holder ${JSON.stringify(holder)}`,
        () => driver.lockImage(good, holder),
      ]);
    }
    for (const [what, call] of calls) {
      const outcome = await Promise.resolve()
        .then(call)
        .then(
          () => 'accepted',
          (error: unknown) => (error instanceof AgentError ? error.code : String(error)),
        );
      expect(outcome, what).toBe(ErrorCode.InvalidArgument);
    }
    if (commandsRun) expect(commandsRun()).toBe(before);
    expect(await driver.imageHolder(good)).toBeUndefined();
    expect(await driver.listSnapshots(good)).toEqual([]);
  });
}
