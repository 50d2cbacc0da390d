import { mkdirSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { MigrationAddress } from '../drivers/hypervisor.driver';
import { AgentError, ErrorCode } from '../shared/agent-error';

/** Unix sockets allow 107 bytes of path. */
const MAX_SOCKET_PATH = 107;

export interface LocalListener {
  address: MigrationAddress;
  /** The one connection QEMU makes. */
  accepted: Promise<Socket>;
  close(): void;
}

/** The local sockets of migration streams: where the source's QEMU sends, and where the target's QEMU listens. */
export class MigrationSocketRepository {
  constructor(private readonly dir: string) {}

  /** A unix socket for one connection of the source's QEMU, which the agent then tunnels. */
  async listenOnce(migrationId: string): Promise<LocalListener> {
    const path = this.socketPath(migrationId);
    let resolveAccepted!: (socket: Socket) => void;
    let rejectAccepted!: (error: Error) => void;
    const accepted = new Promise<Socket>((resolve, reject) => {
      resolveAccepted = resolve;
      rejectAccepted = reject;
    });
    accepted.catch(() => undefined);
    const server: Server = createServer({ pauseOnConnect: true }, (socket) => {
      server.close();
      resolveAccepted(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return {
      address: { kind: 'unix', path },
      accepted,
      close: () => {
        server.close();
        rejectAccepted(new Error('closed'));
        rmSync(path, { force: true });
      },
    };
  }

  /**
   * A unix socket for the source's QEMU to connect to up to `count` times (its main channel, then
   * its multifd channels): each connection is handed to `onConnection` with its index, in the
   * order QEMU made them; a further one is refused.
   */
  async listen(
    migrationId: string,
    count: number,
    onConnection: (socket: Socket, index: number) => void,
  ): Promise<{ address: MigrationAddress; close(): void }> {
    const path = this.socketPath(migrationId);
    let accepted = 0;
    const server: Server = createServer({ pauseOnConnect: true }, (socket) => {
      if (accepted >= count) {
        socket.destroy();
        return;
      }
      const index = accepted++;
      if (accepted === count) server.close();
      onConnection(socket, index);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return {
      address: { kind: 'unix', path },
      close: () => {
        server.close();
        rmSync(path, { force: true });
      },
    };
  }

  private socketPath(migrationId: string): string {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const path = join(this.dir, `out-${migrationId.slice(0, 8)}.sock`);
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the migration socket path ${path} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter stateDir`,
      );
    }
    rmSync(path, { force: true });
    return path;
  }

  /** Connects to the target QEMU's incoming socket. */
  connect(address: MigrationAddress): Promise<Socket> {
    if (address.kind !== 'unix')
      return Promise.reject(
        new AgentError(ErrorCode.Internal, `cannot tunnel into a ${address.kind} address`),
      );
    return new Promise((resolve, reject) => {
      const socket = createConnection(address.path);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  }
}
