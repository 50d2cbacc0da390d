import type { NodeServiceHandlers } from '@debvisor/proto';
import { z } from 'zod';
import type { RpcRouter } from '../rpc/rpc-router';
import type { CaRotation, CaRotationStatus } from './ca-rotation.service';

const emptyRequestSchema = z.object({});
const finishRequestSchema = z.object({ force: z.boolean() });

type CaRotationHandlers = Pick<
  NodeServiceHandlers,
  'GetCaRotation' | 'BeginCaRotation' | 'FinishCaRotation'
>;

/** NodeService's CA rotation RPCs: what `debvisor-agent-admin ca status|begin|finish` do, for the manager. */
export function caRotationHandlers(
  rpc: RpcRouter,
  nodeId: string,
  rotation: CaRotation,
): CaRotationHandlers {
  const answer = async () => toProto(nodeId, await rotation.status());
  return {
    GetCaRotation: rpc.unary('NodeService.GetCaRotation', emptyRequestSchema, answer),
    BeginCaRotation: rpc.unary('NodeService.BeginCaRotation', emptyRequestSchema, async () => {
      await rotation.begin();
      return answer();
    }),
    FinishCaRotation: rpc.unary(
      'NodeService.FinishCaRotation',
      finishRequestSchema,
      async ({ force }) => {
        await rotation.finish(force);
        return answer();
      },
    ),
  };
}

function toProto(nodeId: string, status: CaRotationStatus) {
  return {
    rotating: status.rotating,
    cas: status.cas.map((ca) => ({
      fingerprintSha256: ca.fingerprint,
      subject: ca.subject,
      pem: ca.pem,
    })),
    issuingFingerprintSha256: status.issuingFingerprint,
    nodes: status.nodes.map((node) => ({
      nodeId: node.nodeId,
      issuerFingerprintSha256: node.issuerFingerprint,
      notBefore: node.notBefore,
      notAfter: node.notAfter,
    })),
    nodeId,
  };
}
