import { Server, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { MutualTls13ServerCredentials } from './tls-credentials';

/** Requests over 1 MiB are refused with RESOURCE_EXHAUSTED before any handler runs. */
export const MAX_REQUEST_BYTES = 1024 * 1024;

export interface RpcService {
  definition: ServiceDefinition;
  handlers: UntypedServiceImplementation;
}

export interface RunningRpcServer {
  readonly port: number;
  /** Lets calls in flight finish for up to `graceMs`, then cuts the rest off. */
  stop(graceMs: number): Promise<void>;
}

export async function startRpcServer(
  listen: string,
  credentials: MutualTls13ServerCredentials,
  services: readonly RpcService[],
): Promise<RunningRpcServer> {
  const server = new Server({ 'grpc.max_receive_message_length': MAX_REQUEST_BYTES });
  for (const service of services) server.addService(service.definition, service.handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, credentials, (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return {
    port,
    stop: (graceMs) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
