import { z } from 'zod';
import type { VmDefinition } from '../drivers/hypervisor.driver';
import type { ImageRef, StorageDriver } from '../drivers/storage.driver';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { VmDiskLocks } from '../vms/vm-disk-locks';

/** How often a promotion that waits for the demotion snapshot to arrive (or a wait for the final snapshot) is tried again. */
const RETRY_MS = 200;

/** The source's final mirror snapshot of the VM's disk `index` (of its definition), and when it was taken. */
export interface FinalSnapshot {
  index: number;
  takenAt: string;
}

/** The source's final snapshots as the target reads them off the tunnel. */
export const finalSnapshotsSchema = z
  .array(z.strictObject({ index: z.int().min(0).max(255), takenAt: z.iso.datetime() }))
  .min(1)
  .max(256);

export interface MirroredDisksDeps {
  storage: Pick<StorageDriver, 'mirrorStatus' | 'demote' | 'promote' | 'createMirrorSnapshot'>;
  disks: Pick<VmDiskLocks, 'lock' | 'unlock'>;
  clock: Clock;
  /**
   * How long a promotion waits for the peer's demotion snapshot, and the target's mirrors for the
   * source's final mirror snapshot (migration.mirrorHandoverTimeoutSeconds).
   */
  timeoutMs: number;
  logger: Logger;
}

/**
 * A VM's mirrored disks changing sides when the VM moves to the other cluster, at the switchover
 * (the VM paused or stopped at the source, so its disks are final): the source lets go of them and
 * demotes them — the demotion snapshot carries their last content — and the target promotes its
 * mirrors once rbd-mirror has replayed that snapshot. Nothing written at the source is lost, and
 * the image is primary at one site at a time. Either side undoes its step when the move fails.
 */
export class MirroredDisks {
  constructor(private readonly deps: MirroredDisksDeps) {}

  /** migration.mirrorHandoverTimeoutSeconds, in ms. */
  get timeoutMs(): number {
    return this.deps.timeoutMs;
  }

  /**
   * Source, the VM paused (its disks final) and still primary here: a last mirror snapshot of every
   * disk, at once; answers when each was taken, for the target to wait until its mirrors hold them.
   * A disk that is not mirrored (or not primary here) fails the switchover: across clusters the VM
   * runs only on mirrors. Demoting only once they hold the data keeps the time in which the disks
   * are primary nowhere short, and a mirror too slow to catch up fails before anything changed.
   */
  async finalSnapshots(spec: VmDefinition): Promise<FinalSnapshot[]> {
    const taken = await Promise.all(
      spec.disks.map(async ({ pool, image }, index) => ({
        index,
        takenAt: (await this.deps.storage.createMirrorSnapshot({ pool, image })).lastSnapshotAt,
      })),
    );
    // A driver that cannot tell when its snapshot was taken leaves the wait to the promotion.
    return taken.filter((snapshot) => snapshot.takenAt !== '');
  }

  /**
   * Target: waits until the mirror of each disk named holds the source's final snapshot (its newest
   * complete mirror snapshot is that one or newer), at most timeoutMs; tells `progress` how far
   * they are whenever that changes. Answers the mirrors (all non-primary here).
   */
  async waitReplayed(
    spec: VmDefinition,
    snapshots: readonly FinalSnapshot[],
    progress: (message: string) => void,
  ): Promise<ImageRef[]> {
    const refs = snapshots.map(({ index, takenAt }) => {
      const disk = spec.disks[index];
      if (!disk) throw new AgentError(ErrorCode.InvalidArgument, `the VM has no disk ${index}`);
      return { ref: { pool: disk.pool, image: disk.image }, takenAt };
    });
    const deadline = this.deps.clock.now().getTime() + this.deps.timeoutMs;
    let told = '';
    for (;;) {
      const statuses = await Promise.all(
        refs.map(async ({ ref, takenAt }) => ({
          ref,
          takenAt,
          status: await this.deps.storage.mirrorStatus(ref),
        })),
      );
      const primary = statuses.find(({ status }) => status.primary);
      if (primary)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `image ${primary.ref.pool}/${primary.ref.image} is primary here as well; resolve the split brain before moving the VM`,
        );
      const behind = statuses.filter(
        ({ takenAt, status }) =>
          status.lastMirroredSnapshotAt === '' || status.lastMirroredSnapshotAt < takenAt,
      );
      if (behind.length === 0) return refs.map(({ ref }) => ref);
      const states = behind
        .map(
          ({ ref, status }) =>
            `${ref.pool}/${ref.image} ${status.state}${status.secondsUntilSynced > 0 ? `, about ${status.secondsUntilSynced} s to go` : ''}`,
        )
        .join('; ');
      if (this.deps.clock.now().getTime() >= deadline) {
        throw new AgentError(
          ErrorCode.DeadlineExceeded,
          `the disks' mirrors here did not receive the final mirror snapshot within ${this.deps.timeoutMs / 1000} s (${states})`,
        );
      }
      const message = `waiting for ${behind.length} of ${refs.length} disk mirrors to hold the final mirror snapshot: ${states}`;
      if (message !== told) progress(message);
      told = message;
      await this.deps.clock.sleep(RETRY_MS);
    }
  }

  /**
   * Source: releases and demotes every disk primary here (`known`: those the caller has just seen
   * primary, which spares asking again while the VM is paused); answers those demoted (undone on failure).
   */
  async release(spec: VmDefinition, known?: readonly ImageRef[]): Promise<ImageRef[]> {
    const primary = known ?? (await this.filter(spec, (status) => status.primary));
    if (primary.length === 0) return [];
    await this.deps.disks.unlock(spec);
    const demoted: ImageRef[] = [];
    try {
      for (const disk of primary) {
        await this.deps.storage.demote(disk);
        demoted.push(disk);
      }
      return demoted;
    } catch (error) {
      await this.takeBack(spec, demoted);
      throw error;
    }
  }

  /**
   * Source, when the target could not run the VM: the disks demoted are promoted back (forced: the
   * target promoted none of them, or demoted them again before refusing, and its VM never ran, so
   * nothing was written there; Ceph refuses a planned promotion of an image whose own demotion is
   * its newest snapshot) and held again.
   */
  async takeBack(spec: VmDefinition, demoted: ImageRef[]): Promise<void> {
    for (const disk of demoted) {
      await this.deps.storage
        .promote(disk, true)
        .catch((error: unknown) =>
          this.deps.logger.error(
            { err: error, image: `${disk.pool}/${disk.image}` },
            'could not promote a disk back after a failed move; promote it by hand',
          ),
        );
    }
    if (demoted.length > 0)
      await this.deps.disks
        .lock(spec)
        .catch((error: unknown) =>
          this.deps.logger.warn({ err: error, vm: spec.uuid }, 'could not hold the disks again'),
        );
  }

  /** Target: promotes every non-primary mirror of the VM's disks once the source's demotion arrived; all or none. */
  async acquire(spec: VmDefinition, known?: readonly ImageRef[]): Promise<ImageRef[]> {
    const mirrors = known ?? (await this.filter(spec, (status) => !status.primary));
    const promoted: ImageRef[] = [];
    try {
      for (const disk of mirrors) {
        await this.promoteWhenReplayed(disk);
        promoted.push(disk);
      }
      return promoted;
    } catch (error) {
      await this.giveBack(promoted);
      throw error;
    }
  }

  /**
   * Target, when the VM could not run here after all: demotes again the mirrors it promoted, so
   * that the source may take its images back. Answers those it could not demote (then the source
   * must not promote its own: both would be primary).
   */
  async giveBack(promoted: readonly ImageRef[]): Promise<ImageRef[]> {
    const stuck: ImageRef[] = [];
    for (const disk of promoted) {
      await this.deps.storage.demote(disk).catch((undo: unknown) => {
        stuck.push(disk);
        this.deps.logger.error(
          { err: undo, image: `${disk.pool}/${disk.image}` },
          'could not demote a disk again after a failed move',
        );
      });
    }
    return stuck;
  }

  /** A planned promotion, tried again while the peer's demotion snapshot has not been replayed here. */
  private async promoteWhenReplayed(disk: ImageRef): Promise<void> {
    const deadline = this.deps.clock.now().getTime() + this.deps.timeoutMs;
    for (;;) {
      try {
        await this.deps.storage.promote(disk, false);
        return;
      } catch (error) {
        const waiting =
          error instanceof AgentError &&
          (error.code === ErrorCode.FailedPrecondition || error.code === ErrorCode.Unavailable);
        if (!waiting || this.deps.clock.now().getTime() >= deadline) {
          const reason = error instanceof AgentError ? error.message : 'the storage failed';
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            `image ${disk.pool}/${disk.image} could not be promoted within ${this.deps.timeoutMs / 1000} s: ${reason}`,
            { cause: error },
          );
        }
      }
      await this.deps.clock.sleep(RETRY_MS);
    }
  }

  private async filter(
    spec: VmDefinition,
    keep: (status: { primary: boolean }) => boolean,
  ): Promise<ImageRef[]> {
    const disks: ImageRef[] = [];
    for (const { pool, image } of spec.disks) {
      const status = await this.deps.storage.mirrorStatus({ pool, image }).catch(() => undefined);
      if (status?.enabled && keep(status)) disks.push({ pool, image });
    }
    return disks;
  }
}
