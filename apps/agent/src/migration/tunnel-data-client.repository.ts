import { parseEndpoint } from '@debvisor/common';
import { connect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { AGENT_OU, type TlsMaterial } from '../config/tls-material';
import { MIGRATION_DATA_ALPN } from '../rpc/rpc-server';
import { AgentError, ErrorCode } from '../shared/agent-error';
import {
  DATA_HEADER_TIMEOUT_MS,
  DATA_TOKEN_BYTES,
  encodeDataHeader,
  readExactly,
} from './tunnel-data';
import type { TunnelTarget } from './tunnel-client.repository';

/** The longest reason a target gives for refusing a data connection. */
const MAX_REASON_BYTES = 512;

/**
 * Opens migration data connections to a target agent's port: this agent's certificate, only the
 * target's pinned CA trusted, its certificate must name the node that prepared the migration (as
 * the control stream's), then the channel's one-time token. Answers the connection once the
 * target accepted it; its bytes are then the QEMU channel's.
 */
export class TunnelDataClientRepository {
  constructor(private readonly tls: TlsMaterial) {}

  async open(target: TunnelTarget, index: number, tokenHex: string): Promise<TLSSocket> {
    const endpoint = parseEndpoint(target.endpoint);
    const token = Buffer.from(tokenHex, 'hex');
    if (!endpoint || token.length !== DATA_TOKEN_BYTES)
      throw new AgentError(ErrorCode.Internal, 'the target handed out an unusable data channel');
    const socket = connect({
      host: endpoint.host,
      port: endpoint.port,
      servername: target.nodeId,
      ca: target.caPem || this.tls.clusterCaPem,
      cert: this.tls.certChainPem,
      key: this.tls.keyPem,
      minVersion: 'TLSv1.3',
      ALPNProtocols: [MIGRATION_DATA_ALPN],
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const ou = Array.isArray(cert.subject.OU) ? cert.subject.OU[0] : cert.subject.OU;
        if (cert.subject.CN !== `agent:${target.nodeId}` || ou !== AGENT_OU)
          return new Error(
            `the migration target presented the certificate of ${String(cert.subject.CN)}, not agent:${target.nodeId}`,
          );
        return undefined;
      },
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', resolve);
        socket.once('error', reject);
      });
      if (socket.alpnProtocol !== MIGRATION_DATA_ALPN)
        throw new Error('the target agent does not offer the migration data path');
      socket.setNoDelay(true);
      socket.write(encodeDataHeader({ index, token }));
      const answer = await readExactly(socket, 1, DATA_HEADER_TIMEOUT_MS);
      if (answer.toString('latin1') !== 'K') {
        const reason = await readReason(socket);
        throw new AgentError(
          ErrorCode.PermissionDenied,
          `the target refused data channel ${index}: ${reason}`,
        );
      }
      return socket;
    } catch (error) {
      socket.destroy();
      if (error instanceof AgentError) throw error;
      throw new AgentError(
        ErrorCode.Unavailable,
        `data channel ${index} to the target failed: ${(error as Error).message}`,
      );
    }
  }
}

function readReason(socket: TLSSocket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const done = (): void => resolve(text.slice(0, MAX_REASON_BYTES) || 'no reason given');
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.once('end', done);
    socket.once('close', done);
    socket.once('error', done);
    socket.resume();
  });
}
