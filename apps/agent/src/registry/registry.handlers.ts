import { derToPem } from '@debvisor/pki';
import type { NodeServiceHandlers } from '@debvisor/proto';
import type { CertificateIssuer } from '../trust/certificate-issuer.service';
import type { RpcRouter } from '../rpc/rpc-router';
import type { ClusterInfoService } from './cluster-info.service';
import type { LocalNodeService } from './local-node.service';
import { toProtoHealth, toProtoNodeEntry } from './node.mapper';
import type { RegistryService } from './registry.service';
import {
  emptyRequestSchema,
  heartbeatRequestSchema,
  registerNodeRequestSchema,
  renewCertificateRequestSchema,
} from './registry.requests';

export interface RegistryHandlerDeps {
  rpc: RpcRouter;
  clusterId: string;
  nodeId: string;
  registry: RegistryService;
  localNode: LocalNodeService;
  clusterInfo: ClusterInfoService;
  certificates: Pick<CertificateIssuer, 'renew'>;
}

export function nodeServiceHandlers({
  rpc,
  clusterId,
  nodeId,
  registry,
  localNode,
  clusterInfo,
  certificates,
}: RegistryHandlerDeps): Omit<
  NodeServiceHandlers,
  // trust/ca-rotation.handlers.ts
  'GetCaRotation' | 'BeginCaRotation' | 'FinishCaRotation'
> {
  return {
    RegisterNode: rpc.unary(
      'NodeService.RegisterNode',
      registerNodeRequestSchema,
      ({ node, ttlSeconds }) => registry.register(node, ttlSeconds),
    ),
    Heartbeat: rpc.unary(
      'NodeService.Heartbeat',
      heartbeatRequestSchema,
      async ({ nodeId: id, leaseId, status }) => ({
        leaseAlive: await registry.heartbeat(id, leaseId, status),
      }),
    ),
    ListNodes: rpc.unary('NodeService.ListNodes', emptyRequestSchema, async () => ({
      clusterId,
      nodes: (await registry.list()).map(toProtoNodeEntry),
    })),
    GetHealth: rpc.unary('NodeService.GetHealth', emptyRequestSchema, async () =>
      toProtoHealth(nodeId, await localNode.health()),
    ),
    GetClusterInfo: rpc.unary('NodeService.GetClusterInfo', emptyRequestSchema, (_, { caller }) =>
      clusterInfo.describe(caller),
    ),
    RenewCertificate: rpc.agentUnary(
      'NodeService.RenewCertificate',
      renewCertificateRequestSchema,
      ({ csrPem }, agent) => certificates.renew(agent.nodeId, derToPem(agent.certificate), csrPem),
    ),
  };
}
