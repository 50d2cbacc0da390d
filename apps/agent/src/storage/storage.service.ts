import { uuidSchema } from '@debvisor/common';
import type {
  FenceImageResponse,
  MirrorStatus,
  PeerBootstrap,
  PoolMirrorStatus,
  RbdImage as ProtoRbdImage,
  RbdSnapshot,
} from '@debvisor/proto';
import type { ImageMirrorStatus, ImageRef, StorageDriver } from '../drivers/storage.driver';
import type { CallContext } from '../rpc/call-context';
import { RPC_PERMISSIONS } from '../rpc/permissions';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Logger } from '../shared/logger';
import { busy, type OperationLocks } from '../shared/operation-locks';
import type { VmService } from '../vms/vm.service';
import { toProtoMirrorStatus, toProtoPoolMirrorStatus, toProtoSnapshot } from './storage.mapper';
import type {
  EnableMirroringInput,
  ImageRefInput,
  ImageSnapshotInput,
  ImportPeerBootstrapInput,
  PoolMirrorInput,
} from './storage.requests';

/** Ceph's default pool, used when a request names none. */
export const DEFAULT_POOL = 'rbd';

export interface StorageServiceDeps {
  clusterId: string;
  nodeId: string;
  driver: StorageDriver;
  /** The VM that holds an image, wherever in the cluster it runs (its runtime names the operation holding it). */
  vms: Pick<VmService, 'get'>;
  /** Keys "pool/image": one operation at a time per image on this agent. */
  imageLocks: OperationLocks;
  logger: Logger;
}

/**
 * Image-level storage calls: any agent of the cluster answers them (the storage is shared). A
 * changing call holds the image for its duration (a second one is refused, naming the first) and
 * is refused while the VM using the image is held by a migration or another operation. Fencing is
 * never refused that way: it is what a failover does when the VM's site is gone.
 */
export class StorageService {
  constructor(private readonly deps: StorageServiceDeps) {}

  async listImages(pool: string): Promise<ProtoRbdImage[]> {
    return this.deps.driver.listImages(pool || DEFAULT_POOL);
  }

  snapshotImage(input: ImageSnapshotInput, context: CallContext): Promise<RbdSnapshot> {
    const ref = refOf(input);
    return this.changing(ref, 'snapshot', context, async () => {
      const [taken] = await this.deps.driver.createSnapshot([ref], input.snapshot);
      if (!taken)
        throw new AgentError(
          ErrorCode.Internal,
          `the storage driver answered no snapshot for ${label(ref)}`,
        );
      return toProtoSnapshot(taken);
    });
  }

  async listSnapshots(input: ImageRefInput): Promise<RbdSnapshot[]> {
    return (await this.deps.driver.listSnapshots(refOf(input))).map(toProtoSnapshot);
  }

  /** Rolls an image back; refused while any VM holds it (a running VM would see its disk change under it). */
  rollbackImage(input: ImageSnapshotInput, context: CallContext): Promise<RbdSnapshot> {
    const ref = refOf(input);
    return this.changing(ref, 'rollback', context, async () => {
      const holder = await this.deps.driver.imageHolder(ref);
      if (holder)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `image ${label(ref)} is in use by VM ${holder}; stop the VM before rolling its disk back`,
        );
      const snapshot = (await this.deps.driver.listSnapshots(ref)).find(
        (s) => s.snapshot === input.snapshot,
      );
      if (!snapshot)
        throw new AgentError(
          ErrorCode.NotFound,
          `image ${label(ref)} has no snapshot ${input.snapshot}`,
        );
      await this.deps.driver.rollbackSnapshot([ref], input.snapshot);
      return toProtoSnapshot(snapshot);
    });
  }

  enableMirroring(input: EnableMirroringInput, context: CallContext): Promise<MirrorStatus> {
    const ref = refOf(input);
    return this.mirroring(ref, 'mirroring', context, () =>
      this.deps.driver.enableMirroring(ref, input.scheduleInterval),
    );
  }

  disableMirroring(
    input: ImageRefInput & { force: boolean },
    context: CallContext,
  ): Promise<MirrorStatus> {
    const ref = refOf(input);
    return this.mirroring(ref, 'mirroring', context, () =>
      this.deps.driver.disableMirroring(ref, input.force),
    );
  }

  async mirrorStatus(input: ImageRefInput): Promise<MirrorStatus> {
    return toProtoMirrorStatus(await this.deps.driver.mirrorStatus(refOf(input)));
  }

  createMirrorSnapshot(input: ImageRefInput, context: CallContext): Promise<MirrorStatus> {
    const ref = refOf(input);
    return this.mirroring(ref, 'mirror-snapshot', context, () =>
      this.deps.driver.createMirrorSnapshot(ref),
    );
  }

  promote(input: ImageRefInput & { force: boolean }, context: CallContext): Promise<MirrorStatus> {
    const ref = refOf(input);
    return this.mirroring(ref, 'promote', context, () =>
      this.deps.driver.promote(ref, input.force),
    );
  }

  demote(input: ImageRefInput, context: CallContext): Promise<MirrorStatus> {
    const ref = refOf(input);
    return this.mirroring(ref, 'demote', context, () => this.deps.driver.demote(ref));
  }

  resync(input: ImageRefInput, context: CallContext): Promise<MirrorStatus> {
    const ref = refOf(input);
    return this.mirroring(ref, 'resync', context, () => this.deps.driver.resync(ref));
  }

  /** The pool's peer bootstrap token: a secret, answered to the caller and nowhere else (never logged). */
  async createPeerBootstrap(input: PoolMirrorInput): Promise<PeerBootstrap> {
    const siteName = input.siteName || this.deps.clusterId;
    return {
      token: await this.deps.driver.createPeerBootstrap(input.pool || DEFAULT_POOL, siteName),
      siteName,
    };
  }

  async importPeerBootstrap(input: ImportPeerBootstrapInput): Promise<PoolMirrorStatus> {
    const status = await this.deps.driver.importPeerBootstrap(
      input.pool || DEFAULT_POOL,
      input.siteName || this.deps.clusterId,
      input.token,
      input.direction || 'rx-tx',
    );
    return toProtoPoolMirrorStatus(status);
  }

  async poolMirrorStatus(input: PoolMirrorInput): Promise<PoolMirrorStatus> {
    return toProtoPoolMirrorStatus(
      await this.deps.driver.poolMirrorStatus(input.pool || DEFAULT_POOL),
    );
  }

  /** Blocklists the image's clients and breaks its locks, without asking the VM's node (it may be gone). */
  async fenceImage(input: ImageRefInput): Promise<FenceImageResponse> {
    const ref = refOf(input);
    const release = this.deps.imageLocks.hold(label(ref), 'fence', label(ref));
    try {
      const result = await this.deps.driver.fenceImage(ref);
      this.deps.logger.warn(
        { image: label(ref), blocklisted: result.blocklisted, locksBroken: result.locksBroken },
        'image fenced',
      );
      return { blocklisted: result.blocklisted, locksBroken: result.locksBroken };
    } finally {
      release();
    }
  }

  private async mirroring(
    ref: ImageRef,
    operation: string,
    context: CallContext,
    run: () => Promise<ImageMirrorStatus>,
  ): Promise<MirrorStatus> {
    return this.changing(ref, operation, context, async () => toProtoMirrorStatus(await run()));
  }

  /** Runs a changing call holding the image, once no operation holds the VM using it. */
  private async changing<T>(
    ref: ImageRef,
    operation: string,
    context: CallContext,
    run: () => Promise<T>,
  ): Promise<T> {
    const release = this.deps.imageLocks.hold(label(ref), operation, label(ref));
    try {
      await this.refuseWhileVmHeld(ref, context);
      return await run();
    } finally {
      release();
    }
  }

  /**
   * Refuses when the VM holding the image is held by an operation (a migration, a VM snapshot, a
   * power operation). A VM whose node cannot be asked is not held by anything that could finish.
   */
  private async refuseWhileVmHeld(ref: ImageRef, context: CallContext): Promise<void> {
    const holder = await this.deps.driver.imageHolder(ref);
    if (!holder || !uuidSchema.safeParse(holder).success) return;
    const vm = await this.deps.vms.get(holder, this.asAgent(context)).catch((error: unknown) => {
      if (
        error instanceof AgentError &&
        [ErrorCode.NotFound, ErrorCode.Unavailable, ErrorCode.DeadlineExceeded].includes(error.code)
      )
        return undefined;
      throw error;
    });
    const lockedBy = vm?.runtime?.lockedBy;
    if (lockedBy)
      throw busy('VM', `${vm.spec?.name ?? holder} (using image ${label(ref)})`, lockedBy);
  }

  /**
   * The agent itself looking up a VM's state for a check of its own: the caller may hold storage
   * rights only, and the answer never reaches the caller beyond the refusal it explains.
   */
  private asAgent(context: CallContext): CallContext {
    return {
      ...context,
      caller: {
        principal: `agent:${this.deps.nodeId}`,
        permissions: [RPC_PERMISSIONS['VmService.GetVm']],
      },
    };
  }
}

export function refOf(input: ImageRefInput): ImageRef {
  return { pool: input.pool || DEFAULT_POOL, image: input.image };
}

/** "pool/image": how messages and the image locks name an image. */
export function label(ref: ImageRef): string {
  return `${ref.pool}/${ref.image}`;
}
