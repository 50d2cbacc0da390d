import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Logger } from '../shared/logger';
import {
  DATA_HEADER_BYTES,
  DATA_HEADER_TIMEOUT_MS,
  decodeDataHeader,
  readExactly,
  splice,
  type DataHeader,
} from './tunnel-data';

export interface DataChannelAcceptor {
  acceptData(header: DataHeader, peerCertificate: Buffer | undefined): Promise<Socket>;
}

/**
 * The target's end of migration data connections (see tunnel-data.ts): reads the header within
 * its deadline, lets the migration target check the token and the peer's certificate, then joins
 * the connection to the incoming QEMU's socket. A refusal answers 'E' and the reason, never more.
 */
export class TunnelDataServer {
  constructor(
    private readonly target: DataChannelAcceptor,
    private readonly logger: Logger,
  ) {}

  accept(socket: TLSSocket): void {
    socket.pause();
    void this.serve(socket);
  }

  private async serve(socket: TLSSocket): Promise<void> {
    let qemu: Socket;
    try {
      const bytes = await readExactly(socket, DATA_HEADER_BYTES, DATA_HEADER_TIMEOUT_MS);
      const header = decodeDataHeader(bytes);
      if (typeof header === 'string') throw new AgentError(ErrorCode.InvalidArgument, header);
      qemu = await this.target.acceptData(header, socket.getPeerCertificate()?.raw);
    } catch (error) {
      const reason = error instanceof AgentError ? error.message : 'the data channel was refused';
      this.logger.warn({ reason }, 'migration data connection refused');
      socket.end(`E${reason}`);
      return;
    }
    socket.setNoDelay(true);
    socket.write('K');
    const failure = await splice(socket, qemu);
    if (failure) this.logger.debug({ err: failure }, 'migration data connection ended');
  }
}
