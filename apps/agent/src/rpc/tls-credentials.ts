import { credentials, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { createSecureContext, type PeerCertificate } from 'node:tls';
import { AGENT_OU } from '../config/tls-material';
import type { TlsMaterial } from '../config/tls-material';

/** HTTP/2 flow-control window of migration tunnels (per stream and per connection). */
export const TUNNEL_WINDOW_BYTES = 16 * 1024 * 1024;

/**
 * Server credentials for mutual TLS 1.3: a client certificate is required and verified against
 * the cluster CA and tls.clientCas. grpc-js's createSsl() offers no minimum protocol version, so
 * this subclass hands Node's TLS server the same options createSsl would, plus minVersion.
 */
export class MutualTls13ServerCredentials extends ServerCredentials {
  /** CAs of other clusters trusted for the time of a migration, by migration id. */
  private readonly peerCas = new Map<string, string>();

  constructor(private readonly tls: TlsMaterial) {
    super(
      // A large stream window: migration tunnels move gigabytes through one stream.
      {
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
        settings: { initialWindowSize: TUNNEL_WINDOW_BYTES },
      },
      {
        ca: tls.trustedClientCasPem,
        cert: tls.certChainPem,
        key: tls.keyPem,
        minVersion: 'TLSv1.3',
      },
    );
  }

  /**
   * Accepts client certificates of another cluster's CA on new connections until forgetPeerCa: a
   * cross-cluster migration's source agent opens its tunnel with one. The tunnel itself then
   * checks the cookie and that the certificate is that CA's agent certificate; every other RPC
   * still needs an API key.
   */
  trustPeerCa(migrationId: string, caPem: string): void {
    this.peerCas.set(migrationId, caPem);
    this.refresh();
  }

  forgetPeerCa(migrationId: string): void {
    if (this.peerCas.delete(migrationId)) this.refresh();
  }

  /**
   * Applies the TLS material as it is now (a renewed certificate, a changed trust bundle) to the
   * connections that come next; connections already open keep theirs, so no call is cut off.
   */
  refresh(): void {
    const ca = [this.tls.trustedClientCasPem, ...new Set(this.peerCas.values())];
    this.updateSecureContextOptions({
      ca,
      cert: this.tls.certChainPem,
      key: this.tls.keyPem,
      minVersion: 'TLSv1.3',
    });
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
  const context = createSecureContext({
    ca: tls.clusterCaPem,
    cert: tls.certChainPem,
    key: tls.keyPem,
    minVersion: 'TLSv1.3',
  });
  return credentials.createFromSecureContext(context, {
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      const ou = Array.isArray(cert.subject.OU) ? cert.subject.OU[0] : cert.subject.OU;
      if (cert.subject.CN !== `agent:${nodeId}` || ou !== AGENT_OU) {
        return new Error(
          `the peer presented the certificate of ${String(cert.subject.CN)}, not agent:${nodeId}`,
        );
      }
      return undefined;
    },
  });
}

/** Channel options for a peer of `nodeId`: its node id as TLS server name (SNI), never an IP address. */
export function peerChannelOptions(nodeId: string): Record<string, string> {
  return { 'grpc.ssl_target_name_override': nodeId, 'grpc.default_authority': nodeId };
}
