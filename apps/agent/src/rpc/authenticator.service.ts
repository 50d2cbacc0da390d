import { permissionSpecSchema } from '@debvisor/common';
import type { Metadata } from '@grpc/grpc-js';
import type { X509Certificate } from 'node:crypto';
import { principalSchema } from '../apikeys/api-key.schema';
import type { ApiKeyService } from '../apikeys/api-key.service';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { FORWARD_METADATA, type Caller } from './call-context';
import { agentNodeIdOf } from './peer-identity';

/**
 * Establishes who is calling. Two ways in:
 *  - `authorization: Bearer dvk_<id>_<secret>`: an API key from etcd;
 *  - a peer agent's certificate (issued by the cluster CA, OU debvisor-agent) together with the
 *    forwarded principal and permissions of the caller it acts for.
 */
export class Authenticator {
  constructor(
    private readonly apiKeys: Pick<ApiKeyService, 'authenticate'>,
    private readonly clusterCa: X509Certificate,
  ) {}

  async authenticate(metadata: Metadata, peerCertificate: Buffer | undefined): Promise<Caller> {
    const forwardedPrincipal = single(metadata, FORWARD_METADATA.principal);
    if (forwardedPrincipal !== undefined)
      return this.forwarded(metadata, forwardedPrincipal, peerCertificate);
    const header = single(metadata, 'authorization');
    if (header === undefined)
      throw unauthenticated("missing API key: send metadata 'authorization: Bearer dvk_…'");
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw unauthenticated("malformed authorization metadata: expected 'Bearer dvk_…'");
    const key = await this.apiKeys.authenticate(match[1]);
    return { principal: key.principal, permissions: key.permissions, keyId: key.id };
  }

  private forwarded(
    metadata: Metadata,
    principal: string,
    peerCertificate: Buffer | undefined,
  ): Caller {
    const forwardedBy = agentNodeIdOf(peerCertificate, this.clusterCa);
    if (!forwardedBy)
      throw unauthenticated('forwarded calls are accepted only from agents of this cluster');
    const permissions = (single(metadata, FORWARD_METADATA.permissions) ?? '')
      .split(',')
      .filter(Boolean);
    if (
      !principalSchema.safeParse(principal).success ||
      !permissions.every((p) => permissionSpecSchema.safeParse(p).success)
    ) {
      throw unauthenticated('malformed forwarded identity');
    }
    return { principal, permissions, forwardedBy };
  }
}

/** The one string value of a metadata key; undefined when absent; an error when repeated or binary. */
function single(metadata: Metadata, key: string): string | undefined {
  const values = metadata.get(key);
  if (values.length === 0) return undefined;
  if (values.length > 1 || typeof values[0] !== 'string')
    throw unauthenticated(`metadata '${key}' must be given once, as text`);
  return values[0];
}

function unauthenticated(message: string): AgentError {
  return new AgentError(ErrorCode.Unauthenticated, message);
}
