import { createCa, issueCertificate } from '@debvisor/pki';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTlsMaterial } from './tls-material';
import { subjectFields } from './tls-material';

describe('TLS material', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agent-tls-'));
  const file = (name: string, content: string) => {
    writeFileSync(join(dir, name), content);
    return join(dir, name);
  };
  let ca: string;
  let cert: string;
  let key: string;

  beforeAll(async () => {
    const clusterCa = await createCa('cluster');
    const agent = await issueCertificate(clusterCa, {
      commonName: 'agent:node-1',
      organizationalUnit: 'debvisor-agent',
      usage: 'both',
    });
    ca = file('ca.crt', clusterCa.certPem);
    cert = file(
      'agent.crt',
      agent.certPem.split('-----END CERTIFICATE-----')[0] + '-----END CERTIFICATE-----\n',
    ); // leaf only
    key = file('agent.key', agent.keyPem);
  });

  it('serves the leaf followed by the cluster CA even when the file holds only the leaf', () => {
    const tls = loadTlsMaterial({ nodeId: 'node-1', tls: { cert, key, ca, clientCas: [] } });
    expect(tls.certChainPem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(subjectFields(tls.clusterCa.subject).CN).toBe('cluster');
  });

  it('refuses a certificate from another CA, naming tls.cert', async () => {
    const other = await issueCertificate(await createCa('other'), {
      commonName: 'agent:node-1',
      organizationalUnit: 'debvisor-agent',
      usage: 'both',
    });
    const otherCert = file('other.crt', other.certPem);
    const otherKey = file('other.key', other.keyPem);
    expect(() =>
      loadTlsMaterial({
        nodeId: 'node-1',
        tls: { cert: otherCert, key: otherKey, ca, clientCas: [] },
      }),
    ).toThrow(/tls\.cert: .* not issued by the cluster CA/);
  });

  it('refuses a certificate made out to another node, and a key that does not match', async () => {
    expect(() =>
      loadTlsMaterial({ nodeId: 'node-2', tls: { cert, key, ca, clientCas: [] } }),
    ).toThrow(/tls\.cert: the subject must be CN=agent:node-2/);
    const wrongKey = file('wrong.key', (await createCa('x')).keyPem);
    expect(() =>
      loadTlsMaterial({ nodeId: 'node-1', tls: { cert, key: wrongKey, ca, clientCas: [] } }),
    ).toThrow(/tls\.key: .* does not belong to tls\.cert/);
  });

  it('refuses a client CA file that holds no CA certificate', () => {
    expect(() =>
      loadTlsMaterial({ nodeId: 'node-1', tls: { cert, key, ca, clientCas: [cert] } }),
    ).toThrow(/tls\.clientCas\[0\]: .* not a CA/);
    expect(() =>
      loadTlsMaterial({
        nodeId: 'node-1',
        tls: { cert, key, ca, clientCas: ['/nonexistent.crt'] },
      }),
    ).toThrow(/tls\.clientCas\[0\]: cannot read/);
  });
});
