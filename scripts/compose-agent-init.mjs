// For docker/compose.yml: writes the cluster CA, the agent certificate and the agent's
// configuration into <dir> once; trusts the manager's client CA from its state volume.
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCa, issueCertificate } from '../libs/pki/dist/index.js';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: compose-agent-init.mjs <config-dir>');
  process.exit(2);
}
if (existsSync(join(dir, 'agent.json'))) {
  console.log(`${dir}/agent.json exists; nothing to do`);
  process.exit(0);
}
mkdirSync(dir, { recursive: true });
const ca = await createCa('DebVisor cluster dc-docker CA');
const agent = await issueCertificate(ca, {
  commonName: 'agent:node-1',
  organizationalUnit: 'debvisor-agent',
  dnsNames: ['agent', 'node-1', 'localhost'],
  usage: 'both',
});
writeFileSync(join(dir, 'ca.crt'), ca.certPem);
writeFileSync(join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 });
writeFileSync(join(dir, 'node-1.crt'), agent.certPem);
writeFileSync(join(dir, 'node-1.key'), agent.keyPem, { mode: 0o644 }); // read by the agent container's user
copyFileSync('/var/lib/debvisor-manager/pki/client-ca.crt', join(dir, 'manager-client-ca.crt'));
writeFileSync(
  join(dir, 'agent.json'),
  JSON.stringify(
    {
      clusterId: 'dc-docker',
      nodeId: 'node-1',
      listen: '0.0.0.0:9443',
      advertise: 'agent:9443',
      etcd: { endpoints: ['http://etcd:2379'] },
      tls: {
        cert: 'node-1.crt',
        key: 'node-1.key',
        ca: 'ca.crt',
        clientCas: ['manager-client-ca.crt'],
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
console.log(`wrote the cluster CA, the agent certificate and ${dir}/agent.json`);
