import { nodeIdSchema } from '@debvisor/common';
import { X509Certificate } from 'node:crypto';
import { AGENT_OU, subjectFields } from '../config/tls-material';

/**
 * The node id of a peer agent, when `der` is an agent certificate (CN agent:<node-id>, OU
 * debvisor-agent) issued by the cluster CA. A certificate from any other CA, including a client CA
 * from tls.clientCas, is not an agent, whatever its subject says.
 */
export function agentNodeIdOf(
  der: Buffer | undefined,
  clusterCa: X509Certificate,
): string | undefined {
  if (!der) return undefined;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return undefined;
  }
  if (!cert.checkIssued(clusterCa) || !cert.verify(clusterCa.publicKey)) return undefined;
  const subject = subjectFields(cert.subject);
  if (subject.OU !== AGENT_OU || !subject.CN?.startsWith('agent:')) return undefined;
  const nodeId = subject.CN.slice('agent:'.length);
  return nodeIdSchema.safeParse(nodeId).success ? nodeId : undefined;
}
