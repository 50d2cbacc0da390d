import { createPrivateKey, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { describe, expect, it } from 'vitest';
import {
  createCa,
  createCsr,
  crossCertify,
  derToPem,
  describeCertificate,
  fingerprintSha256,
  issueCertificate,
  normalizeFingerprint,
  renewFromCsr,
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

describe('renewal and CA rotation', () => {
  it("renews from a CSR with the request's key, keeping the current subject and names", async () => {
    const ca = await createCa('cluster CA');
    const current = await issueCertificate(ca, {
      commonName: 'agent:node-1',
      organizationalUnit: 'debvisor-agent',
      dnsNames: ['node-1'],
      ipAddresses: ['127.0.0.1'],
      usage: 'both',
    });
    // The request asks for another name: a renewal never changes who the holder is.
    const { csrPem, keyPem } = await createCsr('agent:node-2', 'debvisor-agent');
    const notAfter = new Date(Date.now() + 3_600_000);
    const chain = await renewFromCsr(ca, csrPem, { currentCertPem: current.certPem, notAfter });
    const [leafPem, caPem] = splitPemBundle(chain);
    const leaf = new X509Certificate(leafPem);
    expect(leaf.subject).toBe(new X509Certificate(current.certPem).subject);
    expect(leaf.subjectAltName).toBe('DNS:node-1, IP Address:127.0.0.1');
    expect(leaf.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    expect(leaf.verify(new X509Certificate(caPem).publicKey)).toBe(true);
    expect(Math.abs(Date.parse(leaf.validTo) - notAfter.getTime())).toBeLessThan(1_000);
    await expect(
      renewFromCsr(ca, 'not a csr', { currentCertPem: current.certPem, notAfter }),
    ).rejects.toThrow('not a PKCS#10 certificate request');
  });

  it('cross-certifies a new CA so that clients of the old CA verify its certificates', async () => {
    const [oldCa, newCa] = await Promise.all([createCa('old CA'), createCa('new CA')]);
    const cross = await crossCertify(oldCa, newCa.certPem);
    const crossCert = new X509Certificate(cross);
    expect(crossCert.ca).toBe(true);
    expect(crossCert.subject).toBe(new X509Certificate(newCa.certPem).subject);
    expect(crossCert.verify(new X509Certificate(oldCa.certPem).publicKey)).toBe(true);
    expect(crossCert.publicKey.export({ format: 'der', type: 'spki' })).toEqual(
      new X509Certificate(newCa.certPem).publicKey.export({ format: 'der', type: 'spki' }),
    );
  });

  it('lets a client that trusts only the old CA complete a TLS handshake with a leaf of the new CA served with the cross certificate', async () => {
    const [oldCa, newCa] = await Promise.all([createCa('old CA'), createCa('new CA')]);
    const cross = await crossCertify(oldCa, newCa.certPem);
    const leaf = await issueCertificate(newCa, {
      commonName: 'server',
      dnsNames: ['localhost'],
      usage: 'server',
    });
    const tlsServer = createServer(
      { cert: splitPemBundle(leaf.certPem)[0] + cross, key: leaf.keyPem },
      (socket) => socket.end('ok'),
    );
    tlsServer.listen(0, '127.0.0.1');
    await once(tlsServer, 'listening');
    const port = (tlsServer.address() as { port: number }).port;
    try {
      for (const trusted of [oldCa.certPem, newCa.certPem, oldCa.certPem + newCa.certPem]) {
        const socket = connect({ port, host: '127.0.0.1', servername: 'localhost', ca: trusted });
        const [error] = await Promise.race([
          once(socket, 'secureConnect').then(() => [undefined]),
          once(socket, 'error') as Promise<[Error]>,
        ]);
        socket.destroy();
        expect(error?.message).toBeUndefined();
      }
    } finally {
      tlsServer.close();
    }
  });
});
