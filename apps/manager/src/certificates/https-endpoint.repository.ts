import { Injectable } from '@nestjs/common';
import type { Server as HttpServer } from 'node:http';
import type { Server } from 'node:https';

/**
 * The manager's HTTPS server, for swapping its certificate in place: `setSecureContext` applies to
 * the TLS handshakes that follow, while open connections (and their running requests) carry on.
 */
@Injectable()
export class HttpsEndpointRepository {
  private server: Server | undefined;
  private serving: { chainPem: string; keyPem: string } | undefined;

  /** Called once the HTTPS server listens, with what it was started with. */
  attach(server: HttpServer | Server, serving: { chainPem: string; keyPem: string }): void {
    if (!('setSecureContext' in server)) throw new Error('the manager serves HTTPS only');
    this.server = server;
    this.serving = serving;
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
    this.server.setSecureContext({ cert: chainPem, key: keyPem, minVersion: 'TLSv1.2' });
    this.serving = { chainPem, keyPem };
  }
}
