// For docker/compose.yml: writes the cluster CA, the agent certificate and the agent's
// configuration into <dir> once; trusts the manager's client CA from its state volume. With a
// second directory, also etcd's PKI there (its CA, etcd's server certificate for the host name
// `etcd`, and the agent's etcd client certificate in <dir>): etcd runs with mutual TLS.
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, issueCertificate } from '../libs/pki/dist/index.js';

const dir = process.argv[2];
const etcdDir = process.argv[3];
if (!dir || !etcdDir) {
  console.error('usage: compose-agent-init.mjs <config-dir> <etcd-pki-dir>');
  process.exit(2);
}
if (existsSync(join(dir, 'agent.json'))) {
  console.log(`${dir}/agent.json exists; nothing to do`);
  process.exit(0);
}
mkdirSync(dir, { recursive: true });
mkdirSync(etcdDir, { recursive: true });
const etcdCa = await createCa('DebVisor dc-docker etcd CA');
const etcdServer = await issueCertificate(etcdCa, {
  commonName: 'etcd',
  dnsNames: ['etcd', 'localhost'],
  ipAddresses: ['127.0.0.1'],
  usage: 'both',
});
const etcdClient = await issueCertificate(etcdCa, {
  commonName: 'debvisor-agent-node-1',
  usage: 'client',
});
writeFileSync(join(etcdDir, 'ca.crt'), etcdCa.certPem);
writeFileSync(join(etcdDir, 'server.crt'), etcdServer.certPem);
writeFileSync(join(etcdDir, 'server.key'), etcdServer.keyPem, { mode: 0o600 });
writeFileSync(join(dir, 'etcd-ca.crt'), etcdCa.certPem);
writeFileSync(join(dir, 'etcd-client.crt'), etcdClient.certPem);
writeFileSync(join(dir, 'etcd-client.key'), etcdClient.keyPem, { mode: 0o600 });
const ca = await createCa('DebVisor cluster dc-docker CA');
const agent = await issueCertificate(ca, {
  commonName: 'agent:node-1',
  organizationalUnit: 'debvisor-agent',
  dnsNames: ['agent', 'node-1', 'localhost'],
  usage: 'both',
});
// The trusted CAs (tls.ca) and the issuer's files (tls.issuer) are separate files: a CA rotation
// (`ca begin`) rewrites the issuer certificate with a cross certificate.
writeFileSync(join(dir, 'ca.crt'), ca.certPem);
writeFileSync(join(dir, 'cluster-ca.crt'), ca.certPem);
writeFileSync(join(dir, 'cluster-ca.key'), ca.keyPem, { mode: 0o600 });
writeFileSync(join(dir, 'node-1.crt'), agent.certPem);
writeFileSync(join(dir, 'node-1.key'), agent.keyPem, { mode: 0o600 });
copyFileSync('/var/lib/debvisor-manager/pki/client-ca.crt', join(dir, 'manager-client-ca.crt'));
writeFileSync(
  join(dir, 'agent.json'),
  JSON.stringify(
    {
      clusterId: 'dc-docker',
      nodeId: 'node-1',
      listen: '0.0.0.0:9443',
      advertise: 'agent:9443',
      etcd: {
        endpoints: ['https://etcd:2379'],
        tls: { ca: 'etcd-ca.crt', cert: 'etcd-client.crt', key: 'etcd-client.key' },
      },
      tls: {
        cert: 'node-1.crt',
        key: 'node-1.key',
        ca: 'ca.crt',
        clientCas: ['manager-client-ca.crt'],
        // The only node signs its own renewals (a short-lived certificate, renewed by the agent).
        issuer: { cert: 'cluster-ca.crt', key: 'cluster-ca.key' },
      },
      stateDir: '/var/lib/debvisor-agent',
      hypervisor: { driver: 'sim' },
      storage: { driver: 'sim' },
      sim: { timeScale: 1, seedVms: 8 },
      metrics: { listen: '0.0.0.0:9444' }, // reachable from other containers (a Prometheus on the compose network)
    },
    null,
    2,
  ),
);
console.log(`wrote the cluster CA, the agent certificate, ${dir}/agent.json and etcd's PKI`);
