import { parseEndpoint } from '@debvisor/common';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TlsMaterial } from '../config/tls-material';
import { ConfigError } from '../config/agent-config.loader';
import type { Logger } from '../shared/logger';

export interface MetricsSource {
  readonly contentType: string;
  render(): Promise<string>;
}

export interface MetricsServerOptions {
  /** host:port (metrics.listen). */
  readonly listen: string;
  readonly tls: Pick<TlsMaterial, 'certChainPem' | 'keyPem' | 'trustedClientCasPem'>;
  /** Require a client certificate from the cluster CA or tls.clientCas. */
  readonly requireClientCert: boolean;
  readonly metrics: MetricsSource;
  readonly logger: Logger;
}

export interface RunningMetricsServer {
  readonly port: number;
  /** Serves the TLS material as it is now (renewed certificate, changed trust) to new connections. */
  refresh(): void;
  stop(): Promise<void>;
}

/**
 * The Prometheus listener: `GET /metrics` over HTTPS with the agent's own certificate (TLS 1.3, as
 * the gRPC port), optionally requiring a client certificate. Nothing else is served.
 */
export async function startMetricsServer(
  options: MetricsServerOptions,
): Promise<RunningMetricsServer> {
  const endpoint = parseEndpoint(options.listen);
  if (!endpoint) throw new ConfigError(`metrics.listen: not host:port: ${options.listen}`);
  const server: Server = createServer(
    {
      cert: options.tls.certChainPem,
      key: options.tls.keyPem,
      minVersion: 'TLSv1.3',
      requestCert: options.requireClientCert,
      rejectUnauthorized: options.requireClientCert,
      ...(options.requireClientCert ? { ca: options.tls.trustedClientCasPem } : {}),
    },
    (req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/metrics') {
        res
          .writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
          .end('not found: the agent serves only /metrics here\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res
          .writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' })
          .end('method not allowed\n');
        return;
      }
      options.metrics.render().then(
        (text) =>
          res
            .writeHead(200, { 'content-type': options.metrics.contentType })
            .end(req.method === 'HEAD' ? undefined : text),
        (error: unknown) => {
          options.logger.error({ err: error }, 'cannot render the metrics');
          res
            .writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
            .end('internal error\n');
        },
      );
    },
  );
  server.on('tlsClientError', (error) =>
    options.logger.debug({ err: error }, 'metrics listener: TLS handshake failed'),
  );
  await new Promise<void>((resolve, reject) => {
    const fail = (error: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `metrics.listen: cannot listen on ${options.listen}: ${error.code ?? error.message}`,
        ),
      );
    server.once('error', fail);
    server.listen(endpoint.port, endpoint.host, () => {
      server.off('error', fail);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    refresh: () =>
      server.setSecureContext({
        cert: options.tls.certChainPem,
        key: options.tls.keyPem,
        minVersion: 'TLSv1.3',
        ...(options.requireClientCert ? { ca: options.tls.trustedClientCasPem } : {}),
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
