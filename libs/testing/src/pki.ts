import { createCa, issueCertificate, type KeyPairPem } from '@debvisor/pki';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** Writes a certificate, its key and a CA bundle into `dir` as <name>.crt/.key and ca.crt. */
export function writeTlsFiles(
  dir: string,
  name: string,
  pair: KeyPairPem,
  caPem: string,
): TlsFiles {
  mkdirSync(dir, { recursive: true });
  const files = {
    cert: join(dir, `${name}.crt`),
    key: join(dir, `${name}.key`),
    ca: join(dir, 'ca.crt'),
  };
  writeFileSync(files.cert, pair.certPem);
  writeFileSync(files.key, pair.keyPem, { mode: 0o600 });
  writeFileSync(files.ca, caPem);
  return files;
}

export interface ClusterPki {
  ca: KeyPairPem;
  /** A certificate for an agent of this cluster: server and client use, SAN localhost/127.0.0.1 (and `ipAddresses`). */
  agent(nodeId: string, ipAddresses?: readonly string[]): Promise<KeyPairPem>;
}

export async function createClusterPki(clusterId: string): Promise<ClusterPki> {
  const ca = await createCa(`DebVisor cluster ${clusterId} CA`);
  return {
    ca,
    agent: (nodeId, ipAddresses = []) =>
      issueCertificate(ca, {
        commonName: `agent:${nodeId}`,
        organizationalUnit: 'debvisor-agent',
        dnsNames: ['localhost', nodeId],
        ipAddresses: ['127.0.0.1', ...ipAddresses.filter((a) => a !== '127.0.0.1')],
        usage: 'both',
      }),
  };
}

/** The manager's client identity: its own CA (which agents trust) and a client certificate. */
export async function createManagerIdentity(
  name = 'manager',
): Promise<{ ca: KeyPairPem; client: KeyPairPem }> {
  const ca = await createCa(`DebVisor manager ${name} client CA`);
  const client = await issueCertificate(ca, {
    commonName: `manager:${name}`,
    organizationalUnit: 'debvisor-manager',
    usage: 'client',
  });
  return { ca, client };
}
