import type { StorageServiceHandlers } from '@debvisor/proto';
import type { RpcRouter } from '../rpc/rpc-router';
import type { StorageService } from './storage.service';
import {
  disableMirroringRequestSchema,
  enableMirroringRequestSchema,
  imageRefSchema,
  imageSnapshotRequestSchema,
  importPeerBootstrapRequestSchema,
  listImagesRequestSchema,
  poolMirrorRequestSchema,
  promoteImageRequestSchema,
  snapshotVmRequestSchema,
  vmRefSchema,
  vmSnapshotRefSchema,
} from './storage.requests';
import type { VmSnapshotService } from './vm-snapshot.service';

export function storageServiceHandlers(
  rpc: RpcRouter,
  storage: StorageService,
  vmSnapshots: VmSnapshotService,
): StorageServiceHandlers {
  return {
    ListImages: rpc.unary(
      'StorageService.ListImages',
      listImagesRequestSchema,
      async ({ pool }) => ({ images: await storage.listImages(pool) }),
    ),
    SnapshotRbd: rpc.unary(
      'StorageService.SnapshotRbd',
      imageSnapshotRequestSchema,
      (input, context) => storage.snapshotImage(input, context),
    ),
    ListSnapshots: rpc.unary('StorageService.ListSnapshots', imageRefSchema, async (input) => ({
      snapshots: await storage.listSnapshots(input),
    })),
    RollbackRbd: rpc.unary(
      'StorageService.RollbackRbd',
      imageSnapshotRequestSchema,
      (input, context) => storage.rollbackImage(input, context),
    ),
    SnapshotVm: rpc.unary('StorageService.SnapshotVm', snapshotVmRequestSchema, (input, context) =>
      vmSnapshots.snapshot(input, context),
    ),
    ListVmSnapshots: rpc.unary('StorageService.ListVmSnapshots', vmRefSchema, ({ uuid }, context) =>
      vmSnapshots.list(uuid, context),
    ),
    DeleteVmSnapshot: rpc.unary(
      'StorageService.DeleteVmSnapshot',
      vmSnapshotRefSchema,
      (input, context) => vmSnapshots.delete(input, context),
    ),
    RollbackVm: rpc.unary('StorageService.RollbackVm', vmSnapshotRefSchema, (input, context) =>
      vmSnapshots.rollback(input, context),
    ),
    EnableMirroring: rpc.unary(
      'StorageService.EnableMirroring',
      enableMirroringRequestSchema,
      (input, context) => storage.enableMirroring(input, context),
    ),
    DisableMirroring: rpc.unary(
      'StorageService.DisableMirroring',
      disableMirroringRequestSchema,
      (input, context) => storage.disableMirroring(input, context),
    ),
    GetMirrorStatus: rpc.unary('StorageService.GetMirrorStatus', imageRefSchema, (input) =>
      storage.mirrorStatus(input),
    ),
    CreateMirrorSnapshot: rpc.unary(
      'StorageService.CreateMirrorSnapshot',
      imageRefSchema,
      (input, context) => storage.createMirrorSnapshot(input, context),
    ),
    PromoteImage: rpc.unary(
      'StorageService.PromoteImage',
      promoteImageRequestSchema,
      (input, context) => storage.promote(input, context),
    ),
    DemoteImage: rpc.unary('StorageService.DemoteImage', imageRefSchema, (input, context) =>
      storage.demote(input, context),
    ),
    ResyncImage: rpc.unary('StorageService.ResyncImage', imageRefSchema, (input, context) =>
      storage.resync(input, context),
    ),
    CreatePeerBootstrap: rpc.unary(
      'StorageService.CreatePeerBootstrap',
      poolMirrorRequestSchema,
      (input) => storage.createPeerBootstrap(input),
    ),
    ImportPeerBootstrap: rpc.unary(
      'StorageService.ImportPeerBootstrap',
      importPeerBootstrapRequestSchema,
      (input) => storage.importPeerBootstrap(input),
    ),
    GetPoolMirrorStatus: rpc.unary(
      'StorageService.GetPoolMirrorStatus',
      poolMirrorRequestSchema,
      (input) => storage.poolMirrorStatus(input),
    ),
    FenceImage: rpc.unary('StorageService.FenceImage', imageRefSchema, (input) =>
      storage.fenceImage(input),
    ),
  };
}
