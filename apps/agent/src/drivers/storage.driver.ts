import type { DriverHealth } from './hypervisor.driver';

/** The Ceph cluster's own health, as `ceph health` reports it. */
export const CEPH_HEALTH = ['HEALTH_OK', 'HEALTH_WARN', 'HEALTH_ERR'] as const;
export type CephHealth = (typeof CEPH_HEALTH)[number];

export interface ImageRef {
  pool: string;
  image: string;
}

export interface RbdImage extends ImageRef {
  sizeBytes: number;
  createdAt: string;
}

export interface ImageSnapshot extends ImageRef {
  snapshot: string;
  createdAt: string;
  sizeBytes: number;
}

/** Mirroring of one image as this cluster sees it (the fields of the proto's MirrorStatus). */
export interface ImageMirrorStatus extends ImageRef {
  enabled: boolean;
  primary: boolean;
  /** "up+replaying", "up+stopped", "up+error", "down+unknown", … ('' when disabled). */
  state: string;
  description: string;
  lastUpdate: string;
  globalId: string;
  mode: '' | 'snapshot' | 'journal';
  /** The newest mirror snapshot that the secondary holds completely ('' none yet). */
  lastMirroredSnapshotAt: string;
  /** The newest mirror snapshot taken (primary) or received (secondary). */
  lastSnapshotAt: string;
  bytesPerSecond: number;
  secondsUntilSynced: number;
  peerState: string;
  peerDescription: string;
  scheduleInterval: string;
  splitBrain: boolean;
}

/** The status of an image whose mirroring is disabled (both drivers answer it alike). */
export function disabledMirrorStatus(ref: ImageRef): ImageMirrorStatus {
  return {
    pool: ref.pool,
    image: ref.image,
    enabled: false,
    primary: false,
    state: '',
    description: 'mirroring is disabled',
    lastUpdate: '',
    globalId: '',
    mode: '',
    lastMirroredSnapshotAt: '',
    lastSnapshotAt: '',
    bytesPerSecond: 0,
    secondsUntilSynced: 0,
    peerState: '',
    peerDescription: '',
    scheduleInterval: '',
    splitBrain: false,
  };
}

export interface MirrorPeer {
  uuid: string;
  siteName: string;
  direction: string;
}

export interface PoolMirrorStatus {
  pool: string;
  mode: 'image' | 'pool' | 'disabled';
  siteName: string;
  peers: MirrorPeer[];
  health: string;
  daemonHealth: string;
  imageHealth: string;
  states: Record<string, number>;
}

export interface FenceResult {
  blocklisted: string[];
  locksBroken: string[];
  /**
   * Read once the locks were broken (rbd): the clients that still have the image open and the VM
   * lock's holder, if any — what HA checks before it calls the image fenced.
   */
  after?: { watchers: string[]; holder: string | undefined };
}

export interface FenceOptions {
  /** How long the blocklist entries last (unset: Ceph's default, an hour). */
  blocklistSeconds?: number;
}

/**
 * Block storage as the agent drives it: `rbd` (Ceph through the rbd/ceph command-line tools) or
 * `sim` (images in the cluster's etcd). One contract test suite runs against both. Errors are
 * AgentErrors: NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION (naming who holds an image),
 * UNAVAILABLE / DEADLINE_EXCEEDED (the cluster or its peer does not answer in time).
 * Names are validated by the caller (labelSchema) and again by the driver before any command runs.
 */
export interface StorageDriver {
  readonly name: string;
  listImages(pool: string): Promise<RbdImage[]>;
  getImage(ref: ImageRef): Promise<RbdImage | undefined>;
  /** Creates an image; ALREADY_EXISTS when the pool has one of that name. */
  createImage(pool: string, image: string, sizeBytes: number): Promise<RbdImage>;
  health(): Promise<DriverHealth>;
  /**
   * The storage cluster's health (exported as debvisor_ceph_health_status): the rbd driver reads it
   * from `ceph health --format json`; the sim driver's simulated cluster is always HEALTH_OK.
   */
  cephHealth(): Promise<CephHealth>;

  // Snapshots. A snapshot of several images is taken at one point in time (rbd: a group snapshot).
  createSnapshot(images: ImageRef[], snapshot: string): Promise<ImageSnapshot[]>;
  listSnapshots(ref: ImageRef): Promise<ImageSnapshot[]>;
  /** Removes the snapshot of every image named (a group snapshot as a whole). */
  removeSnapshot(images: ImageRef[], snapshot: string): Promise<void>;
  /** Rolls every image named back to the snapshot; the images must not be in use. */
  rollbackSnapshot(images: ImageRef[], snapshot: string): Promise<void>;

  // Who uses an image: a VM holds an exclusive lock (rbd: an advisory lock named after the VM) while it runs.
  /** FAILED_PRECONDITION naming the holder when another VM holds the image. Idempotent for the same holder. */
  lockImage(ref: ImageRef, holder: string): Promise<void>;
  unlockImage(ref: ImageRef, holder: string): Promise<void>;
  /** The VM holding the image, undefined when free. */
  imageHolder(ref: ImageRef): Promise<string | undefined>;

  // Mirroring.
  enableMirroring(ref: ImageRef, scheduleInterval: string): Promise<ImageMirrorStatus>;
  disableMirroring(ref: ImageRef, force: boolean): Promise<ImageMirrorStatus>;
  mirrorStatus(ref: ImageRef): Promise<ImageMirrorStatus>;
  createMirrorSnapshot(ref: ImageRef): Promise<ImageMirrorStatus>;
  promote(ref: ImageRef, force: boolean): Promise<ImageMirrorStatus>;
  demote(ref: ImageRef): Promise<ImageMirrorStatus>;
  resync(ref: ImageRef): Promise<ImageMirrorStatus>;
  /** Creates this pool's peer bootstrap token (a secret: never store or log it). */
  createPeerBootstrap(pool: string, siteName: string): Promise<string>;
  importPeerBootstrap(
    pool: string,
    siteName: string,
    token: string,
    direction: 'rx-tx' | 'rx-only',
  ): Promise<PoolMirrorStatus>;
  poolMirrorStatus(pool: string): Promise<PoolMirrorStatus>;
  /** Blocklists the clients that have the image open and breaks its locks. */
  fenceImage(ref: ImageRef, options?: FenceOptions): Promise<FenceResult>;
}
