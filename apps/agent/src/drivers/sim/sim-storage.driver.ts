import { labelSchema } from '@debvisor/common';
import type { Etcd3 } from 'etcd3';
import { randomBytes, randomUUID } from 'node:crypto';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { Clock } from '../../shared/clock';
import type { EtcdConnection } from '../../shared/etcd-client';
import type { DriverHealth } from '../hypervisor.driver';
import {
  disabledMirrorStatus,
  type CephHealth,
  type FenceResult,
  type ImageMirrorStatus,
  type ImageRef,
  type ImageSnapshot,
  type PoolMirrorStatus,
  type RbdImage,
  type StorageDriver,
} from '../storage.driver';
import { SimRbdPeers } from './sim-rbd-peers';
import {
  bootstrapTokenSchema,
  sha256,
  type ImageRecord,
  type MirrorReport,
  type MirrorSnapshot,
  type PoolMirrorRecord,
  type SimContent,
} from './sim-rbd.records';
import { SimRbdRepository } from './sim-rbd.repository';

/** Mirror snapshots kept per image (rbd-mirror prunes older ones the same way). */
export const MIRROR_SNAPSHOTS_KEPT = 5;
/** How long a fenced client stays blocklisted (Ceph's default blocklist expiry). */
const BLOCKLIST_MS = 60 * 60_000;
/** Bootstrap keys a pool accepts at once (older ones are forgotten). */
const ACCEPTED_KEYS_KEPT = 16;
const MAX_TOKEN_LENGTH = 8 * 1024;

export interface SimStorageOptions {
  etcd: Etcd3;
  clock: Clock;
  clusterId: string;
  nodeId: string;
  /** This cluster's etcd endpoints: what a peer bootstrap token tells the peer to reach. */
  etcdEndpoints: readonly string[];
  /** How to reach peer sites' etcds beyond their endpoints (this agent's etcd TLS files). */
  peerEtcd?: Omit<EtcdConnection, 'endpoints' | 'auth'>;
  /** Deadline of every call to a peer cluster. */
  peerTimeoutMs: number;
  /** A mirroring report older than this means its rbd-mirror daemon (or its site) is down. */
  staleAfterMs: number;
}

/** "5m", "1h", "1d" (rbd mirror snapshot schedule intervals) in milliseconds; '' is no schedule. */
export function scheduleIntervalMs(interval: string): number | undefined {
  const match = /^([1-9]\d{0,5})([mhd])$/.exec(interval);
  if (!match) return undefined;
  return Number(match[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'm' | 'h' | 'd'];
}

export function newContent(previous?: SimContent): SimContent {
  return { version: (previous?.version ?? 0) + 1, checksum: randomBytes(32).toString('hex') };
}

/** A mirror snapshot of the record's current content. */
export function takeMirrorSnapshot(
  record: ImageRecord,
  site: string,
  takenAt: Date,
  demoted = false,
): MirrorSnapshot {
  return {
    id: randomUUID(),
    takenAt: takenAt.toISOString(),
    content: record.content,
    demoted,
    site,
  };
}

export function keepNewest(snapshots: MirrorSnapshot[]): MirrorSnapshot[] {
  return snapshots.slice(-MIRROR_SNAPSHOTS_KEPT);
}

/**
 * Simulated Ceph RBD: images live in the cluster's etcd under /debvisor/sim/rbd/<pool>/<image>, so
 * every node of the cluster sees the same images, as with a real Ceph cluster. Images hold no
 * bytes but a content version and checksum that writes change (writeImage: the sim hypervisor's
 * running VMs and tests write); snapshots, rollback and mirroring carry that content. Locks,
 * the blocklist and mirroring behave as Ceph's do where a caller can observe it; the replication
 * itself is SimRbdMirrorDaemon (one per cluster), which plays rbd-mirror.
 */
export class SimStorageDriver implements StorageDriver {
  readonly name = 'sim';
  readonly repository: SimRbdRepository;
  readonly peers: SimRbdPeers;
  /** How this node appears to the simulated Ceph; each VM's disks are opened by a client of its own (clientOf). */
  private readonly node: string;

  constructor(private readonly options: SimStorageOptions) {
    this.repository = new SimRbdRepository(options.etcd);
    this.peers = new SimRbdPeers(options.peerTimeoutMs, options.peerEtcd);
    this.node = `client.${options.nodeId}@${options.clusterId}`;
  }

  async listImages(pool: string): Promise<RbdImage[]> {
    checkName('pool', pool);
    return (await this.repository.images(pool)).map(toImage);
  }

  async getImage(ref: ImageRef): Promise<RbdImage | undefined> {
    checkRef(ref);
    const record = await this.repository.image(ref);
    return record && toImage(record);
  }

  async createImage(pool: string, image: string, sizeBytes: number): Promise<RbdImage> {
    checkRef({ pool, image });
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0)
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'invalid image size: a positive whole number of bytes',
      );
    const record: ImageRecord = {
      pool,
      image,
      sizeBytes,
      createdAt: this.now().toISOString(),
      content: newContent(),
      snapshots: [],
      lock: null,
      mirror: null,
    };
    if (!(await this.repository.createImage(record)))
      throw new AgentError(
        ErrorCode.AlreadyExists,
        `the RBD image ${pool}/${image} exists already`,
      );
    return toImage(record);
  }

  async health(): Promise<DriverHealth> {
    try {
      await this.repository.mirrorPools();
      return { name: 'sim-rbd', status: 'ok', message: 'simulated RBD pool reachable' };
    } catch {
      return {
        name: 'sim-rbd',
        status: 'failed',
        message: 'the cluster etcd holding the simulated RBD images is unreachable',
      };
    }
  }

  /** The simulated Ceph cluster has no failures of its own (its reachability shows in health()). */
  async cephHealth(): Promise<CephHealth> {
    return 'HEALTH_OK';
  }

  // --- content (sim only) ---------------------------------------------------------------------

  /**
   * A write to the image by `holder` (a VM): a new content version and checksum. Refused, as Ceph
   * refuses I/O, when this node's client is blocklisted, the image is a non-primary mirror, or
   * another VM holds its lock.
   */
  async writeImage(ref: ImageRef, holder: string): Promise<SimContent> {
    checkRef(ref);
    checkName('holder', holder);
    await this.refuseIfBlocklisted(holder);
    const record = await this.repository.updateImage(ref, (current) => {
      refuseIfNonPrimary(current, 'written');
      if (current.lock && current.lock.holder !== holder) throw heldBy(current);
      return { ...current, content: newContent(current.content) };
    });
    return record!.content;
  }

  /** The image's content version and checksum (what a checksum of its bytes is to a real image). */
  async imageContent(ref: ImageRef): Promise<SimContent> {
    return (await this.record(ref)).content;
  }

  // --- snapshots ------------------------------------------------------------------------------

  async createSnapshot(images: ImageRef[], snapshot: string): Promise<ImageSnapshot[]> {
    const refs = distinct(images);
    checkName('snapshot', snapshot);
    const createdAt = this.now().toISOString();
    const records = await this.repository.updateImages(refs, (current) =>
      current.map((record) => {
        refuseIfNonPrimary(record, 'snapshotted');
        if (record.snapshots.some((s) => s.name === snapshot))
          throw new AgentError(
            ErrorCode.AlreadyExists,
            `the RBD image ${record.pool}/${record.image} has a snapshot ${snapshot} already`,
          );
        return {
          ...record,
          snapshots: [
            ...record.snapshots,
            { name: snapshot, createdAt, sizeBytes: record.sizeBytes, content: record.content },
          ],
        };
      }),
    );
    return records.map((record) => ({
      pool: record!.pool,
      image: record!.image,
      snapshot,
      createdAt,
      sizeBytes: record!.sizeBytes,
    }));
  }

  async listSnapshots(ref: ImageRef): Promise<ImageSnapshot[]> {
    const record = await this.record(ref);
    return record.snapshots.map((s) => ({
      pool: record.pool,
      image: record.image,
      snapshot: s.name,
      createdAt: s.createdAt,
      sizeBytes: s.sizeBytes,
    }));
  }

  async removeSnapshot(images: ImageRef[], snapshot: string): Promise<void> {
    const refs = distinct(images);
    checkName('snapshot', snapshot);
    await this.repository.updateImages(refs, (current) =>
      current.map((record) => {
        if (!record.snapshots.some((s) => s.name === snapshot)) throw noSnapshot(record, snapshot);
        return { ...record, snapshots: record.snapshots.filter((s) => s.name !== snapshot) };
      }),
    );
  }

  async rollbackSnapshot(images: ImageRef[], snapshot: string): Promise<void> {
    const refs = distinct(images);
    checkName('snapshot', snapshot);
    await this.repository.updateImages(refs, (current) =>
      current.map((record) => {
        const saved = record.snapshots.find((s) => s.name === snapshot);
        if (!saved) throw noSnapshot(record, snapshot);
        if (record.lock)
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            `the RBD image ${record.pool}/${record.image} is in use by ${record.lock.holder}; stop it before a rollback`,
          );
        refuseIfNonPrimary(record, 'rolled back');
        return { ...record, content: saved.content };
      }),
    );
  }

  // --- locks ----------------------------------------------------------------------------------

  async lockImage(ref: ImageRef, holder: string): Promise<void> {
    checkRef(ref);
    checkName('holder', holder);
    await this.refuseIfBlocklisted(holder);
    const client = this.clientOf(holder);
    await this.repository.updateImage(ref, (record) => {
      // A non-primary mirror can be locked (an RBD advisory lock is metadata); its writes are refused.
      if (record.lock && record.lock.holder !== holder) throw heldBy(record);
      if (record.lock?.client === client) return undefined;
      return { ...record, lock: { holder, client, lockedAt: this.now().toISOString() } };
    });
  }

  /** Releases the lock when `holder` holds it; a lock of another holder stays (nothing to release here). */
  async unlockImage(ref: ImageRef, holder: string): Promise<void> {
    checkRef(ref);
    checkName('holder', holder);
    await this.repository.updateImage(ref, (record) =>
      record.lock?.holder === holder ? { ...record, lock: null } : undefined,
    );
  }

  async imageHolder(ref: ImageRef): Promise<string | undefined> {
    return (await this.record(ref)).lock?.holder;
  }

  /** Blocklists the client that holds the image's lock (for an hour, as Ceph does) and breaks the lock. */
  async fenceImage(ref: ImageRef): Promise<FenceResult> {
    const record = await this.record(ref);
    const lock = record.lock;
    if (!lock) return { blocklisted: [], locksBroken: [] };
    const now = this.now();
    await this.repository.addToBlocklist(lock.client, now, new Date(now.getTime() + BLOCKLIST_MS));
    await this.repository.updateImage(ref, (current) =>
      current.lock?.client === lock.client && current.lock.holder === lock.holder
        ? { ...current, lock: null }
        : undefined,
    );
    return { blocklisted: [lock.client], locksBroken: [lock.holder] };
  }

  // --- mirroring ------------------------------------------------------------------------------

  async enableMirroring(ref: ImageRef, scheduleInterval: string): Promise<ImageMirrorStatus> {
    checkRef(ref);
    checkSchedule(scheduleInterval);
    const site = (await this.ensureMirrorPool(ref.pool)).siteName;
    const now = this.now();
    const record = await this.repository.updateImage(ref, (current) => {
      if (current.mirror)
        return current.mirror.scheduleInterval === scheduleInterval || !current.mirror.primary
          ? undefined
          : { ...current, mirror: { ...current.mirror, scheduleInterval } };
      const mirror = {
        globalId: randomUUID(),
        primary: true,
        scheduleInterval,
        snapshots: [takeMirrorSnapshot(current, site, now)],
        lastMirroredSnapshotAt: '',
        peerSite: '',
        resyncRequested: false,
        splitBrain: false,
        report: primaryReport(now),
      };
      return { ...current, mirror };
    });
    return this.statusOf(record!);
  }

  async disableMirroring(ref: ImageRef, force: boolean): Promise<ImageMirrorStatus> {
    checkRef(ref);
    let globalId = '';
    const record = await this.repository.updateImage(ref, (current) => {
      if (!current.mirror) return undefined;
      if (!current.mirror.primary && !force) {
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `the RBD image ${ref.pool}/${ref.image} is a non-primary mirror; disable mirroring at the primary (its mirror here is then removed), or force it`,
        );
      }
      globalId = current.mirror.globalId;
      return { ...current, mirror: null };
    });
    if (globalId) await this.repository.deletePeerReports(ref.pool, globalId);
    return this.statusOf(record!);
  }

  async mirrorStatus(ref: ImageRef): Promise<ImageMirrorStatus> {
    return this.statusOf(await this.record(ref));
  }

  async createMirrorSnapshot(ref: ImageRef): Promise<ImageMirrorStatus> {
    checkRef(ref);
    const site = await this.siteName(ref.pool);
    const now = this.now();
    const record = await this.repository.updateImage(ref, (current) => {
      const mirror = enabledMirror(current);
      if (!mirror.primary)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `the RBD image ${ref.pool}/${ref.image} is not primary here; mirror snapshots are taken at the primary`,
        );
      return {
        ...current,
        mirror: {
          ...mirror,
          snapshots: keepNewest([...mirror.snapshots, takeMirrorSnapshot(current, site, now)]),
        },
      };
    });
    return this.statusOf(record!);
  }

  /**
   * Makes the image primary here. Without force the peer must have demoted its side and this side
   * must hold the demotion snapshot (a planned switchover, nothing lost); with force it is
   * promoted whatever the peer says (failover; a split brain when the old primary comes back).
   */
  async promote(ref: ImageRef, force: boolean): Promise<ImageMirrorStatus> {
    checkRef(ref);
    const record = await this.record(ref);
    const mirror = enabledMirror(record);
    if (mirror.primary) return this.statusOf(record);
    const pool = await this.repository.mirrorPool(ref.pool);
    const site = pool?.siteName ?? this.options.clusterId;
    if (!force) await this.checkPeerDemoted(record, pool);
    const now = this.now();
    const promoted = await this.repository.updateImage(ref, (current) => {
      const latest = enabledMirror(current);
      if (latest.primary) return undefined;
      const mirrorNext = {
        ...latest,
        primary: true,
        resyncRequested: false,
        splitBrain: false,
        peerSite: latest.peerSite,
        report: primaryReport(now),
        peerReport: undefined,
      };
      return {
        ...current,
        mirror: {
          ...mirrorNext,
          snapshots: keepNewest([...latest.snapshots, takeMirrorSnapshot(current, site, now)]),
        },
      };
    });
    return this.statusOf(promoted!);
  }

  /** Makes the image non-primary here after a last (demotion) mirror snapshot; refused while a VM holds it. */
  async demote(ref: ImageRef): Promise<ImageMirrorStatus> {
    checkRef(ref);
    const site = await this.siteName(ref.pool);
    const now = this.now();
    const record = await this.repository.updateImage(ref, (current) => {
      const mirror = enabledMirror(current);
      if (!mirror.primary) return undefined;
      if (current.lock)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `the RBD image ${ref.pool}/${ref.image} is in use by ${current.lock.holder}; stop or move it before demoting the image`,
        );
      const report = {
        state: 'up+unknown',
        description: 'local image demoted',
        lastUpdate: now.toISOString(),
        bytesPerSecond: 0,
        secondsUntilSynced: 0,
        lastMirroredSnapshotAt: '',
      };
      return {
        ...current,
        mirror: {
          ...mirror,
          primary: false,
          splitBrain: false,
          report,
          snapshots: keepNewest([
            ...mirror.snapshots,
            takeMirrorSnapshot(current, site, now, true),
          ]),
        },
      };
    });
    return this.statusOf(record!);
  }

  /** Flags a non-primary image for a full resync from the primary (the replayer does it). */
  async resync(ref: ImageRef): Promise<ImageMirrorStatus> {
    checkRef(ref);
    const now = this.now();
    const record = await this.repository.updateImage(ref, (current) => {
      const mirror = enabledMirror(current);
      if (mirror.primary)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `the RBD image ${ref.pool}/${ref.image} is primary here; resync a non-primary image (demote this one first)`,
        );
      const report = {
        state: 'up+syncing',
        description: 'resync requested: the image is copied again from the primary',
        lastUpdate: now.toISOString(),
        bytesPerSecond: 0,
        secondsUntilSynced: 0,
        lastMirroredSnapshotAt: mirror.lastMirroredSnapshotAt,
      };
      return { ...current, mirror: { ...mirror, resyncRequested: true, report } };
    });
    return this.statusOf(record!);
  }

  async createPeerBootstrap(pool: string, siteName: string): Promise<string> {
    checkName('pool', pool);
    if (siteName !== '') checkName('site', siteName);
    const key = randomBytes(32).toString('base64url');
    const record = await this.repository.updateMirrorPool(pool, (current) => ({
      siteName: siteName || current?.siteName || this.options.clusterId,
      acceptedKeys: [...(current?.acceptedKeys ?? []), sha256(key)].slice(-ACCEPTED_KEYS_KEPT),
      peers: current?.peers ?? [],
    }));
    const token = {
      kind: 'debvisor-sim-rbd-peer',
      siteName: record.siteName,
      pool,
      endpoints: [...this.options.etcdEndpoints],
      key,
    };
    return Buffer.from(JSON.stringify(token)).toString('base64');
  }

  async importPeerBootstrap(
    pool: string,
    siteName: string,
    token: string,
    direction: 'rx-tx' | 'rx-only',
  ): Promise<PoolMirrorStatus> {
    checkName('pool', pool);
    if (siteName !== '') checkName('site', siteName);
    const peer = parseToken(token);
    if (peer.pool !== pool)
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `the bootstrap token is for pool ${peer.pool}; mirroring pairs pools of the same name`,
      );
    const local = await this.repository.mirrorPool(pool);
    const site = siteName || local?.siteName || this.options.clusterId;
    if (peer.siteName === site)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `both sites are named ${site}; give each site its own name`,
      );

    const remote = this.peers.repository(peer.endpoints, peer.siteName);
    const remotePool = await remote.mirrorPool(pool);
    if (!remotePool?.acceptedKeys.includes(sha256(peer.key))) {
      throw new AgentError(
        ErrorCode.PermissionDenied,
        `the peer site ${peer.siteName} does not accept the bootstrap token's key; create a new token there`,
      );
    }
    if (direction === 'rx-tx') {
      // Like Ceph: a key of this cluster for the peer, registered in the peer's pool so that it replays from here too.
      const back = randomBytes(32).toString('base64url');
      await this.repository.updateMirrorPool(pool, (current) => ({
        siteName: site,
        acceptedKeys: [...(current?.acceptedKeys ?? []), sha256(back)].slice(-ACCEPTED_KEYS_KEPT),
        peers: current?.peers ?? [],
      }));
      await remote.updateMirrorPool(pool, (current) => ({
        siteName: current?.siteName ?? peer.siteName,
        acceptedKeys: current?.acceptedKeys ?? [],
        peers: [
          ...(current?.peers ?? []).filter((p) => p.siteName !== site),
          {
            uuid: randomUUID(),
            siteName: site,
            direction: 'rx-tx',
            endpoints: [...this.options.etcdEndpoints],
            key: back,
          },
        ],
      }));
    }
    await this.repository.updateMirrorPool(pool, (current) => ({
      siteName: site,
      acceptedKeys: current?.acceptedKeys ?? [],
      peers: [
        ...(current?.peers ?? []).filter((p) => p.siteName !== peer.siteName),
        {
          uuid: randomUUID(),
          siteName: peer.siteName,
          direction,
          endpoints: peer.endpoints,
          key: peer.key,
        },
      ],
    }));
    return this.poolMirrorStatus(pool);
  }

  async poolMirrorStatus(pool: string): Promise<PoolMirrorStatus> {
    checkName('pool', pool);
    const record = await this.repository.mirrorPool(pool);
    if (!record)
      return {
        pool,
        mode: 'disabled',
        siteName: '',
        peers: [],
        health: 'UNKNOWN',
        daemonHealth: 'UNKNOWN',
        imageHealth: 'UNKNOWN',
        states: {},
      };
    const images = (await this.repository.images(pool)).filter((image) => image.mirror);
    const states: Record<string, number> = {};
    for (const image of images) {
      const state = (await this.statusOf(image)).state.split('+')[1] ?? 'unknown';
      states[state] = (states[state] ?? 0) + 1;
    }
    const daemonHealth = (await this.repository.replayerLeader()) ? 'OK' : 'UNKNOWN';
    const imageHealth = states.error
      ? 'ERROR'
      : Object.keys(states).some((s) => s !== 'replaying' && s !== 'stopped')
        ? 'WARNING'
        : 'OK';
    return {
      pool,
      mode: 'image',
      siteName: record.siteName,
      peers: record.peers.map((p) => ({
        uuid: p.uuid,
        siteName: p.siteName,
        direction: p.direction,
      })),
      health: worst(daemonHealth, imageHealth),
      daemonHealth,
      imageHealth,
      states,
    };
  }

  /** How often an unchanged mirroring report is written again: a third of the time after which it counts as stale. */
  get reportRefreshMs(): number {
    return Math.max(1, Math.floor(this.options.staleAfterMs / 3));
  }

  /** Closes the connections to peer clusters. */
  close(): void {
    this.peers.close();
  }

  // --- helpers --------------------------------------------------------------------------------

  /** The image's mirroring as callers see it: reports older than staleAfterMs count as down+unknown. */
  async statusOf(record: ImageRecord): Promise<ImageMirrorStatus> {
    const base = { pool: record.pool, image: record.image };
    const mirror = record.mirror;
    if (!mirror) return disabledMirrorStatus(base);
    const local = this.fresh(mirror.report, 'this site');
    let peer: MirrorReport | undefined;
    let peerSite = mirror.peerSite;
    if (mirror.primary) {
      const reports = await this.repository.peerReports(record.pool, mirror.globalId);
      const newest = reports.sort((a, b) => b.lastUpdate.localeCompare(a.lastUpdate))[0];
      peer = newest;
      peerSite = newest?.site ?? '';
    } else peer = mirror.peerReport;
    const peerView = this.fresh(peer, peerSite ? `the peer site ${peerSite}` : 'the peer site');
    const lastMirroredSnapshotAt = mirror.primary
      ? (peer?.lastMirroredSnapshotAt ?? '')
      : mirror.lastMirroredSnapshotAt;
    return {
      ...base,
      enabled: true,
      primary: mirror.primary,
      state: local.state,
      description: local.description,
      lastUpdate: local.lastUpdate,
      globalId: mirror.globalId,
      mode: 'snapshot',
      lastMirroredSnapshotAt,
      lastSnapshotAt: mirror.snapshots.at(-1)?.takenAt ?? '',
      bytesPerSecond: local.bytesPerSecond,
      secondsUntilSynced: local.secondsUntilSynced,
      peerState: peerView.state,
      peerDescription: peerView.description,
      scheduleInterval: mirror.scheduleInterval,
      splitBrain: mirror.splitBrain,
    };
  }

  private fresh(report: MirrorReport | undefined, who: string): MirrorReport {
    if (report && this.now().getTime() - Date.parse(report.lastUpdate) <= this.options.staleAfterMs)
      return report;
    return {
      state: 'down+unknown',
      description: report
        ? `no rbd-mirror report from ${who} since ${report.lastUpdate}`
        : `no rbd-mirror report from ${who} yet`,
      lastUpdate: report?.lastUpdate ?? '',
      bytesPerSecond: 0,
      secondsUntilSynced: 0,
      lastMirroredSnapshotAt: report?.lastMirroredSnapshotAt ?? '',
    };
  }

  /** A planned promotion: the peer's image is demoted and this side holds its demotion snapshot. */
  private async checkPeerDemoted(
    record: ImageRecord,
    pool: PoolMirrorRecord | undefined,
  ): Promise<void> {
    const mirror = enabledMirror(record);
    const peer = pool?.peers.find((p) => p.siteName === mirror.peerSite) ?? pool?.peers[0];
    const name = `${record.pool}/${record.image}`;
    if (!peer)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the pool ${record.pool} has no peer site; force the promotion if the image must become primary here`,
      );
    const remote = await this.peers
      .repository(peer.endpoints, peer.siteName)
      .image(record)
      .catch((error: unknown) => {
        const reason = error instanceof AgentError ? error.message : 'it cannot be reached';
        throw new AgentError(
          ErrorCode.Unavailable,
          `${reason}; a planned promotion of ${name} needs the peer to confirm its demotion (force it only when that site is fenced or down)`,
        );
      });
    if (remote?.mirror?.globalId === mirror.globalId && remote.mirror.primary) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the RBD image ${name} is still primary at site ${peer.siteName}; demote it there first, or force the promotion`,
      );
    }
    const demotion =
      remote?.mirror?.globalId === mirror.globalId ? remote.mirror.snapshots.at(-1) : undefined;
    if (demotion?.demoted && mirror.snapshots.at(-1)?.id !== demotion.id) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the RBD image ${name} has not received the demotion snapshot of site ${peer.siteName} yet; wait until it is synced`,
      );
    }
  }

  private async ensureMirrorPool(pool: string): Promise<PoolMirrorRecord> {
    const existing = await this.repository.mirrorPool(pool);
    if (existing) return existing;
    return this.repository.updateMirrorPool(
      pool,
      (current) => current ?? { siteName: this.options.clusterId, acceptedKeys: [], peers: [] },
    );
  }

  private async siteName(pool: string): Promise<string> {
    return (await this.repository.mirrorPool(pool))?.siteName ?? this.options.clusterId;
  }

  private async record(ref: ImageRef): Promise<ImageRecord> {
    checkRef(ref);
    const record = await this.repository.image(ref);
    if (!record) throw new AgentError(ErrorCode.NotFound, `no RBD image ${ref.pool}/${ref.image}`);
    return record;
  }

  /**
   * The client that opens the holder's disks on this node, as a VM's QEMU (librbd) is a Ceph client
   * of its own: a fence blocklists it, not the node's other VMs nor the same VM elsewhere.
   */
  clientOf(holder: string): string {
    return `${this.node}/${holder}`;
  }

  private async refuseIfBlocklisted(holder: string): Promise<void> {
    const client = this.clientOf(holder);
    const until = await this.repository.blocklisted(client, this.now());
    if (until)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the storage client ${client} is blocklisted (fenced) until ${until}`,
      );
  }

  private now(): Date {
    return this.options.clock.now();
  }
}

export function primaryReport(now: Date): MirrorReport {
  return {
    state: 'up+stopped',
    description: 'local image is primary',
    lastUpdate: now.toISOString(),
    bytesPerSecond: 0,
    secondsUntilSynced: 0,
    lastMirroredSnapshotAt: '',
  };
}

function toImage(record: ImageRecord): RbdImage {
  return {
    pool: record.pool,
    image: record.image,
    sizeBytes: record.sizeBytes,
    createdAt: record.createdAt,
  };
}

function checkName(what: string, value: string): void {
  if (!labelSchema.safeParse(value).success)
    throw new AgentError(
      ErrorCode.InvalidArgument,
      `invalid ${what} name: a ${what} name is 1-64 letters, digits, dots, underscores and inner hyphens`,
    );
}

function checkRef(ref: ImageRef): void {
  checkName('pool', ref.pool);
  checkName('image', ref.image);
}

function checkSchedule(interval: string): void {
  if (interval !== '' && scheduleIntervalMs(interval) === undefined) {
    throw new AgentError(
      ErrorCode.InvalidArgument,
      'invalid schedule interval: a number of minutes, hours or days such as 5m, 1h or 1d',
    );
  }
}

/** The images of a (group) operation: at least one, each once. */
function distinct(images: ImageRef[]): ImageRef[] {
  if (images.length === 0)
    throw new AgentError(ErrorCode.InvalidArgument, 'name at least one image');
  for (const ref of images) checkRef(ref);
  if (new Set(images.map((ref) => `${ref.pool}/${ref.image}`)).size !== images.length)
    throw new AgentError(ErrorCode.InvalidArgument, 'an image is named more than once');
  return images;
}

function enabledMirror(record: ImageRecord): NonNullable<ImageRecord['mirror']> {
  if (!record.mirror)
    throw new AgentError(
      ErrorCode.FailedPrecondition,
      `mirroring is not enabled on the RBD image ${record.pool}/${record.image}`,
    );
  return record.mirror;
}

function refuseIfNonPrimary(record: ImageRecord, what: string): void {
  if (record.mirror && !record.mirror.primary) {
    const from = record.mirror.peerSite ? ` of site ${record.mirror.peerSite}` : '';
    throw new AgentError(
      ErrorCode.FailedPrecondition,
      `the RBD image ${record.pool}/${record.image} is a non-primary mirror${from} (read-only) and cannot be ${what}; promote it first`,
    );
  }
}

function heldBy(record: ImageRecord): AgentError {
  return new AgentError(
    ErrorCode.FailedPrecondition,
    `the RBD image ${record.pool}/${record.image} is held by ${record.lock!.holder} (${record.lock!.client})`,
  );
}

function noSnapshot(record: ImageRecord, snapshot: string): AgentError {
  return new AgentError(
    ErrorCode.NotFound,
    `the RBD image ${record.pool}/${record.image} has no snapshot ${snapshot}`,
  );
}

function parseToken(token: string) {
  const invalid = new AgentError(
    ErrorCode.InvalidArgument,
    'the peer bootstrap token is not one of a simulated (sim) RBD cluster',
  );
  if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw invalid;
  try {
    const parsed = bootstrapTokenSchema.safeParse(
      JSON.parse(Buffer.from(token, 'base64').toString('utf8')),
    );
    if (!parsed.success) throw invalid;
    return parsed.data;
  } catch {
    throw invalid;
  }
}

const HEALTH_RANK = ['OK', 'UNKNOWN', 'WARNING', 'ERROR'];
function worst(a: string, b: string): string {
  return HEALTH_RANK.indexOf(a) >= HEALTH_RANK.indexOf(b) ? a : b;
}
