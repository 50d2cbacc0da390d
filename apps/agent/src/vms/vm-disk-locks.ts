import type { VmDefinition } from '../drivers/hypervisor.driver';
import type { ImageRef, StorageDriver } from '../drivers/storage.driver';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Logger } from '../shared/logger';
import type { VmIndexRepository } from './vm-index.repository';

/**
 * A disk is never attached to two running VMs: a VM takes the lock of every disk image (held in
 * the name of its uuid; rbd: an RBD lock, sim: in the cluster's etcd) before the hypervisor starts
 * it, and lets go when it stops. A VM that crashed keeps its locks until it starts again or an
 * operator breaks them (docs/storage.md, the stale-lock runbook). Within one cluster a migrating
 * VM keeps its uuid, so its target takes the same locks again.
 */
export class VmDiskLocks {
  constructor(
    private readonly storage: Pick<StorageDriver, 'lockImage' | 'unlockImage' | 'imageHolder'>,
    private readonly index: Pick<VmIndexRepository, 'get'>,
    private readonly logger: Logger,
  ) {}

  /** Takes every disk for the VM; all or none. FAILED_PRECONDITION naming the other VM when one holds a disk. */
  async lock(spec: VmDefinition): Promise<void> {
    const taken: ImageRef[] = [];
    try {
      for (const disk of disksOf(spec)) {
        await this.storage
          .lockImage(disk, spec.uuid)
          .catch((error: unknown) => this.inUse(spec, disk, error));
        taken.push(disk);
      }
    } catch (error) {
      await this.release(spec, taken);
      throw error;
    }
  }

  /**
   * Takes what it can of a VM that already runs (started before disk locks existed, or seeded by
   * the sim driver) and releases nothing; answers the disks another VM holds.
   */
  async claim(spec: VmDefinition): Promise<string[]> {
    const conflicts: string[] = [];
    for (const disk of disksOf(spec)) {
      await this.storage.lockImage(disk, spec.uuid).catch((error: unknown) => {
        if (!(error instanceof AgentError) || error.code !== ErrorCode.FailedPrecondition)
          throw error;
        conflicts.push(`${disk.pool}/${disk.image}`);
      });
    }
    return conflicts;
  }

  /** Lets go of every disk of the VM (a disk another VM holds is left alone). */
  async unlock(spec: VmDefinition): Promise<void> {
    await this.release(spec, disksOf(spec));
  }

  private async release(spec: VmDefinition, disks: ImageRef[]): Promise<void> {
    for (const disk of disks) {
      await this.storage.unlockImage(disk, spec.uuid).catch((error: unknown) => {
        // Another VM holds it: nothing of this VM's to release.
        if (error instanceof AgentError && error.code === ErrorCode.FailedPrecondition) return;
        this.logger.warn(
          { err: error, vm: spec.uuid, image: `${disk.pool}/${disk.image}` },
          'could not release the disk lock; it stays until broken (stale-lock runbook)',
        );
      });
    }
  }

  private async inUse(spec: VmDefinition, disk: ImageRef, error: unknown): Promise<never> {
    if (!(error instanceof AgentError) || error.code !== ErrorCode.FailedPrecondition) throw error;
    const holder = await this.storage.imageHolder(disk).catch(() => undefined);
    if (!holder || holder === spec.uuid) throw error;
    const name = (await this.index.get(holder).catch(() => undefined))?.name;
    throw new AgentError(
      ErrorCode.FailedPrecondition,
      `image ${disk.pool}/${disk.image} is in use by VM ${holder}${name ? ` (${name})` : ''}; VM ${spec.name} cannot run while another VM holds its disk (a VM that crashed keeps its locks: see the stale-lock runbook)`,
      { cause: error },
    );
  }
}

function disksOf(spec: VmDefinition): ImageRef[] {
  return spec.disks.map((disk) => ({ pool: disk.pool, image: disk.image }));
}
