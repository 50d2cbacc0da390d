import { credentials, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { createSecureContext, type PeerCertificate } from 'node:tls';
import { AGENT_OU } from '../config/tls-material';
import type { TlsMaterial } from '../config/tls-material';

/**
 * Server credentials for mutual TLS 1.3: a client certificate is required and verified against
 * the cluster CA and tls.clientCas. grpc-js's createSsl() offers no minimum protocol version, so
 * this subclass hands Node's TLS server the same options createSsl would, plus minVersion.
 */
export class MutualTls13ServerCredentials extends ServerCredentials {
  constructor(tls: TlsMaterial) {
    super(
      { requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' },
      { ca: tls.trustedClientCasPem, cert: tls.certChainPem, key: tls.keyPem, minVersion: 'TLSv1.3' },
    );
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

/**
 * Client credentials for calling a peer agent: this agent's own certificate, TLS 1.3, and only the
 * cluster CA trusted. A peer is identified by its node id in the certificate subject (CN
 * agent:<node-id>, OU debvisor-agent), which only the cluster CA can issue, rather than by the
 * address it advertises; use PEER_CHANNEL_OPTIONS with it (the node id is sent as the TLS server name).
 */
export function peerChannelCredentials(tls: TlsMaterial, nodeId: string): ChannelCredentials {
  const context = createSecureContext({ ca: tls.clusterCaPem, cert: tls.certChainPem, key: tls.keyPem, minVersion: 'TLSv1.3' });
  return credentials.createFromSecureContext(context, {
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      const ou = Array.isArray(cert.subject.OU) ? cert.subject.OU[0] : cert.subject.OU;
      if (cert.subject.CN !== `agent:${nodeId}` || ou !== AGENT_OU) {
        return new Error(`the peer presented the certificate of ${String(cert.subject.CN)}, not agent:${nodeId}`);
      }
      return undefined;
    },
  });
}

/** Channel options for a peer of `nodeId`: its node id as TLS server name (SNI), never an IP address. */
export function peerChannelOptions(nodeId: string): Record<string, string> {
  return { 'grpc.ssl_target_name_override': nodeId, 'grpc.default_authority': nodeId };
}
