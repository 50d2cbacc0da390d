import type { Etcd3, Lease } from 'etcd3';
import { AgentError } from '../../shared/agent-error';
import type { Clock } from '../../shared/clock';
import type { Logger } from '../../shared/logger';
import type { ImageRecord, MirrorReport, PoolMirrorRecord, PoolPeer } from './sim-rbd.records';
import { sha256 } from './sim-rbd.records';
import type { SimRbdRepository } from './sim-rbd.repository';
import {
  keepNewest,
  primaryReport,
  scheduleIntervalMs,
  takeMirrorSnapshot,
  type SimStorageDriver,
} from './sim-storage.driver';

/** Bytes a simulated write changes (what a mirror snapshot's delta counts per content version). */
const BYTES_PER_WRITE = 4 * 1024 ** 2;
/** The simulated link between the sites (10 GbE): no copy is reported faster. */
const LINK_BYTES_PER_SECOND = 1_250_000_000;

export interface SimRbdMirrorOptions {
  driver: SimStorageDriver;
  /** This cluster's etcd (the leader key's lease). */
  etcd: Etcd3;
  nodeId: string;
  intervalMs: number;
  clock: Clock;
  logger: Logger;
}

/** The peer refused the key this site presents (it was replaced, or the pairing was undone there). */
class KeyRefused extends Error {}

/**
 * The simulated rbd-mirror daemon of one sim cluster: exactly one agent of the cluster runs it (the
 * holder of a leased leader key in the cluster's etcd; another agent takes over within the lease
 * TTL when it dies). Every interval it takes the scheduled mirror snapshots of the primaries here,
 * and for each paired pool copies the peer's primary images' newest mirror snapshots into their
 * non-primary mirrors here (creating them on first sight), detects split brain, carries out
 * resyncs, removes mirrors whose primary stopped mirroring, and reports its side's state into the
 * peer's etcd (the peer site status a primary shows). A peer that does not answer within the peer
 * timeout turns its mirrors here down+unknown.
 */
export class SimRbdMirrorDaemon {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private lease: Lease | undefined;
  private leading = false;

  constructor(private readonly options: SimRbdMirrorOptions) {}

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    await this.lease?.revoke().catch(() => undefined);
    this.lease = undefined;
  }

  /** One round: the leader replays, the others only check whether they must take over. */
  async tick(): Promise<void> {
    try {
      const leading = await this.lead();
      if (leading !== this.leading)
        this.options.logger.info(
          { leading },
          leading
            ? 'this node now runs the simulated rbd-mirror'
            : 'another node runs the simulated rbd-mirror',
        );
      this.leading = leading;
      if (leading) await this.replay();
    } catch (error) {
      this.options.logger.warn(
        { err: error },
        'simulated rbd-mirror round failed; retrying at the next interval',
      );
    }
  }

  /** One replay round over every mirrored pool of this cluster (also used directly by tests). */
  async replay(): Promise<void> {
    const local = this.options.driver.repository;
    for (const [pool, record] of await local.mirrorPools()) {
      await this.reportPrimaries(pool, record);
      for (const peer of record.peers) {
        try {
          await this.replayFrom(pool, record, peer);
        } catch (error) {
          this.options.driver.peers.reset(peer.endpoints);
          await this.markPeerDown(pool, peer, error);
        }
      }
    }
  }

  private async lead(): Promise<boolean> {
    if (!this.lease || this.lease.revoked()) {
      const ttl = Math.max(2, Math.ceil((3 * this.options.intervalMs) / 1000));
      const lease = this.options.etcd.lease(ttl);
      lease.on('lost', () => {
        if (this.lease === lease) this.lease = undefined;
      });
      this.lease = lease;
    }
    return this.options.driver.repository.claimReplayer(this.options.nodeId, this.lease);
  }

  /** Primaries here: a fresh "up+stopped" report (or the split brain), and the scheduled mirror snapshots. */
  private async reportPrimaries(pool: string, record: PoolMirrorRecord): Promise<void> {
    const local = this.options.driver.repository;
    const now = this.options.clock.now();
    for (const image of await local.images(pool)) {
      if (!image.mirror?.primary) continue;
      await local
        .updateImage(image, (current) => {
          const mirror = current.mirror;
          if (!mirror?.primary) return undefined;
          const report = mirror.splitBrain
            ? splitBrainReport(now, 'the image is primary at this site and at its peer')
            : primaryReport(now);
          const interval = scheduleIntervalMs(mirror.scheduleInterval);
          const newest = mirror.snapshots.at(-1);
          const due =
            interval !== undefined &&
            (!newest || now.getTime() - Date.parse(newest.takenAt) >= interval);
          if (!due && !this.reportDue(mirror.report, report, now)) return undefined;
          const snapshots = due
            ? keepNewest([...mirror.snapshots, takeMirrorSnapshot(current, record.siteName, now)])
            : mirror.snapshots;
          return { ...current, mirror: { ...mirror, report, snapshots } };
        })
        .catch((error: unknown) =>
          this.options.logger.warn(
            { err: error, pool, image: image.image },
            'could not report a primary image',
          ),
        );
    }
  }

  private async replayFrom(pool: string, record: PoolMirrorRecord, peer: PoolPeer): Promise<void> {
    const local = this.options.driver.repository;
    const remote = this.options.driver.peers.repository(peer.endpoints, peer.siteName);
    const remotePool = await remote.mirrorPool(pool);
    if (!remotePool?.acceptedKeys.includes(sha256(peer.key)))
      throw new KeyRefused(
        `the peer site ${peer.siteName} refuses this site's key; pair the pools again`,
      );
    const remoteImages = (await remote.images(pool)).filter((image) => image.mirror);
    const localImages = new Map((await local.images(pool)).map((image) => [image.image, image]));
    const now = this.options.clock.now();

    for (const theirs of remoteImages) {
      const mirror = theirs.mirror!;
      const ours = localImages.get(theirs.image);
      const source = mirror.primary || mirror.snapshots.at(-1)?.demoted === true;
      if (!ours) {
        if (source) await this.bootstrap(theirs, peer, remote, record.siteName, now);
        continue;
      }
      if (ours.mirror?.globalId !== mirror.globalId) {
        if (source) {
          const clash = `site ${record.siteName} has another image named ${theirs.image} (not this image's mirror); rename or remove it there`;
          await remote.putPeerReport(pool, mirror.globalId, {
            site: record.siteName,
            ...errorReport(now, clash),
          });
        }
        continue;
      }
      if (ours.mirror.primary) {
        // Split brain while both are primary; over once the peer demoted its side.
        const splitBrain = mirror.primary;
        if (ours.mirror.splitBrain !== splitBrain) await this.setSplitBrain(ours, splitBrain, now);
        continue;
      }
      if (!source) continue;
      const replayed = await this.replayImage(ours, theirs, peer, now);
      if (replayed?.mirror?.report && replayed.mirror.report.lastUpdate === now.toISOString()) {
        await remote.putPeerReport(pool, mirror.globalId, {
          site: record.siteName,
          ...replayed.mirror.report,
          lastMirroredSnapshotAt: replayed.mirror.lastMirroredSnapshotAt,
        });
      }
    }

    // Like rbd-mirror: a non-primary mirror whose primary no longer mirrors (disabled or removed) goes too.
    const mirrored = new Set(remoteImages.map((image) => image.mirror!.globalId));
    for (const ours of localImages.values()) {
      const mirror = ours.mirror;
      if (
        !mirror ||
        mirror.primary ||
        mirror.peerSite !== peer.siteName ||
        mirrored.has(mirror.globalId)
      )
        continue;
      await local.updateImage(ours, (current) =>
        current.mirror?.globalId === mirror.globalId && !current.mirror.primary
          ? 'delete'
          : undefined,
      );
      this.options.logger.info(
        { pool, image: ours.image, peer: peer.siteName },
        'removed a non-primary mirror whose primary stopped mirroring',
      );
    }
  }

  /** First sight of a primary image: its non-primary mirror here, holding the newest mirror snapshot. */
  private async bootstrap(
    theirs: ImageRecord,
    peer: PoolPeer,
    remote: SimRbdRepository,
    site: string,
    now: Date,
  ): Promise<void> {
    const mirror = theirs.mirror!;
    const newest = mirror.snapshots.at(-1);
    if (!newest) return;
    const report = replayingReport(
      now,
      newest.takenAt,
      mirror.primary,
      peer.siteName,
      theirs.sizeBytes / ((this.options.intervalMs || 1) / 1000),
    );
    const record: ImageRecord = {
      pool: theirs.pool,
      image: theirs.image,
      sizeBytes: theirs.sizeBytes,
      createdAt: now.toISOString(),
      content: newest.content,
      snapshots: [],
      lock: null,
      mirror: {
        globalId: mirror.globalId,
        primary: false,
        scheduleInterval: mirror.scheduleInterval,
        snapshots: [newest],
        lastMirroredSnapshotAt: newest.takenAt,
        peerSite: peer.siteName,
        resyncRequested: false,
        splitBrain: false,
        report,
        peerReport: mirror.report,
      },
    };
    if (await this.options.driver.repository.createImage(record)) {
      this.options.logger.info(
        { pool: theirs.pool, image: theirs.image, peer: peer.siteName },
        'created the non-primary mirror of a peer image',
      );
      await remote.putPeerReport(theirs.pool, mirror.globalId, {
        site,
        ...report,
        lastMirroredSnapshotAt: newest.takenAt,
      });
    }
  }

  /** Copies the peer's newer mirror snapshots (or everything, on resync) into the non-primary image here. */
  private async replayImage(
    ours: ImageRecord,
    theirs: ImageRecord,
    peer: PoolPeer,
    now: Date,
  ): Promise<ImageRecord | undefined> {
    const remoteMirror = theirs.mirror!;
    const newest = remoteMirror.snapshots.at(-1);
    if (!newest) return undefined;
    return this.options.driver.repository.updateImage(ours, (current) => {
      const mirror = current.mirror;
      if (!mirror || mirror.primary || mirror.globalId !== remoteMirror.globalId) return undefined;
      const base = {
        ...mirror,
        peerSite: peer.siteName,
        peerReport: remoteMirror.report,
        scheduleInterval: remoteMirror.scheduleInterval,
      };
      const localNewest = mirror.snapshots.at(-1);
      const from = localNewest
        ? remoteMirror.snapshots.findIndex((s) => s.id === localNewest.id)
        : -1;
      const rate = (versions: number) =>
        (Math.max(0, versions) * BYTES_PER_WRITE) / (this.options.intervalMs / 1000);

      const peerChanged = mirror.peerReport?.state !== remoteMirror.report?.state;
      if (
        !mirror.resyncRequested &&
        localNewest &&
        from < 0 &&
        localNewest.site !== peer.siteName
      ) {
        // This side holds a snapshot the primary never had: it was primary here after the two parted.
        const report = splitBrainReport(
          now,
          `this non-primary image has data that the primary at site ${peer.siteName} lacks; resync it`,
        );
        if (mirror.splitBrain && !peerChanged && !this.reportDue(mirror.report, report, now))
          return undefined;
        return { ...current, mirror: { ...base, splitBrain: true, report } };
      }
      if (!mirror.resyncRequested && from === remoteMirror.snapshots.length - 1) {
        const report = replayingReport(
          now,
          mirror.lastMirroredSnapshotAt,
          remoteMirror.primary,
          peer.siteName,
          0,
        );
        if (!mirror.splitBrain && !peerChanged && !this.reportDue(mirror.report, report, now))
          return undefined;
        return { ...current, mirror: { ...base, splitBrain: false, report } };
      }
      // New snapshots to copy; a full copy on resync, first sight or when the primary pruned what this side had.
      const full = mirror.resyncRequested || from < 0;
      const snapshots = full
        ? [newest]
        : keepNewest([...mirror.snapshots, ...remoteMirror.snapshots.slice(from + 1)]);
      const report = replayingReport(
        now,
        newest.takenAt,
        remoteMirror.primary,
        peer.siteName,
        full ? current.sizeBytes : rate(newest.content.version - current.content.version),
      );
      return {
        ...current,
        content: newest.content,
        snapshots: full ? [] : current.snapshots,
        mirror: {
          ...base,
          snapshots,
          lastMirroredSnapshotAt: newest.takenAt,
          resyncRequested: false,
          splitBrain: false,
          report,
        },
      };
    });
  }

  private async setSplitBrain(image: ImageRecord, splitBrain: boolean, now: Date): Promise<void> {
    await this.options.driver.repository.updateImage(image, (current) => {
      if (!current.mirror?.primary) return undefined;
      const report = splitBrain
        ? splitBrainReport(now, 'the image is primary at this site and at its peer')
        : primaryReport(now);
      return { ...current, mirror: { ...current.mirror, splitBrain, report } };
    });
    if (splitBrain)
      this.options.logger.warn(
        { pool: image.pool, image: image.image },
        'split brain: the image is primary at both sites',
      );
  }

  /** The peer did not answer (or refused the key): its mirrors here say so. */
  private async markPeerDown(pool: string, peer: PoolPeer, error: unknown): Promise<void> {
    const now = this.options.clock.now();
    const refused = error instanceof KeyRefused;
    const reason =
      error instanceof AgentError || refused ? (error as Error).message : 'it cannot be reached';
    const report: MirrorReport = refused
      ? errorReport(now, reason)
      : {
          state: 'down+unknown',
          description: `${reason}`,
          lastUpdate: now.toISOString(),
          bytesPerSecond: 0,
          secondsUntilSynced: 0,
          lastMirroredSnapshotAt: '',
        };
    this.options.logger.warn(
      { pool, peer: peer.siteName, reason },
      'the peer site of a mirrored pool does not answer',
    );
    const local = this.options.driver.repository;
    for (const image of await local.images(pool)) {
      if (!image.mirror || image.mirror.primary || image.mirror.peerSite !== peer.siteName)
        continue;
      await local.updateImage(image, (current) => {
        if (
          !current.mirror ||
          current.mirror.primary ||
          !this.reportDue(current.mirror.report, report, now)
        )
          return undefined;
        return {
          ...current,
          mirror: {
            ...current.mirror,
            report: { ...report, lastMirroredSnapshotAt: current.mirror.lastMirroredSnapshotAt },
          },
        };
      });
    }
  }

  /**
   * Whether a report must be written: its content changed, or the one kept is old enough that
   * readers would soon take it as stale. (Unchanged reports are not rewritten every round: each
   * write is a new etcd revision.)
   */
  private reportDue(kept: MirrorReport | undefined, next: MirrorReport, now: Date): boolean {
    if (
      !kept ||
      kept.state !== next.state ||
      kept.description !== next.description ||
      kept.bytesPerSecond !== next.bytesPerSecond
    )
      return true;
    return now.getTime() - Date.parse(kept.lastUpdate) >= this.options.driver.reportRefreshMs;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => this.schedule());
    }, this.options.intervalMs);
  }
}

function replayingReport(
  now: Date,
  lastMirroredSnapshotAt: string,
  peerPrimary: boolean,
  peerSite: string,
  bytesPerSecond: number,
): MirrorReport {
  const description = peerPrimary
    ? `replaying; last mirrored snapshot taken at ${lastMirroredSnapshotAt}`
    : `the image was demoted at site ${peerSite}; its last snapshot is here (promote it at one site)`;
  const rate = Math.round(Math.min(bytesPerSecond, LINK_BYTES_PER_SECOND));
  return {
    state: peerPrimary ? 'up+replaying' : 'up+unknown',
    description,
    lastUpdate: now.toISOString(),
    bytesPerSecond: rate,
    secondsUntilSynced: 0,
    lastMirroredSnapshotAt,
  };
}

function splitBrainReport(now: Date, why: string): MirrorReport {
  return errorReport(now, `split-brain: ${why}`);
}

function errorReport(now: Date, description: string): MirrorReport {
  return {
    state: 'up+error',
    description,
    lastUpdate: now.toISOString(),
    bytesPerSecond: 0,
    secondsUntilSynced: 0,
    lastMirroredSnapshotAt: '',
  };
}
