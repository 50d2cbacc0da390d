import { debvisorV1, type TunnelFrame, type TunnelFrame__Output } from '@debvisor/proto';
import { Client, credentials, Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import { createSecureContext, type PeerCertificate } from 'node:tls';
import { AGENT_OU, type TlsMaterial } from '../config/tls-material';
import { peerChannelOptions, TUNNEL_WINDOW_BYTES } from '../rpc/tls-credentials';

export interface TunnelTarget {
  endpoint: string;
  nodeId: string;
  /** The target cluster's CA (pinned); empty: this cluster's own. */
  caPem: string;
}

export type TunnelStream = ClientDuplexStream<TunnelFrame, TunnelFrame__Output>;

/**
 * Opens migration tunnels to target agents: this agent's own certificate, only the pinned CA of the
 * target trusted, and the target's certificate must name the node that prepared the migration.
 */
export class TunnelClientRepository {
  constructor(private readonly tls: TlsMaterial) {}

  open(target: TunnelTarget, traceId: string): { stream: TunnelStream; close: () => void } {
    const context = createSecureContext({
      ca: target.caPem || this.tls.clusterCaPem,
      cert: this.tls.certChainPem,
      key: this.tls.keyPem,
      minVersion: 'TLSv1.3',
    });
    const channelCredentials = credentials.createFromSecureContext(context, {
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const ou = Array.isArray(cert.subject.OU) ? cert.subject.OU[0] : cert.subject.OU;
        if (cert.subject.CN !== `agent:${target.nodeId}` || ou !== AGENT_OU) {
          return new Error(
            `the migration target presented the certificate of ${String(cert.subject.CN)}, not agent:${target.nodeId}`,
          );
        }
        return undefined;
      },
    });
    // A channel of its own: the tunnel's window and lifetime are the migration's.
    const client = new Client(target.endpoint, channelCredentials, {
      ...peerChannelOptions(target.nodeId),
      'grpc-node.flow_control_window': TUNNEL_WINDOW_BYTES,
      'grpc.max_send_message_length': 4 * 1024 * 1024,
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 10_000,
    });
    const definition = debvisorV1().MigrationService.service.Tunnel;
    const metadata = new Metadata();
    metadata.set('x-debvisor-trace-id', traceId);
    const stream = client.makeBidiStreamRequest(
      definition.path,
      definition.requestSerialize as (value: TunnelFrame) => Buffer,
      definition.responseDeserialize as (bytes: Buffer) => TunnelFrame__Output,
      metadata,
    );
    return { stream, close: () => client.close() };
  }
}
