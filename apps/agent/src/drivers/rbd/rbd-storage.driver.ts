import { labelSchema } from '@debvisor/common';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { DriverHealth } from '../hypervisor.driver';
import {
  CEPH_HEALTH,
  type CephHealth,
  type FenceOptions,
  type FenceResult,
  type ImageRef,
  type ImageSnapshot,
  type RbdImage,
  type StorageDriver,
} from '../storage.driver';
import type { RbdCliRepository } from './rbd-cli.repository';

/** The mirroring half of the driver (rbd-mirroring.ts); the driver validates names before delegating. */
export type RbdMirroringPort = Pick<
  StorageDriver,
  | 'enableMirroring'
  | 'disableMirroring'
  | 'mirrorStatus'
  | 'createMirrorSnapshot'
  | 'promote'
  | 'demote'
  | 'resync'
  | 'createPeerBootstrap'
  | 'importPeerBootstrap'
  | 'poolMirrorStatus'
>;

/**
 * The lock a VM holds on its disk images: a named exclusive cls lock "debvisor" on the image's
 * header object (`rados lock get rbd_header.<id> debvisor --lock-cookie <vm uuid>`). Not `rbd lock
 * add`: that takes librbd's own "rbd_lock", the lock of the exclusive-lock feature, so every writer
 * of the image (QEMU, `rbd snap create`) would get EROFS while it is held, and `rbd group snap
 * create` would spin forever. A named lock beside it leaves the image fully usable, goes away with
 * the image, and is as atomic.
 */
const VM_LOCK = 'debvisor';
/** How long one `ceph health` answer serves other callers. */
const HEALTH_SHARED_MS = 2_000;

/** Groups the driver creates for multi-image snapshots: `debvisor.<first image>` in the first image's pool. */
const GROUP_PREFIX = 'debvisor.';

const holderSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/,
    'a lock holder is 1-128 letters, digits, dots, colons, underscores and hyphens',
  );

const infoSchema = z.object({
  name: z.string(),
  id: z.string(),
  size: z.number(),
  create_timestamp: z.string().optional(),
  /** "<pool>/<group>" when the image belongs to a group. */
  group: z.string().optional(),
});
type ImageInfo = z.infer<typeof infoSchema>;

const snapshotsSchema = z.array(
  z.object({
    id: z.number(),
    name: z.string(),
    size: z.number(),
    timestamp: z.string().default(''),
    namespace: z
      .object({
        type: z.string(),
        pool: z.string().optional(),
        group: z.string().optional(),
        'group snap': z.string().optional(),
      })
      .default({ type: 'user' }),
  }),
);

const lockInfoSchema = z.object({
  lockers: z
    .array(z.object({ name: z.string(), cookie: z.string(), addr: z.string().optional() }))
    .default([]),
});

const rbdLocksSchema = z.array(
  z.object({ id: z.string(), locker: z.string(), address: z.string().optional() }),
);
const watchersSchema = z.object({
  watchers: z.array(z.object({ address: z.string() })).default([]),
});
const groupImagesSchema = z.array(z.object({ image: z.string(), pool: z.string() }));
const healthSchema = z.object({ status: z.string() });

/** One snapshot of one image, as the driver resolves a snapshot name: a plain snapshot or its group's. */
interface ResolvedSnapshot {
  ref: ImageRef;
  /** "<pool>/<group>" for a group snapshot, undefined for a plain one. */
  group?: string;
  snapshot: ImageSnapshot;
}

/**
 * Ceph RBD through the rbd, ceph and rados tools (RbdCliRepository runs them). A snapshot of one
 * image is a plain `rbd snap`; of several images an RBD group snapshot (one group per set of
 * images, see ensureGroup). Every pool, image, snapshot and holder name is validated here again
 * before any command runs.
 */
export class RbdStorageDriver implements StorageDriver {
  readonly name = 'rbd';

  private healthRead: { at: number; value: Promise<CephHealth> } | undefined;

  constructor(
    private readonly cli: RbdCliRepository,
    private readonly mirroring: RbdMirroringPort = UNIMPLEMENTED_MIRRORING,
  ) {}

  // Images.

  async listImages(pool: string): Promise<RbdImage[]> {
    checkPool(pool);
    const names = z
      .array(z.string())
      .parse(
        (await this.cli
          .json('rbd', ['ls', '--', pool])
          .catch(notFound(`the pool ${pool} does not exist`))) ?? [],
      );
    const images: RbdImage[] = [];
    // rbd info per image, a few at a time: `rbd ls --long` has no creation time either.
    for (let i = 0; i < names.length; i += 4) {
      const batch = await Promise.all(
        names.slice(i, i + 4).map((image) => this.getImage({ pool, image }).catch(() => undefined)),
      );
      for (const image of batch) if (image) images.push(image);
    }
    return images.sort((a, b) => a.image.localeCompare(b.image));
  }

  async getImage(ref: ImageRef): Promise<RbdImage | undefined> {
    checkRef(ref);
    const info = await this.info(ref).catch((error: unknown) => {
      if (error instanceof AgentError && error.code === ErrorCode.NotFound) return undefined;
      throw error;
    });
    return info && toImage(ref, info);
  }

  async createImage(pool: string, image: string, sizeBytes: number): Promise<RbdImage> {
    checkRef({ pool, image });
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0)
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'an image size is a positive whole number of bytes',
      );
    await this.cli
      .run('rbd', ['create', '--size', `${sizeBytes}B`, '--', `${pool}/${image}`])
      .catch((error: unknown) => {
        if (error instanceof AgentError && error.code === ErrorCode.AlreadyExists) {
          throw new AgentError(
            ErrorCode.AlreadyExists,
            `the RBD image ${pool}/${image} exists already`,
          );
        }
        if (error instanceof AgentError && error.code === ErrorCode.NotFound)
          throw new AgentError(ErrorCode.NotFound, `the pool ${pool} does not exist`);
        throw error;
      });
    return toImage({ pool, image }, await this.info({ pool, image }));
  }

  async health(): Promise<DriverHealth> {
    try {
      const status = await this.cephHealth();
      return {
        name: 'rbd',
        status: status === 'HEALTH_ERR' ? 'degraded' : 'ok',
        message: `Ceph cluster ${this.cli.clusterName}: ${status}`,
      };
    } catch (error) {
      return {
        name: 'rbd',
        status: 'failed',
        message:
          error instanceof AgentError
            ? error.message
            : `Ceph cluster ${this.cli.clusterName} unreachable`,
      };
    }
  }

  /**
   * `ceph health` is the heaviest Ceph call (the ceph tool is a Python program): callers asking
   * within HEALTH_SHARED_MS of each other (the heartbeat, the health monitor) share one answer.
   */
  cephHealth(): Promise<CephHealth> {
    const now = Date.now();
    if (this.healthRead && now - this.healthRead.at < HEALTH_SHARED_MS)
      return this.healthRead.value;
    const value = this.readCephHealth();
    const read = { at: now, value };
    this.healthRead = read;
    value.catch(() => {
      if (this.healthRead === read) this.healthRead = undefined;
    });
    return value;
  }

  private async readCephHealth(): Promise<CephHealth> {
    const { status } = healthSchema.parse(await this.cli.json('ceph', ['health']));
    if (!(CEPH_HEALTH as readonly string[]).includes(status))
      throw new AgentError(ErrorCode.Internal, `ceph health answered an unknown status`);
    return status as CephHealth;
  }

  // Snapshots.

  async createSnapshot(images: ImageRef[], snapshot: string): Promise<ImageSnapshot[]> {
    checkImageSet(images);
    checkSnapshot(snapshot);
    if (images.length === 1) {
      // One command: rbd itself answers a missing image (NOT_FOUND) and a taken name (ALREADY_EXISTS).
      await this.cli.run('rbd', [
        'snap',
        'create',
        '--no-progress',
        '--',
        `${spec(images[0]!)}@${snapshot}`,
      ]);
    } else {
      const infos = await Promise.all(images.map((ref) => this.info(ref)));
      await Promise.all(
        images.map(async (ref) => {
          if ((await this.snapshotsOf(ref)).some((s) => s.snapshot.snapshot === snapshot)) {
            throw new AgentError(
              ErrorCode.AlreadyExists,
              `the image ${spec(ref)} has a snapshot ${snapshot} already`,
            );
          }
        }),
      );
      const group = await this.ensureGroup(images, infos);
      await this.cli
        .run('rbd', ['group', 'snap', 'create', '--', `${group}@${snapshot}`])
        .catch(async (error: unknown) => {
          // A failed group snapshot can stay behind "incomplete"; remove it so that the name is free.
          await this.cli
            .run('rbd', ['group', 'snap', 'rm', '--', `${group}@${snapshot}`])
            .catch(() => undefined);
          throw error;
        });
    }
    return Promise.all(
      images.map(async (ref) => {
        const found = (await this.snapshotsOf(ref)).find((s) => s.snapshot.snapshot === snapshot);
        if (!found)
          throw new AgentError(
            ErrorCode.Internal,
            `the snapshot ${snapshot} of ${spec(ref)} is missing after it was taken`,
          );
        return found.snapshot;
      }),
    );
  }

  async listSnapshots(ref: ImageRef): Promise<ImageSnapshot[]> {
    checkRef(ref);
    return (await this.snapshotsOf(ref)).map((s) => s.snapshot);
  }

  async removeSnapshot(images: ImageRef[], snapshot: string): Promise<void> {
    checkImageSet(images);
    checkSnapshot(snapshot);
    const resolved = await this.resolveSnapshot(images, snapshot);
    for (const group of new Set(resolved.flatMap((r) => (r.group ? [r.group] : [])))) {
      await this.cli.run('rbd', ['group', 'snap', 'rm', '--', `${group}@${snapshot}`]);
    }
    for (const r of resolved.filter((r) => !r.group)) {
      await this.cli.run('rbd', [
        'snap',
        'rm',
        '--no-progress',
        '--',
        `${spec(r.ref)}@${snapshot}`,
      ]);
    }
  }

  async rollbackSnapshot(images: ImageRef[], snapshot: string): Promise<void> {
    checkImageSet(images);
    checkSnapshot(snapshot);
    const resolved = await this.resolveSnapshot(images, snapshot);
    const groups = new Set(resolved.flatMap((r) => (r.group ? [r.group] : [])));
    for (const group of groups) {
      // A group rollback rolls back every image of the group: all of them must be named.
      const members = await this.groupImages(group);
      const missing = members.filter(
        (m) => !images.some((ref) => ref.pool === m.pool && ref.image === m.image),
      );
      if (missing.length) {
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `the snapshot ${snapshot} is a group snapshot that also covers ${missing.map(spec).join(', ')}: name every image of the group to roll it back`,
        );
      }
    }
    for (const ref of images) await this.checkNotInUse(ref);
    for (const group of groups)
      await this.cli.run('rbd', [
        'group',
        'snap',
        'rollback',
        '--no-progress',
        '--',
        `${group}@${snapshot}`,
      ]);
    for (const r of resolved.filter((r) => !r.group)) {
      await this.cli.run('rbd', [
        'snap',
        'rollback',
        '--no-progress',
        '--',
        `${spec(r.ref)}@${snapshot}`,
      ]);
    }
  }

  // Locks.

  async lockImage(ref: ImageRef, holder: string): Promise<void> {
    checkRef(ref);
    checkHolder(holder);
    const { header } = await this.header(ref);
    try {
      await this.cli.run('rados', [
        '-p',
        ref.pool,
        'lock',
        'get',
        '--lock-type',
        'exclusive',
        '--lock-cookie',
        holder,
        '--lock-tag',
        VM_LOCK,
        '--lock-description',
        `debvisor VM ${holder}`,
        '--',
        header,
        VM_LOCK,
      ]);
    } catch (error) {
      if (!(error instanceof AgentError) || error.code !== ErrorCode.FailedPrecondition)
        throw error;
      const current = await this.vmLockers(ref.pool, header);
      if (current.some((locker) => locker.cookie === holder)) return; // held already by the same VM
      const other = current[0]?.cookie;
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the image ${spec(ref)} is held by VM ${other ?? 'another client'}`,
        { cause: error },
      );
    }
  }

  async unlockImage(ref: ImageRef, holder: string): Promise<void> {
    checkRef(ref);
    checkHolder(holder);
    const { header } = await this.header(ref);
    const lockers = await this.vmLockers(ref.pool, header);
    const mine = lockers.find((locker) => locker.cookie === holder);
    if (!mine) {
      if (lockers.length)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `the image ${spec(ref)} is held by VM ${lockers[0]!.cookie}, not by ${holder}`,
        );
      return;
    }
    await this.breakVmLock(ref.pool, header, mine);
  }

  async imageHolder(ref: ImageRef): Promise<string | undefined> {
    checkRef(ref);
    const { header } = await this.header(ref);
    return (await this.vmLockers(ref.pool, header))[0]?.cookie;
  }

  /**
   * Fencing: every client that has the image open (its watchers) is blocklisted on the OSDs, then
   * the VM lock and librbd's own locks are broken. A blocklisted client can no longer write; an
   * OSD blocklist entry expires after an hour (Ceph's default) unless `blocklistSeconds` says
   * otherwise. The watchers include the peer site's rbd-mirror when the image is a mirrored
   * primary: its connection is blocklisted too. Reads that do not depend on each other run at once
   * (each is a process and a monitor session), and the watchers and the VM lock are read again at
   * the end (`after`).
   */
  async fenceImage(ref: ImageRef, options: FenceOptions = {}): Promise<FenceResult> {
    checkRef(ref);
    const expiry =
      options.blocklistSeconds === undefined ? [] : [String(Math.floor(options.blocklistSeconds))];
    const { header } = await this.header(ref);
    const [watchers, lockers, rbdLocks] = await Promise.all([
      this.watchers(ref),
      this.vmLockers(ref.pool, header),
      this.cli
        .json('rbd', ['lock', 'ls', '--', spec(ref)])
        .then((raw) => rbdLocksSchema.parse(raw ?? [])),
    ]);
    // Blocklisted before any lock is broken: the old holder cannot take a lock back.
    await Promise.all(
      watchers.map((address) =>
        this.cli.run('ceph', ['osd', 'blocklist', 'add', '--', address, ...expiry]),
      ),
    );
    await Promise.all([
      ...lockers.map((locker) => this.breakVmLock(ref.pool, header, locker)),
      ...rbdLocks.map((lock) =>
        this.cli
          .run('rbd', ['lock', 'rm', '--', spec(ref), lock.id, lock.locker])
          .catch(ignoreNotFound),
      ),
    ]);
    const [open, holders] = await Promise.all([
      this.watchers(ref),
      this.vmLockers(ref.pool, header),
    ]);
    return {
      blocklisted: watchers,
      locksBroken: [...lockers.map((l) => l.name), ...rbdLocks.map((l) => l.locker)],
      after: { watchers: open, holder: holders[0]?.cookie },
    };
  }

  /** The clients that have the image open (`rbd status`), each once. */
  private async watchers(ref: ImageRef): Promise<string[]> {
    const { watchers } = watchersSchema.parse(
      await this.cli.json('rbd', ['status', '--', spec(ref)]),
    );
    const addresses = [...new Set(watchers.map((w) => w.address))];
    for (const address of addresses)
      if (!/^[0-9A-Za-z.:[\]]+\/[0-9]+$/.test(address))
        throw new AgentError(
          ErrorCode.Internal,
          'rbd status answered a watcher address that is not one',
        );
    return addresses;
  }

  // Mirroring: rbd-mirroring.ts.

  async enableMirroring(ref: ImageRef, scheduleInterval: string) {
    checkRef(ref);
    return this.mirroring.enableMirroring(ref, scheduleInterval);
  }

  async disableMirroring(ref: ImageRef, force: boolean) {
    checkRef(ref);
    return this.mirroring.disableMirroring(ref, force);
  }

  async mirrorStatus(ref: ImageRef) {
    checkRef(ref);
    return this.mirroring.mirrorStatus(ref);
  }

  async createMirrorSnapshot(ref: ImageRef) {
    checkRef(ref);
    return this.mirroring.createMirrorSnapshot(ref);
  }

  async promote(ref: ImageRef, force: boolean) {
    checkRef(ref);
    return this.mirroring.promote(ref, force);
  }

  async demote(ref: ImageRef) {
    checkRef(ref);
    return this.mirroring.demote(ref);
  }

  async resync(ref: ImageRef) {
    checkRef(ref);
    return this.mirroring.resync(ref);
  }

  async createPeerBootstrap(pool: string, siteName: string) {
    checkPool(pool);
    checkLabel('site name', siteName);
    return this.mirroring.createPeerBootstrap(pool, siteName);
  }

  async importPeerBootstrap(
    pool: string,
    siteName: string,
    token: string,
    direction: 'rx-tx' | 'rx-only',
  ) {
    checkPool(pool);
    checkLabel('site name', siteName);
    return this.mirroring.importPeerBootstrap(pool, siteName, token, direction);
  }

  async poolMirrorStatus(pool: string) {
    checkPool(pool);
    return this.mirroring.poolMirrorStatus(pool);
  }

  // Internals.

  private async info(ref: ImageRef): Promise<ImageInfo> {
    const raw = await this.cli
      .json('rbd', ['info', '--', spec(ref)])
      .catch(notFound(`the RBD image ${spec(ref)} does not exist`));
    return infoSchema.parse(raw);
  }

  private async header(ref: ImageRef): Promise<{ info: ImageInfo; header: string }> {
    const info = await this.info(ref);
    if (!/^[0-9a-f]{1,64}$/.test(info.id))
      throw new AgentError(
        ErrorCode.Internal,
        `rbd info answered an unexpected image id for ${spec(ref)}`,
      );
    return { info, header: `rbd_header.${info.id}` };
  }

  private async vmLockers(pool: string, header: string) {
    const raw = await this.cli.json('rados', ['-p', pool, 'lock', 'info', '--', header, VM_LOCK]);
    return lockInfoSchema.parse(raw ?? {}).lockers;
  }

  private async breakVmLock(
    pool: string,
    header: string,
    locker: { name: string; cookie: string },
  ): Promise<void> {
    if (!/^client\.[0-9]+$/.test(locker.name))
      throw new AgentError(
        ErrorCode.Internal,
        'rados lock info answered a locker that is not a client',
      );
    await this.cli
      .run('rados', [
        '-p',
        pool,
        'lock',
        'break',
        '--lock-cookie',
        locker.cookie,
        '--',
        header,
        VM_LOCK,
        locker.name,
      ])
      .catch(ignoreNotFound);
  }

  /** Snapshots users see: plain ones by name, group ones by their group snapshot's name; mirror snapshots are left out. */
  private async snapshotsOf(ref: ImageRef): Promise<{ group?: string; snapshot: ImageSnapshot }[]> {
    const raw = await this.cli
      .json('rbd', ['snap', 'ls', '--all', '--', spec(ref)])
      .catch(notFound(`the RBD image ${spec(ref)} does not exist`));
    return snapshotsSchema
      .parse(raw ?? [])
      .sort((a, b) => a.id - b.id)
      .flatMap((s) => {
        const base = {
          pool: ref.pool,
          image: ref.image,
          createdAt: parseCtime(s.timestamp),
          sizeBytes: s.size,
        };
        if (s.namespace.type === 'user') return [{ snapshot: { ...base, snapshot: s.name } }];
        const groupSnap = s.namespace['group snap'];
        if (s.namespace.type === 'group' && groupSnap && s.namespace.pool && s.namespace.group) {
          return [
            {
              group: `${s.namespace.pool}/${s.namespace.group}`,
              snapshot: { ...base, snapshot: groupSnap },
            },
          ];
        }
        return [];
      });
  }

  /** The snapshot of every image named; NOT_FOUND before anything changes when one lacks it. */
  private async resolveSnapshot(images: ImageRef[], snapshot: string): Promise<ResolvedSnapshot[]> {
    return Promise.all(
      images.map(async (ref) => {
        const found = (await this.snapshotsOf(ref)).find((s) => s.snapshot.snapshot === snapshot);
        if (!found)
          throw new AgentError(
            ErrorCode.NotFound,
            `the image ${spec(ref)} has no snapshot ${snapshot}`,
          );
        return { ref, ...found };
      }),
    );
  }

  /**
   * The RBD group that holds exactly these images, for a group snapshot. An image belongs to at most
   * one group, so a VM's disks share one: the group one of them is in already (images not yet in a
   * group join it, e.g. a disk added to the VM), else a new `debvisor.<first image>` in the first
   * image's pool. Refused when the images are spread over several groups or their group holds an
   * image not named (a group snapshot would take it too).
   */
  private async ensureGroup(images: ImageRef[], infos: ImageInfo[]): Promise<string> {
    const groups = [...new Set(infos.flatMap((info) => (info.group ? [info.group] : [])))];
    if (groups.length > 1) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the images belong to different RBD groups (${groups.join(', ')}); one snapshot needs one group`,
      );
    }
    let group = groups[0];
    if (group) {
      const extra = (await this.groupImages(group)).filter(
        (m) => !images.some((ref) => ref.pool === m.pool && ref.image === m.image),
      );
      if (extra.length) {
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `the RBD group ${group} also holds ${extra.map(spec).join(', ')}, which the snapshot would take too`,
        );
      }
    } else {
      const first = images[0]!;
      group = `${first.pool}/${GROUP_PREFIX}${first.image}`;
      await this.cli.run('rbd', ['group', 'create', '--', group]).catch(async (error: unknown) => {
        if (!(error instanceof AgentError) || error.code !== ErrorCode.AlreadyExists) throw error;
        // A group of that name holds other images (or none): take a name of our own.
        group = `${first.pool}/${GROUP_PREFIX}${first.image}.${randomBytes(3).toString('hex')}`;
        await this.cli.run('rbd', ['group', 'create', '--', group]);
      });
    }
    for (const [i, ref] of images.entries()) {
      if (!infos[i]!.group)
        await this.cli.run('rbd', ['group', 'image', 'add', '--', group, spec(ref)]);
    }
    return group;
  }

  private async groupImages(group: string): Promise<ImageRef[]> {
    const raw = await this.cli.json('rbd', ['group', 'image', 'list', '--', group]);
    return groupImagesSchema.parse(raw ?? []).map((m) => ({ pool: m.pool, image: m.image }));
  }

  /**
   * Rollback needs the image idle: no VM holds it and no client writes to it (holds librbd's
   * exclusive lock). Clients that only have it open are not counted: the peer site's rbd-mirror
   * keeps every mirrored primary open (a watcher) while it replays.
   */
  private async checkNotInUse(ref: ImageRef): Promise<void> {
    const { header } = await this.header(ref);
    const holder = (await this.vmLockers(ref.pool, header))[0]?.cookie;
    if (holder)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the image ${spec(ref)} is held by VM ${holder}; stop the VM before rolling back`,
      );
    const writers = rbdLocksSchema.parse(
      (await this.cli.json('rbd', ['lock', 'ls', '--', spec(ref)])) ?? [],
    );
    if (writers.length) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the image ${spec(ref)} is being written by ${writers[0]!.locker}; stop that client before rolling back`,
      );
    }
  }
}

const UNIMPLEMENTED_MIRRORING: RbdMirroringPort = new Proxy({} as RbdMirroringPort, {
  get: (_target, method) => async () => {
    throw new AgentError(
      ErrorCode.Unimplemented,
      `the rbd storage driver has no mirroring configured (${String(method)})`,
    );
  },
});

function spec(ref: ImageRef): string {
  return `${ref.pool}/${ref.image}`;
}

function checkLabel(what: string, value: string): void {
  // labelSchema: letters, digits, dots, underscores, inner hyphens; so no leading '-', no '/', no '@'.
  if (typeof value !== 'string' || !labelSchema.safeParse(value).success) {
    throw new AgentError(
      ErrorCode.InvalidArgument,
      `${what} ${JSON.stringify(String(value).slice(0, 80))} is not valid: 1-64 letters, digits, dots, underscores and inner hyphens`,
    );
  }
}

function checkPool(pool: string): void {
  checkLabel('pool', pool);
}

function checkRef(ref: ImageRef): void {
  checkPool(ref?.pool);
  checkLabel('image', ref?.image);
}

function checkSnapshot(snapshot: string): void {
  checkLabel('snapshot', snapshot);
}

function checkHolder(holder: string): void {
  if (!holderSchema.safeParse(holder).success)
    throw new AgentError(
      ErrorCode.InvalidArgument,
      'a lock holder is 1-128 letters, digits, dots, colons, underscores and hyphens',
    );
}

function checkImageSet(images: ImageRef[]): void {
  if (!Array.isArray(images) || images.length === 0)
    throw new AgentError(ErrorCode.InvalidArgument, 'name at least one image');
  for (const ref of images) checkRef(ref);
  if (new Set(images.map(spec)).size !== images.length)
    throw new AgentError(ErrorCode.InvalidArgument, 'an image is named twice');
}

function toImage(ref: ImageRef, info: ImageInfo): RbdImage {
  return {
    pool: ref.pool,
    image: ref.image,
    sizeBytes: info.size,
    createdAt: parseCtime(info.create_timestamp ?? ''),
  };
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** rbd's ctime strings ("Mon Dec  7 12:59:54 2026", UTC as the tools run with TZ=UTC) as ISO 8601; '' when absent. */
export function parseCtime(text: string): string {
  const match = /^[A-Z][a-z]{2} ([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/.exec(
    text.trim(),
  );
  const month = match ? MONTHS.indexOf(match[1]!) : -1;
  if (!match || month < 0) return '';
  const [, , day, hours, minutes, seconds, year] = match;
  return new Date(
    Date.UTC(Number(year), month, Number(day), Number(hours), Number(minutes), Number(seconds)),
  ).toISOString();
}

function notFound(message: string) {
  return (error: unknown): never => {
    if (error instanceof AgentError && error.code === ErrorCode.NotFound)
      throw new AgentError(ErrorCode.NotFound, message, { cause: error });
    throw error;
  };
}

function ignoreNotFound(error: unknown): void {
  if (!(error instanceof AgentError) || error.code !== ErrorCode.NotFound) throw error;
}
