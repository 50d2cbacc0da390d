import { Injectable } from '@nestjs/common';
import type { Server as HttpServer } from 'node:http';
import type { Server } from 'node:https';

/** The TLS settings a tls.Server keeps as own properties, which setSecureContext would reset. */
const KEPT_TLS_OPTIONS = [
  'ca',
  'ciphers',
  'sigalgs',
  'ecdhCurve',
  'dhparam',
  'minVersion',
  'maxVersion',
  'secureProtocol',
  'crl',
  'honorCipherOrder',
  'secureOptions',
  'sessionIdContext',
  'sessionTimeout',
  'ticketKeys',
] as const;

/**
 * The manager's HTTPS server, for swapping its certificate in place: `setSecureContext` applies to
 * the TLS handshakes that follow, while open connections (and their running requests) carry on.
 * Other listeners that serve the same certificate (the metrics listener) follow every swap.
 */
@Injectable()
export class HttpsEndpointRepository {
  private server: Server | undefined;
  private serving: { chainPem: string; keyPem: string } | undefined;
  private readonly followers = new Set<Server>();

  /** Called once the HTTPS server listens, with what it was started with. */
  attach(server: HttpServer | Server, serving: { chainPem: string; keyPem: string }): void {
    if (!('setSecureContext' in server)) throw new Error('the manager serves HTTPS only');
    this.server = server;
    this.serving = serving;
  }

  /** A further listener that serves what the HTTPS server serves, from now on (until it closes). */
  follow(server: Server): void {
    this.followers.add(server);
    server.once('close', () => this.followers.delete(server));
  }

  get port(): number | undefined {
    const address = this.server?.address();
    return address && typeof address === 'object' ? address.port : undefined;
  }

  /** What new connections are served now. */
  current(): { chainPem: string; keyPem: string } | undefined {
    return this.serving;
  }

  swap(chainPem: string, keyPem: string): void {
    if (!this.server) throw new Error('the HTTPS server is not attached');
    for (const server of [this.server, ...this.followers]) swapOn(server, chainPem, keyPem);
    this.serving = { chainPem, keyPem };
  }
}

function swapOn(target: Server, chainPem: string, keyPem: string): void {
  // setSecureContext resets every option it is not given: keep the server's TLS settings (protocol
  // versions, ciphers, session ticket keys …) as they were started, and change only the certificate.
  const server = target as unknown as Record<string, unknown>;
  const kept = Object.fromEntries(
    KEPT_TLS_OPTIONS.filter((name) => server[name] !== undefined).map((name) => [
      name,
      server[name],
    ]),
  );
  target.setSecureContext({ ...kept, cert: chainPem, key: keyPem });
}
