import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { prometheusContentType } from 'prom-client';

export interface MetricsListener {
  /** host:port actually bound. */
  readonly address: string;
  /** The HTTPS server, for the certificate swaps of HttpsEndpointRepository.follow. */
  readonly server: Server;
  close(): Promise<void>;
}

/**
 * `GET /metrics` on a listener of its own (DEBVISOR_METRICS_LISTEN), HTTPS with the manager's
 * certificate and no token: for a Prometheus that should hold no API token, on an address only the
 * monitoring network reaches. Nothing else is served there (404), and only GET and HEAD.
 */
export async function startMetricsListener(
  listen: { host: string; port: number },
  tls: { keyPem: string; certPem: string },
  render: () => Promise<string>,
): Promise<MetricsListener> {
  const server = createServer(
    { key: tls.keyPem, cert: tls.certPem, minVersion: 'TLSv1.2' },
    (req, res) => {
      const path = (req.url ?? '').split('?')[0];
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.setHeader('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
      if (path !== '/metrics') {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('only /metrics is served here\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end();
        return;
      }
      render().then(
        (text) => res.writeHead(200, { 'Content-Type': prometheusContentType }).end(text),
        () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics unavailable\n'),
      );
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  return {
    address: `${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
