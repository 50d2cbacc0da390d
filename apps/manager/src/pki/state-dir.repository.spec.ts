import { describeCertificate, fingerprintSha256, splitPemBundle } from '@debvisor/pki';
import { cleanupTempDirs, tempDir } from '@debvisor/testing';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { StateDirRepository } from './state-dir.repository';

describe('StateDirRepository', () => {
  afterAll(() => cleanupTempDirs());

  it('creates the HTTPS certificate, the client identity and the secret key on the first start and reuses them', async () => {
    const dir = join(tempDir(), 'state');
    const names = { dnsNames: ['localhost', 'manager-host'], ipAddresses: ['127.0.0.1'] };
    const first = await new StateDirRepository(dir).loadIdentity(names);
    const second = await new StateDirRepository(dir).loadIdentity(names);
    expect(second.server.certPem).toBe(first.server.certPem);
    expect(second.client.certPem).toBe(first.client.certPem);
    expect(second.secretKey.equals(first.secretKey)).toBe(true);
    expect(first.secretKey).toHaveLength(32);

    const server = new X509Certificate(splitPemBundle(first.server.certPem)[0]);
    expect(server.subjectAltName).toContain('DNS:localhost');
    expect(server.subjectAltName).toContain('DNS:manager-host');
    expect(server.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(server.publicKey.asymmetricKeyType).toBe('ec');
    expect(server.checkIssued(new X509Certificate(first.server.caPem))).toBe(true);

    const clientCa = describeCertificate(readFileSync(join(dir, 'pki/client-ca.crt'), 'utf8'));
    expect(clientCa.isCa).toBe(true);
    expect(fingerprintSha256(first.client.caPem)).toBe(clientCa.fingerprintSha256);
    expect(
      new X509Certificate(splitPemBundle(first.client.certPem)[0]).checkIssued(
        new X509Certificate(first.client.caPem),
      ),
    ).toBe(true);

    expect(statSync(dir).mode & 0o777).toBe(0o711);
    for (const file of [
      'secret.key',
      'pki/server.key',
      'pki/client.key',
      'pki/client-ca.key',
      'pki/server-ca.key',
    ]) {
      expect(statSync(join(dir, file)).mode & 0o777, file).toBe(0o600);
    }
  });

  it('generates the embedded PostgreSQL password once', () => {
    const repository = new StateDirRepository(join(tempDir(), 'state'));
    const password = repository.loadOrCreateDatabasePassword();
    expect(password).toMatch(/^[\w-]{32}$/);
    expect(repository.loadOrCreateDatabasePassword()).toBe(password);
  });
});
