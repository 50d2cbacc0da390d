import { apiKeyIdSchema, permissionSpecSchema } from '@debvisor/common';
import type { Metadata } from '@grpc/grpc-js';
import type { X509Certificate } from 'node:crypto';
import type { ApiKeyService } from '../apikeys/api-key.service';
import type { RegistryService } from '../registry/registry.service';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { RevokedNodes } from '../trust/revoked-nodes.service';
import { AGENT_SELF_PERMISSIONS, FORWARD_METADATA, type Caller } from './call-context';
import { agentNodeIdOf } from './peer-identity';

export interface AuthenticatorDeps {
  apiKeys: Pick<ApiKeyService, 'authenticate' | 'forwardedKey'>;
  /** The CAs whose agent certificates are this cluster's agents (during a CA rotation, two). */
  clusterCas: () => readonly X509Certificate[];
  /** Forwarding agents must be live registered nodes. */
  registry: Pick<RegistryService, 'find'>;
  /** The deny list: a revoked node is refused whatever it presents. */
  revoked: Pick<RevokedNodes, 'isRevoked'>;
  /** How long a peer found live is taken as live without asking etcd again (default 1 s). */
  livenessCacheMs?: number;
  now?: () => number;
}

/**
 * Establishes who is calling. Two ways in:
 *  - `authorization: Bearer dvk_<id>_<secret>`: an API key from etcd;
 *  - a peer agent's certificate (issued by the cluster CA, OU debvisor-agent, of a live node
 *    that is not revoked) naming the API key that authenticated the original caller: that key is
 *    looked up again here, and its principal and permissions apply — never rights the peer
 *    asserts. Without a key, a peer may act only as itself, with AGENT_SELF_PERMISSIONS.
 */
export class Authenticator {
  /** Peers found live, until when (a busy node forwards many calls a second). */
  private readonly live = new Map<string, number>();

  constructor(private readonly deps: AuthenticatorDeps) {}

  async authenticate(metadata: Metadata, peerCertificate: Buffer | undefined): Promise<Caller> {
    const peerNode = this.agentNodeIdOf(peerCertificate);
    if (peerNode !== undefined && this.deps.revoked.isRevoked(peerNode))
      throw unauthenticated(`node ${peerNode} is revoked in this cluster`);
    const forwardedPrincipal = single(metadata, FORWARD_METADATA.principal);
    if (forwardedPrincipal !== undefined)
      return this.forwarded(metadata, forwardedPrincipal, peerNode);
    const header = single(metadata, 'authorization');
    if (header === undefined)
      throw unauthenticated("missing API key: send metadata 'authorization: Bearer dvk_…'");
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw unauthenticated("malformed authorization metadata: expected 'Bearer dvk_…'");
    const key = await this.deps.apiKeys.authenticate(match[1]);
    return { principal: key.principal, permissions: key.permissions, keyId: key.id };
  }

  /**
   * A cluster agent by its certificate alone (RenewCertificate): a current agent certificate of a
   * cluster CA, of a node that is not revoked. Answers the node id.
   */
  authenticateAgent(peerCertificate: Buffer | undefined): string {
    const nodeId = this.agentNodeIdOf(peerCertificate);
    if (nodeId === undefined)
      throw unauthenticated('only an agent certificate of this cluster may renew a certificate');
    if (this.deps.revoked.isRevoked(nodeId))
      throw unauthenticated(`node ${nodeId} is revoked in this cluster`);
    return nodeId;
  }

  private async isLive(nodeId: string): Promise<boolean> {
    const now = (this.deps.now ?? Date.now)();
    if ((this.live.get(nodeId) ?? 0) > now) return true;
    // Registered means its record is in etcd, which holds it only while the node's lease lives; a
    // heartbeat a busy machine delivered late does not make it a stranger.
    const node = await this.deps.registry.find(nodeId);
    if (!node) {
      this.live.delete(nodeId);
      return false;
    }
    this.live.set(nodeId, now + (this.deps.livenessCacheMs ?? 1_000));
    return true;
  }

  private agentNodeIdOf(peerCertificate: Buffer | undefined): string | undefined {
    for (const ca of this.deps.clusterCas()) {
      const nodeId = agentNodeIdOf(peerCertificate, ca);
      if (nodeId !== undefined) return nodeId;
    }
    return undefined;
  }

  private async forwarded(
    metadata: Metadata,
    principal: string,
    forwardedBy: string | undefined,
  ): Promise<Caller> {
    if (!forwardedBy)
      throw unauthenticated('forwarded calls are accepted only from agents of this cluster');
    if (!(await this.isLive(forwardedBy)))
      throw unauthenticated(
        `forwarded calls are accepted only from live registered nodes; ${forwardedBy} is not one`,
      );
    const keyId = single(metadata, FORWARD_METADATA.keyId);
    if (keyId !== undefined) {
      if (!apiKeyIdSchema.safeParse(keyId).success)
        throw unauthenticated('malformed forwarded identity');
      const key = await this.deps.apiKeys.forwardedKey(keyId);
      if (key.principal !== principal)
        throw unauthenticated('the forwarded principal does not hold the forwarded API key');
      return { principal: key.principal, permissions: key.permissions, keyId: key.id, forwardedBy };
    }
    // No key: the forwarding agent acting for itself (a check of its own), with the few rights it has.
    const permissions = (single(metadata, FORWARD_METADATA.permissions) ?? '')
      .split(',')
      .filter(Boolean);
    if (!permissions.every((p) => permissionSpecSchema.safeParse(p).success))
      throw unauthenticated('malformed forwarded identity');
    if (
      principal !== `agent:${forwardedBy}` ||
      !permissions.every((p) => AGENT_SELF_PERMISSIONS.includes(p))
    )
      throw unauthenticated(
        'a forwarded call names the API key that authenticated its caller; an agent acts without one only as itself, for reading',
      );
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
