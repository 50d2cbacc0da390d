import { Inject, Injectable } from '@nestjs/common';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';

const PREFIX = '/.well-known/acme-challenge/';
const TOKEN = /^[A-Za-z0-9_-]{16,256}$/;

/**
 * The manager's plain-HTTP listener: it answers `/.well-known/acme-challenge/<token>` for the
 * HTTP-01 challenges of running orders and redirects everything else to HTTPS. It serves nothing else.
 */
@Injectable()
export class HttpChallengeRepository {
  private readonly answers = new Map<string, string>();
  private server: Server | undefined;
  private boundPort: number | undefined;

  constructor(@Inject(MANAGER_CONFIG) private readonly config: ManagerConfig) {}

  /** Starts listening; answers the port, or undefined (with the reason) when it cannot bind or is off. */
  async start(httpsPort: number): Promise<{ port?: number; problem?: string }> {
    const listen = this.config.certificates.httpListen;
    if (!listen) return { problem: 'the plain-HTTP listener is off (DEBVISOR_HTTP_LISTEN=off)' };
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && path.startsWith(PREFIX)) {
        const token = path.slice(PREFIX.length);
        const answer = TOKEN.test(token) ? this.answers.get(token) : undefined;
        res.writeHead(answer ? 200 : 404, { 'content-type': 'text/plain' });
        res.end(answer ?? 'no such challenge');
        return;
      }
      const host = this.redirectHost(req.headers.host, httpsPort);
      try {
        res.writeHead(301, { location: `https://${host}${req.url ?? '/'}`, 'content-length': '0' });
        res.end();
      } catch {
        // A path no Location header may carry: refuse it rather than fail the listener.
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end('bad request');
      }
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(listen.port, listen.host, () => resolve());
      });
    } catch (error) {
      return {
        problem: `cannot listen on ${listen.host}:${listen.port} for HTTP-01: ${(error as Error).message}`,
      };
    }
    this.server = server;
    this.boundPort = (server.address() as AddressInfo).port;
    return { port: this.boundPort };
  }

  get port(): number | undefined {
    return this.boundPort;
  }

  add(token: string, keyAuthorization: string): void {
    this.answers.set(token, keyAuthorization);
  }

  remove(token: string): void {
    this.answers.delete(token);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The public URL's host when one is configured; else the Host header's name with the HTTPS port. */
  private redirectHost(hostHeader: string | undefined, httpsPort: number): string {
    if (this.config.publicUrl) return new URL(this.config.publicUrl).host;
    const name = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d+)?$/.exec(hostHeader ?? '')?.[1];
    const host = name ?? 'localhost';
    return httpsPort === 443 ? host : `${host}:${httpsPort}`;
  }
}
