import type { MirrorStatus__Output } from '@debvisor/proto';
import { Injectable } from '@nestjs/common';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { RemotesService } from '../remotes/remotes.service';
import { primarySide, rpoSeconds, type Side } from './dr-state';
import type { ImageSiteView, ImageStatusView, MirrorHealth } from './replication.dto';
import type { VmReplicationEntity } from './vm-replication.entity';

/** The cluster permission of the agents' mirroring reads (apps/agent/src/rpc/permissions.ts). */
export const MIRROR_READ_PERMISSION = 'storage:rbd:read';

/** What both sites answered about a mirrored VM's images, read at one time. */
export interface Observation {
  readonly at: Date;
  readonly images: ImageStatusView[];
  readonly rpoSeconds: number | undefined;
  /** The oldest of the disks' last mirrored snapshots ('' when some disk has none yet). */
  readonly lastMirroredSnapshotAt: string | null;
  readonly splitBrain: boolean;
  readonly health: MirrorHealth;
  /** Which sites answered. */
  readonly reachable: Readonly<Record<Side, boolean>>;
}

/**
 * Reads the mirroring of a VM's images at both its sites (GetMirrorStatus, in parallel, the
 * remotes' own timeouts bounding a dead site) and derives what the API, the metrics and the DR
 * tasks need: per-image state, lag, split brain, and the VM's RPO computed here, by the manager's
 * clock — not trusted from either cluster.
 */
@Injectable()
export class ReplicationStatusService {
  constructor(
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly clock: ClockRepository,
  ) {}

  async observe(
    record: VmReplicationEntity,
    credentials: Partial<Record<string, string | null>> = {},
  ): Promise<Observation> {
    const sides: Side[] = ['source', 'target'];
    const answers = await Promise.all(
      sides.map(async (side) => {
        const remote = side === 'source' ? record.sourceRemote : record.targetRemote;
        const pool = (disk: { pool: string }) =>
          side === 'source' ? disk.pool : mapPool(record, disk.pool);
        let connection;
        try {
          connection = await this.remotes.connectionFor(
            remote,
            credentials[remote] ?? null,
            MIRROR_READ_PERMISSION,
          );
        } catch (error) {
          return record.disks.map(() => failed(remote, '', error));
        }
        return Promise.all(
          record.disks.map(async (disk) => {
            try {
              return siteView(
                remote,
                pool(disk),
                await this.agents.getMirrorStatus(connection, {
                  pool: pool(disk),
                  image: disk.image,
                }),
              );
            } catch (error) {
              return failed(remote, pool(disk), error);
            }
          }),
        );
      }),
    );
    const now = this.clock.now();
    const primary = primarySide(record);
    const images = record.disks.map((disk, index): ImageStatusView => {
      const source = answers[0][index];
      const target = answers[1][index];
      return imageStatus(
        disk.image,
        disk.pool,
        mapPool(record, disk.pool),
        primary === 'source' ? [source, target] : [target, source],
        [source, target],
      );
    });
    const lastMirrored = images.map((image) =>
      image.sites.some((site) => site.reachable) ? image.lastMirroredSnapshotAt : undefined,
    );
    const rpo = rpoSeconds(now, lastMirrored, record.createdAt);
    const oldest = lastMirrored.every((value) => typeof value === 'string' && value !== '')
      ? (lastMirrored as string[]).reduce((a, b) => (Date.parse(a) <= Date.parse(b) ? a : b))
      : null;
    const splitBrain = images.some((image) => image.splitBrain);
    const reachable = {
      source: answers[0].every((site) => site.reachable),
      target: answers[1].every((site) => site.reachable),
    };
    return {
      at: now,
      images,
      rpoSeconds: rpo,
      lastMirroredSnapshotAt: oldest,
      splitBrain,
      health: healthOf(images, splitBrain),
      reachable,
    };
  }
}

/** The target's pool of a source pool (the pair maps one to the other). */
export function mapPool(
  record: Pick<VmReplicationEntity, 'sourcePool' | 'targetPool'>,
  sourcePool: string,
): string {
  return sourcePool === record.sourcePool ? record.targetPool : sourcePool;
}

function siteView(remote: string, pool: string, status: MirrorStatus__Output): ImageSiteView {
  return {
    remote,
    pool,
    reachable: true,
    error: null,
    primary: status.enabled ? status.primary : null,
    state: status.state || (status.enabled ? 'unknown' : 'disabled'),
    description: status.description,
    lastMirroredSnapshotAt: status.lastMirroredSnapshotAt || null,
    lastSnapshotAt: status.lastSnapshotAt || null,
    bytesPerSecond: status.bytesPerSecond,
    secondsUntilSynced: status.secondsUntilSynced,
    splitBrain: status.splitBrain,
  };
}

function failed(remote: string, pool: string, error: unknown): ImageSiteView {
  return {
    remote,
    pool,
    reachable: false,
    error:
      error instanceof DomainError
        ? error.message
        : 'the remote did not answer (see the manager log)',
    primary: null,
    state: 'down+unknown',
    description: '',
    lastMirroredSnapshotAt: null,
    lastSnapshotAt: null,
    bytesPerSecond: 0,
    secondsUntilSynced: 0,
    splitBrain: false,
  };
}

/** One image at both sites: `ordered` is [primary site, other site] by the DR record; `sites` as shown (source, target). */
function imageStatus(
  image: string,
  sourcePool: string,
  targetPool: string,
  ordered: [ImageSiteView, ImageSiteView],
  sites: ImageSiteView[],
): ImageStatusView {
  const [primary, secondary] = ordered;
  // The newest snapshot the secondary holds completely: the primary's view of it, else the secondary's own.
  const lastMirrored =
    primary.lastMirroredSnapshotAt ?? secondary.lastMirroredSnapshotAt ?? secondary.lastSnapshotAt;
  const lag =
    primary.lastSnapshotAt && lastMirrored
      ? Math.max(
          0,
          Math.round((Date.parse(primary.lastSnapshotAt) - Date.parse(lastMirrored)) / 1000),
        )
      : null;
  const splitBrain =
    sites.some((site) => site.splitBrain) ||
    (primary.primary === true && secondary.primary === true);
  return {
    image,
    sourcePool,
    targetPool,
    sites,
    lastMirroredSnapshotAt: lastMirrored,
    lagSeconds: lag === null || Number.isNaN(lag) ? null : lag,
    bytesPerSecond: Math.max(primary.bytesPerSecond, secondary.bytesPerSecond),
    secondsUntilSynced: Math.max(primary.secondsUntilSynced, secondary.secondsUntilSynced),
    splitBrain,
  };
}

function healthOf(images: readonly ImageStatusView[], splitBrain: boolean): MirrorHealth {
  if (splitBrain) return 'split-brain';
  const states = images.flatMap((image) => image.sites.map((site) => site.state));
  if (states.some((state) => state.includes('error'))) return 'error';
  if (images.some((image) => image.sites.some((site) => !site.reachable))) return 'unknown';
  if (
    images.some(
      (image) =>
        image.secondsUntilSynced > 0 || image.sites.some((site) => /sync/.test(site.state)),
    )
  )
    return 'syncing';
  return 'ok';
}
