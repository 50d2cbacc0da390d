import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { describe, expect, it } from 'vitest';
import {
  createCa,
  derToPem,
  describeCertificate,
  fingerprintSha256,
  issueCertificate,
  normalizeFingerprint,
  splitPemBundle,
} from './index';

describe('certificate authority', () => {
  it('issues leaves that chain to the CA, with the asked names and usages', async () => {
    const ca = await createCa('Test CA');
    const leaf = await issueCertificate(ca, {
      commonName: 'agent:node-1',
      organizationalUnit: 'debvisor-agent',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    const [leafPem, caPem] = splitPemBundle(leaf.certPem);
    const cert = new X509Certificate(leafPem);
    expect(cert.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(cert.subject).toContain('CN=agent:node-1');
    expect(cert.subject).toContain('OU=debvisor-agent');
    expect(cert.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(cert.ca).toBe(false);
    expect(describeCertificate(caPem)).toMatchObject({
      isCa: true,
      subject: 'CN=Test CA, O=DebVisor',
    });
  });

  it('escapes distinguished-name metacharacters instead of letting them add attributes', async () => {
    const ca = await createCa('Test CA');
    const leaf = await issueCertificate(ca, { commonName: 'x, OU=admin', usage: 'client' });
    expect(new X509Certificate(leaf.certPem).subject.split('\n')).not.toContain('OU=admin');
  });

  it('gives certificates that complete a mutual TLS handshake', async () => {
    const ca = await createCa('Test CA');
    const server = await issueCertificate(ca, {
      commonName: 'server',
      dnsNames: ['localhost'],
      usage: 'server',
    });
    const client = await issueCertificate(ca, { commonName: 'client', usage: 'client' });
    const tlsServer = createServer(
      {
        cert: server.certPem,
        key: server.keyPem,
        ca: ca.certPem,
        requestCert: true,
        rejectUnauthorized: true,
      },
      (socket) =>
        socket.end((socket.getPeerCertificate() as { subject: { CN: string } }).subject.CN),
    );
    tlsServer.listen(0, '127.0.0.1');
    await once(tlsServer, 'listening');
    const port = (tlsServer.address() as { port: number }).port;
    const socket: TLSSocket = connect({
      port,
      host: '127.0.0.1',
      servername: 'localhost',
      ca: ca.certPem,
      cert: client.certPem,
      key: client.keyPem,
    });
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    await once(socket, 'end');
    expect(answer).toBe('client');
    expect(fingerprintSha256(derToPem(socket.getPeerCertificate(true).issuerCertificate.raw))).toBe(
      fingerprintSha256(ca.certPem),
    );
    tlsServer.close();
  });
});

describe('fingerprints', () => {
  it('agrees with the fingerprint Node computes', async () => {
    const ca = await createCa('Test CA');
    expect(fingerprintSha256(ca.certPem)).toBe(new X509Certificate(ca.certPem).fingerprint256);
  });

  it('normalises case and colons and refuses anything that is not 32 bytes of hex', () => {
    const hex = 'ab'.repeat(32);
    expect(normalizeFingerprint(hex)).toBe(Array(32).fill('AB').join(':'));
    expect(normalizeFingerprint(Array(32).fill('ab').join(':'))).toBe(
      Array(32).fill('AB').join(':'),
    );
    for (const bad of ['', 'ab'.repeat(31), 'zz'.repeat(32), 'ab'.repeat(33)])
      expect(normalizeFingerprint(bad)).toBeUndefined();
  });
});
