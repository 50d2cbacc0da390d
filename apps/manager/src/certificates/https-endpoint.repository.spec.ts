import { createCa, issueCertificate } from '@debvisor/pki';
import { X509Certificate } from 'node:crypto';
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpsEndpointRepository } from './https-endpoint.repository';

describe('HttpsEndpointRepository', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
  });

  function get(port: number, ca: string, maxVersion?: 'TLSv1.2'): Promise<X509Certificate> {
    return new Promise((resolve, reject) => {
      request(
        { host: '127.0.0.1', port, ca, servername: 'localhost', maxVersion, agent: false },
        (res) => {
          const peer = new X509Certificate((res.socket as TLSSocket).getPeerCertificate().raw);
          res.resume();
          res.on('end', () => resolve(peer));
        },
      )
        .on('error', reject)
        .end();
    });
  }

  it("serves the new certificate to new connections and keeps the server's TLS settings", async () => {
    const ca = await createCa('unit test CA');
    const issue = () =>
      issueCertificate(ca, { commonName: 'localhost', dnsNames: ['localhost'], usage: 'server' });
    const first = await issue();
    const second = await issue();
    server = createServer(
      { key: first.keyPem, cert: first.certPem, minVersion: 'TLSv1.3' },
      (_req, res) => res.end('ok'),
    );
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const endpoint = new HttpsEndpointRepository();
    endpoint.attach(server, { chainPem: first.certPem, keyPem: first.keyPem });

    expect((await get(port, ca.certPem)).fingerprint256).toBe(
      new X509Certificate(first.certPem).fingerprint256,
    );
    endpoint.swap(second.certPem, second.keyPem);
    expect((await get(port, ca.certPem)).fingerprint256).toBe(
      new X509Certificate(second.certPem).fingerprint256,
    );
    expect(endpoint.current()?.chainPem).toBe(second.certPem);
    // Still TLS 1.3 only: a TLS 1.2 client is refused after the swap.
    await expect(get(port, ca.certPem, 'TLSv1.2')).rejects.toThrow(/version|alert|protocol/i);
  });

  it('swaps the certificate of a listener that follows the HTTPS server (the metrics listener)', async () => {
    const ca = await createCa('unit test CA');
    const issue = () =>
      issueCertificate(ca, { commonName: 'localhost', dnsNames: ['localhost'], usage: 'server' });
    const [first, second] = await Promise.all([issue(), issue()]);
    const start = async () => {
      const listener = createServer({ key: first.keyPem, cert: first.certPem }, (_req, res) =>
        res.end('ok'),
      );
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
      return listener;
    };
    server = await start();
    const metrics = await start();
    const endpoint = new HttpsEndpointRepository();
    endpoint.attach(server, { chainPem: first.certPem, keyPem: first.keyPem });
    endpoint.follow(metrics);
    endpoint.swap(second.certPem, second.keyPem);
    const port = (metrics.address() as AddressInfo).port;
    expect((await get(port, ca.certPem)).fingerprint256).toBe(
      new X509Certificate(second.certPem).fingerprint256,
    );
    await new Promise((resolve) => metrics.close(resolve));
    // A closed follower is forgotten: swapping again does not touch it.
    expect(() => endpoint.swap(first.certPem, first.keyPem)).not.toThrow();
  });
});
