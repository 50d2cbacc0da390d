import type {
  MirrorStatus,
  PoolMirrorStatus as ProtoPoolMirrorStatus,
  RbdSnapshot,
} from '@debvisor/proto';
import type { ImageMirrorStatus, ImageSnapshot, PoolMirrorStatus } from '../drivers/storage.driver';

export function toProtoSnapshot(snapshot: ImageSnapshot): RbdSnapshot {
  return {
    pool: snapshot.pool,
    image: snapshot.image,
    snapshot: snapshot.snapshot,
    createdAt: snapshot.createdAt,
    sizeBytes: snapshot.sizeBytes,
  };
}

export function toProtoMirrorStatus(status: ImageMirrorStatus): MirrorStatus {
  return { ...status };
}

export function toProtoPoolMirrorStatus(status: PoolMirrorStatus): ProtoPoolMirrorStatus {
  return {
    ...status,
    peers: status.peers.map((peer) => ({ ...peer })),
    states: { ...status.states },
  };
}
