import type {
  DeleteVmSnapshotResponse,
  ListVmSnapshotsResponse,
  VmSnapshot,
} from '@debvisor/proto';
import type { HypervisorDriver, VmInstance } from '../drivers/hypervisor.driver';
import type { ImageRef, ImageSnapshot, StorageDriver } from '../drivers/storage.driver';
import type { RegistryService } from '../registry/registry.service';
import type { CallContext } from '../rpc/call-context';
import type { PeerClientRepository, PeerTarget } from '../rpc/peer-client.repository';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import { busy, type OperationLocks, type Release } from '../shared/operation-locks';
import type { VmIndexRepository } from '../vms/vm-index.repository';
import { PEER_OPERATION_TIMEOUT_MS, peerTimeout } from '../vms/vm.service';
import { toProtoSnapshot } from './storage.mapper';
import type { SnapshotVmInput, VmSnapshotRefInput } from './storage.requests';
import { label } from './storage.service';
import type { VmSnapshotRecord, VmSnapshotRepository } from './vm-snapshot.repository';

/** How long a snapshot waits for the guest agent to freeze the guest's filesystems. */
export const FREEZE_TIMEOUT_MS = 10_000;
/** Deadline of a forwarded ListVmSnapshots when the caller set none (a storage listing per disk). */
const PEER_LIST_SNAPSHOTS_TIMEOUT_MS = 30_000;

export interface VmSnapshotServiceDeps {
  nodeId: string;
  hypervisor: Pick<HypervisorDriver, 'get' | 'freezeFilesystems' | 'thawFilesystems'>;
  storage: Pick<
    StorageDriver,
    'createSnapshot' | 'listSnapshots' | 'removeSnapshot' | 'rollbackSnapshot' | 'imageHolder'
  >;
  records: Pick<VmSnapshotRepository, 'list' | 'put' | 'remove'>;
  index: Pick<VmIndexRepository, 'get'>;
  registry: Pick<RegistryService, 'find'>;
  peers: Pick<PeerClientRepository, 'storageCall'>;
  /** Keys: VM uuids (shared with VM power operations and migrations on this node). */
  vmLocks: OperationLocks;
  /** Keys: "pool/image" (shared with the image-level calls). */
  imageLocks: OperationLocks;
  clock: Clock;
  logger: Logger;
  freezeTimeoutMs?: number;
}

/**
 * A VM's snapshots: all its disks at one point (one group snapshot when it has several). Answered
 * by the VM's node — it can freeze the guest — and forwarded there from any other agent, like VM
 * power calls. Each call holds the VM and its disks for its duration, and is refused while a
 * migration or another operation holds the VM.
 */
export class VmSnapshotService {
  constructor(private readonly deps: VmSnapshotServiceDeps) {}

  snapshot(input: SnapshotVmInput, context: CallContext): Promise<VmSnapshot> {
    return this.onOwner(
      input.vmUuid,
      context,
      (vm) => this.take(vm, input),
      (target) =>
        this.deps.peers.storageCall(
          target,
          'SnapshotVm',
          input,
          context,
          peerTimeout(context, PEER_OPERATION_TIMEOUT_MS),
        ),
    );
  }

  list(uuid: string, context: CallContext): Promise<ListVmSnapshotsResponse> {
    return this.onOwner(
      uuid,
      context,
      async (vm) => ({ snapshots: await this.snapshotsOf(vm) }),
      (target) =>
        this.deps.peers.storageCall(
          target,
          'ListVmSnapshots',
          { uuid },
          context,
          peerTimeout(context, PEER_LIST_SNAPSHOTS_TIMEOUT_MS),
        ),
    );
  }

  delete(ref: VmSnapshotRefInput, context: CallContext): Promise<DeleteVmSnapshotResponse> {
    return this.onOwner(
      ref.vmUuid,
      context,
      (vm) => this.remove(vm, ref.snapshot),
      (target) =>
        this.deps.peers.storageCall(
          target,
          'DeleteVmSnapshot',
          ref,
          context,
          peerTimeout(context, PEER_OPERATION_TIMEOUT_MS),
        ),
    );
  }

  rollback(ref: VmSnapshotRefInput, context: CallContext): Promise<VmSnapshot> {
    return this.onOwner(
      ref.vmUuid,
      context,
      (vm) => this.rollBack(vm, ref.snapshot),
      (target) =>
        this.deps.peers.storageCall(
          target,
          'RollbackVm',
          ref,
          context,
          peerTimeout(context, PEER_OPERATION_TIMEOUT_MS),
        ),
    );
  }

  private async take(vm: VmInstance, input: SnapshotVmInput): Promise<VmSnapshot> {
    const disks = disksOf(vm);
    if (disks.length === 0)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `VM ${vm.spec.name} has no disks to snapshot`,
      );
    return this.holding(vm, disks, 'snapshot', async (current) => {
      const { state } = current.runtime;
      let consistency: Pick<VmSnapshotRecord, 'consistency' | 'consistencyReason'>;
      let taken: ImageSnapshot[];
      if (input.freeze && state === 'running') {
        const timeoutMs = this.deps.freezeTimeoutMs ?? FREEZE_TIMEOUT_MS;
        try {
          const freeze = await this.deps.hypervisor
            .freezeFilesystems(vm.spec.uuid, timeoutMs)
            .catch((error: unknown) => ({
              frozen: false,
              reason: `freezing failed: ${error instanceof AgentError ? error.message : 'the hypervisor driver failed'}`,
            }));
          consistency = freeze.frozen
            ? { consistency: 'application', consistencyReason: '' }
            : { consistency: 'crash', consistencyReason: freeze.reason };
          taken = await this.deps.storage.createSnapshot(disks, input.snapshot);
        } finally {
          // Always, also after a freeze that failed or timed out: the guest may have frozen late.
          await this.deps.hypervisor
            .thawFilesystems(vm.spec.uuid)
            .catch((error: unknown) =>
              this.deps.logger.error(
                { err: error, vm: vm.spec.uuid },
                'could not thaw the guest filesystems; check the guest',
              ),
            );
        }
      } else {
        consistency = {
          consistency: 'crash',
          consistencyReason:
            state !== 'running'
              ? `the VM was ${state}: no guest to freeze`
              : 'freezing the guest filesystems was not asked for',
        };
        taken = await this.deps.storage.createSnapshot(disks, input.snapshot);
      }
      const record: VmSnapshotRecord = {
        ...consistency,
        group: disks.length > 1,
        createdAt: earliest(taken) ?? this.deps.clock.now().toISOString(),
      };
      await this.deps.records.put(vm.spec.uuid, input.snapshot, record).catch((error: unknown) =>
        // The snapshot exists; without its record it lists as crash-consistent, which errs on the safe side.
        this.deps.logger.warn(
          { err: error, vm: vm.spec.uuid, snapshot: input.snapshot },
          'could not record how the VM snapshot was taken',
        ),
      );
      return toProtoVmSnapshot(vm.spec.uuid, input.snapshot, record, taken);
    });
  }

  /** The VM's snapshots: the names every one of its disks has, oldest first. */
  private async snapshotsOf(vm: VmInstance): Promise<VmSnapshot[]> {
    const disks = disksOf(vm);
    if (disks.length === 0) return [];
    const [perDisk, records] = await Promise.all([
      Promise.all(disks.map((disk) => this.deps.storage.listSnapshots(disk))),
      this.deps.records.list(vm.spec.uuid),
    ]);
    const byName = new Map<string, ImageSnapshot[]>();
    for (const snapshots of perDisk)
      for (const snapshot of snapshots)
        byName.set(snapshot.snapshot, [...(byName.get(snapshot.snapshot) ?? []), snapshot]);
    return [...byName]
      .filter(([, snapshots]) => new Set(snapshots.map(label)).size === disks.length)
      .map(([name, snapshots]) =>
        toProtoVmSnapshot(
          vm.spec.uuid,
          name,
          records.get(name) ?? unrecorded(snapshots, disks.length),
          orderedAs(disks, snapshots),
        ),
      )
      .sort(
        (a, b) =>
          a.createdAt!.localeCompare(b.createdAt!) || a.snapshot!.localeCompare(b.snapshot!),
      );
  }

  private async remove(vm: VmInstance, snapshot: string): Promise<DeleteVmSnapshotResponse> {
    const disks = disksOf(vm);
    return this.holding(vm, disks, 'snapshot-delete', async () => {
      const having = await this.disksHaving(disks, snapshot);
      if (having.length === 0)
        throw new AgentError(ErrorCode.NotFound, `VM ${vm.spec.name} has no snapshot ${snapshot}`);
      await this.deps.storage.removeSnapshot(having, snapshot);
      await this.deps.records.remove(vm.spec.uuid, snapshot);
      return { deleted: true };
    });
  }

  private async rollBack(vm: VmInstance, snapshot: string): Promise<VmSnapshot> {
    const disks = disksOf(vm);
    return this.holding(vm, disks, 'rollback', async (current) => {
      const { state } = current.runtime;
      if (state !== 'stopped' && state !== 'crashed') {
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `VM ${vm.spec.name} is ${state}; stop it first: only a stopped VM can be rolled back to a snapshot`,
        );
      }
      const found = (await this.snapshotsOf(current)).find((s) => s.snapshot === snapshot);
      if (!found) {
        const having = await this.disksHaving(disks, snapshot);
        if (having.length === 0)
          throw new AgentError(
            ErrorCode.NotFound,
            `VM ${vm.spec.name} has no snapshot ${snapshot}`,
          );
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `snapshot ${snapshot} covers only ${having.map(label).join(', ')} of VM ${vm.spec.name}'s disks; it cannot restore the VM`,
        );
      }
      for (const disk of disks) {
        const holder = await this.deps.storage.imageHolder(disk);
        if (holder && holder !== vm.spec.uuid)
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            `image ${label(disk)} is in use by VM ${holder}; stop that VM first`,
          );
      }
      await this.deps.storage.rollbackSnapshot(disks, snapshot);
      this.deps.logger.info({ vm: vm.spec.uuid, snapshot }, 'VM rolled back to a snapshot');
      return found;
    });
  }

  private async disksHaving(disks: ImageRef[], snapshot: string): Promise<ImageRef[]> {
    const lists = await Promise.all(disks.map((disk) => this.deps.storage.listSnapshots(disk)));
    return disks.filter((_, i) => lists[i].some((s) => s.snapshot === snapshot));
  }

  /**
   * Runs `task` holding the VM and its disks on this node, once neither this agent nor the
   * hypervisor has another operation on the VM; `task` gets the VM as it is under the hold.
   */
  private async holding<T>(
    vm: VmInstance,
    disks: ImageRef[],
    operation: string,
    task: (current: VmInstance) => Promise<T>,
  ): Promise<T> {
    const { uuid, name } = vm.spec;
    const releases: Release[] = [this.deps.vmLocks.hold(uuid, operation, name)];
    try {
      releases.push(this.deps.imageLocks.holdAll(disks.map(label), operation));
      const current = await this.deps.hypervisor.get(uuid);
      if (!current)
        throw new AgentError(ErrorCode.NotFound, `VM ${uuid} left node ${this.deps.nodeId}`);
      if (current.runtime.lockedBy) throw busy('VM', name, current.runtime.lockedBy);
      if (current.runtime.state === 'migrating') throw busy('VM', name, 'migration');
      return await task(current);
    } finally {
      for (const release of releases.reverse()) release();
    }
  }

  private async onOwner<T>(
    uuid: string,
    context: CallContext,
    local: (vm: VmInstance) => Promise<T>,
    remote: (target: PeerTarget) => Promise<T>,
  ): Promise<T> {
    const vm = await this.deps.hypervisor.get(uuid);
    if (vm) return local(vm);
    if (context.forwarded) throw notFound(uuid);
    const location = await this.deps.index.get(uuid);
    if (!location || location.nodeId === this.deps.nodeId) throw notFound(uuid);
    const node = await this.deps.registry.find(location.nodeId);
    if (!node?.alive)
      throw new AgentError(
        ErrorCode.Unavailable,
        `VM ${uuid} is on node ${location.nodeId}, which is not alive`,
      );
    return remote({ nodeId: node.info.nodeId, endpoint: node.info.agentEndpoint });
  }
}

function disksOf(vm: VmInstance): ImageRef[] {
  return vm.spec.disks.map((disk) => ({ pool: disk.pool, image: disk.image }));
}

function earliest(snapshots: ImageSnapshot[]): string | undefined {
  return snapshots.map((s) => s.createdAt).sort()[0];
}

/** A snapshot this cluster's agents did not record (taken by hand, or arrived by mirroring): nothing proves it was frozen. */
function unrecorded(snapshots: ImageSnapshot[], disks: number): VmSnapshotRecord {
  return {
    consistency: 'crash',
    consistencyReason: 'no record of a guest freeze for this snapshot',
    group: disks > 1,
    createdAt: earliest(snapshots) ?? '',
  };
}

function orderedAs(disks: ImageRef[], snapshots: ImageSnapshot[]): ImageSnapshot[] {
  return disks.flatMap((disk) =>
    snapshots.filter((s) => s.pool === disk.pool && s.image === disk.image).slice(0, 1),
  );
}

function toProtoVmSnapshot(
  uuid: string,
  snapshot: string,
  record: VmSnapshotRecord,
  disks: ImageSnapshot[],
): VmSnapshot {
  return {
    vmUuid: uuid,
    snapshot,
    createdAt: record.createdAt,
    consistency: record.consistency,
    consistencyReason: record.consistencyReason,
    group: record.group,
    disks: disks.map(toProtoSnapshot),
  };
}

function notFound(uuid: string): AgentError {
  return new AgentError(ErrorCode.NotFound, `no VM with uuid ${uuid} in this cluster`);
}
