import { createCa, issueCertificate } from '@debvisor/pki';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ariCertificateId } from './acme.repository';
import { namesCover, subjectAltNames } from './certificate-chain';

describe('namesCover', () => {
  it('matches exact names case-insensitively and one-label wildcards only', () => {
    const names = ['manager.example.com', '*.dc1.example.com', '192.0.2.7'];
    expect(namesCover(names, 'Manager.Example.com')).toBe(true);
    expect(namesCover(names, 'manager.example.com.')).toBe(true);
    expect(namesCover(names, 'a.dc1.example.com')).toBe(true);
    expect(namesCover(names, 'dc1.example.com')).toBe(false);
    expect(namesCover(names, 'a.b.dc1.example.com')).toBe(false);
    expect(namesCover(names, 'other.example.com')).toBe(false);
    expect(namesCover(names, '192.0.2.7')).toBe(true);
    expect(namesCover(names, '192.0.2.8')).toBe(false);
  });
});

describe('subjectAltNames', () => {
  it('lists the DNS names and IP addresses of a certificate in order', async () => {
    const ca = await createCa('unit test CA');
    const leaf = await issueCertificate(ca, {
      commonName: 'x',
      dnsNames: ['A.example.test', '*.example.test'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    expect(subjectAltNames(new X509Certificate(leaf.certPem))).toEqual([
      'a.example.test',
      '*.example.test',
      '127.0.0.1',
    ]);
  });
});

describe('ariCertificateId', () => {
  it('is the issuer key id and the serial number, as openssl reads them (RFC 9773 §4.1)', async () => {
    const ca = await createCa('unit test CA');
    const leaf = await issueCertificate(ca, {
      commonName: 'x',
      dnsNames: ['x.example.test'],
      usage: 'server',
    });
    const text = execFileSync(
      'openssl',
      ['x509', '-noout', '-serial', '-ext', 'authorityKeyIdentifier'],
      { input: leaf.certPem, encoding: 'utf8', timeout: 10_000 },
    );
    const serialHex = /serial=([0-9A-F]+)/.exec(text)![1];
    const keyIdHex = /(?:keyid:)?((?:[0-9A-F]{2}:)+[0-9A-F]{2})/.exec(
      text.split('Authority Key Identifier:')[1],
    )![1];
    let serial = Buffer.from(serialHex.length % 2 ? `0${serialHex}` : serialHex, 'hex');
    // DER INTEGER content octets: a leading zero when the high bit is set.
    if (serial[0] & 0x80) serial = Buffer.concat([Buffer.from([0]), serial]);
    const expected = `${Buffer.from(keyIdHex.replace(/:/g, ''), 'hex').toString('base64url')}.${serial.toString('base64url')}`;
    expect(ariCertificateId(leaf.certPem)).toBe(expected);
  });
});
