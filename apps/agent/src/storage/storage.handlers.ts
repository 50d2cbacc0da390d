import { labelSchema } from '@debvisor/common';
import type { StorageServiceHandlers } from '@debvisor/proto';
import { z } from 'zod';
import { emptyOr } from '../rpc/request-validation';
import type { RpcRouter } from '../rpc/rpc-router';
import type { StorageService } from './storage.service';

const listImagesRequestSchema = z.object({ pool: emptyOr(labelSchema, 'a pool name is 1-64 letters, digits, dots, underscores and inner hyphens') });

const SNAPSHOTS = 'RBD snapshots';
const MIRRORING = 'RBD mirroring';

export function storageServiceHandlers(rpc: RpcRouter, storage: StorageService): StorageServiceHandlers {
  return {
    ListImages: rpc.unary('StorageService.ListImages', listImagesRequestSchema, async ({ pool }) => ({ images: await storage.listImages(pool) })),
    SnapshotRbd: rpc.unimplemented('StorageService.SnapshotRbd', SNAPSHOTS),
    ListSnapshots: rpc.unimplemented('StorageService.ListSnapshots', SNAPSHOTS),
    RollbackRbd: rpc.unimplemented('StorageService.RollbackRbd', SNAPSHOTS),
    EnableMirroring: rpc.unimplemented('StorageService.EnableMirroring', MIRRORING),
    GetMirrorStatus: rpc.unimplemented('StorageService.GetMirrorStatus', MIRRORING),
    PromoteImage: rpc.unimplemented('StorageService.PromoteImage', MIRRORING),
    DemoteImage: rpc.unimplemented('StorageService.DemoteImage', MIRRORING),
    ResyncImage: rpc.unimplemented('StorageService.ResyncImage', MIRRORING),
    SnapshotVm: rpc.unimplemented('StorageService.SnapshotVm', SNAPSHOTS),
    ListVmSnapshots: rpc.unimplemented('StorageService.ListVmSnapshots', SNAPSHOTS),
    DeleteVmSnapshot: rpc.unimplemented('StorageService.DeleteVmSnapshot', SNAPSHOTS),
    RollbackVm: rpc.unimplemented('StorageService.RollbackVm', SNAPSHOTS),
    DisableMirroring: rpc.unimplemented('StorageService.DisableMirroring', MIRRORING),
    CreateMirrorSnapshot: rpc.unimplemented('StorageService.CreateMirrorSnapshot', MIRRORING),
    CreatePeerBootstrap: rpc.unimplemented('StorageService.CreatePeerBootstrap', MIRRORING),
    ImportPeerBootstrap: rpc.unimplemented('StorageService.ImportPeerBootstrap', MIRRORING),
    GetPoolMirrorStatus: rpc.unimplemented('StorageService.GetPoolMirrorStatus', MIRRORING),
    FenceImage: rpc.unimplemented('StorageService.FenceImage', MIRRORING),
  };
}
