import { parseEndpoint } from '@debvisor/common';
import {
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { MutualTls13ServerCredentials } from './tls-credentials';

/** Requests over 1 MiB are refused with RESOURCE_EXHAUSTED before any handler runs. */
export const MAX_REQUEST_BYTES = 1024 * 1024;

/**
 * The ALPN protocol of a migration data connection: after the TLS handshake (the same certificate,
 * client certificate and CAs as gRPC) the connection carries one QEMU migration channel's bytes.
 */
export const MIGRATION_DATA_ALPN = 'debvisor-migration-data/1';

export interface RpcService {
  definition: ServiceDefinition;
  handlers: UntypedServiceImplementation;
}

export interface RunningRpcServer {
  readonly port: number;
  /** Lets calls in flight finish for up to `graceMs`, then cuts the rest off. */
  stop(graceMs: number): Promise<void>;
}

/**
 * The agent's one port: a mutual-TLS 1.3 listener that hands connections negotiating ALPN `h2` to
 * gRPC and those negotiating MIGRATION_DATA_ALPN to `onMigrationData` (a migration's byte stream,
 * which authenticates itself with a one-time token). The TLS settings are the credentials' own,
 * including the peer CAs trusted for migrations and every later refresh.
 */
export async function startRpcServer(
  listen: string,
  credentials: MutualTls13ServerCredentials,
  services: readonly RpcService[],
  onMigrationData: (socket: TLSSocket) => void = (socket) => socket.destroy(),
): Promise<RunningRpcServer> {
  const endpoint = parseEndpoint(listen);
  if (!endpoint) throw new Error(`listen: ${listen} is not host:port`);
  const server = new Server({ 'grpc.max_receive_message_length': MAX_REQUEST_BYTES });
  for (const service of services) server.addService(service.definition, service.handlers);
  // TLS ends here; gRPC reads the peer certificate from the TLS socket it is handed.
  const grpc = server.createConnectionInjector(ServerCredentials.createInsecure());
  const { settings: _settings, ...serverOptions } = credentials._getConstructorOptions() ?? {};
  const tls = createTlsServer({
    ...serverOptions,
    ...credentials._getSecureContextOptions(),
    ALPNProtocols: ['h2', MIGRATION_DATA_ALPN],
  });
  const watcher = (options: Parameters<typeof tls.setSecureContext>[0] | null): void => {
    if (options) tls.setSecureContext(options);
  };
  credentials._addWatcher(watcher);
  tls.on('secureConnection', (socket: TLSSocket) => {
    socket.on('error', () => socket.destroy());
    if (socket.alpnProtocol === 'h2') grpc.injectConnection(socket);
    else if (socket.alpnProtocol === MIGRATION_DATA_ALPN) onMigrationData(socket);
    else socket.destroy();
  });
  // Failed handshakes (no client certificate, an untrusted CA, no common protocol) end there.
  tls.on('tlsClientError', () => undefined);
  const port = await new Promise<number>((resolve, reject) => {
    tls.once('error', reject);
    tls.listen(endpoint.port, endpoint.host, () => {
      tls.off('error', reject);
      const address = tls.address();
      resolve(typeof address === 'object' && address ? address.port : endpoint.port);
    });
  });
  return {
    port,
    stop: (graceMs) =>
      new Promise<void>((resolve) => {
        credentials._removeWatcher(watcher);
        tls.close();
        const timer = setTimeout(() => {
          server.forceShutdown();
          grpc.destroy();
          resolve();
        }, graceMs);
        grpc.drain(graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
