import type {
  GetHealthResponse,
  NodeEntry as ProtoNodeEntry,
  NodeInfo as ProtoNodeInfo,
  NodeStatus as ProtoNodeStatus,
} from '@debvisor/proto';
import { AGENT_VERSION } from '../shared/version';
import type { NodeHealth } from './local-node.service';
import type { NodeEntry, StoredNodeInfo, StoredNodeStatus } from './node.schema';

export function toProtoNodeEntry(entry: NodeEntry): ProtoNodeEntry {
  return {
    info: toProtoNodeInfo(entry.info),
    status: entry.status ? toProtoNodeStatus(entry.status) : null,
    alive: entry.alive,
    registeredAt: entry.info.registeredAt,
  };
}

function toProtoNodeInfo({
  registeredAt: _registeredAt,
  ttlSeconds: _ttl,
  ...info
}: StoredNodeInfo): ProtoNodeInfo {
  return info;
}

function toProtoNodeStatus(status: StoredNodeStatus): ProtoNodeStatus {
  return status;
}

export function toProtoHealth(nodeId: string, health: NodeHealth): GetHealthResponse {
  return { nodeId, status: health.status, drivers: health.drivers, version: AGENT_VERSION };
}
