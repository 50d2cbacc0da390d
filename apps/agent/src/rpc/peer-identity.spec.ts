import { createCa, issueCertificate, type KeyPairPem } from '@debvisor/pki';
import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { agentNodeIdOf } from './peer-identity';

const der = (pair: KeyPairPem) => new X509Certificate(pair.certPem).raw;

describe('peer agent identity', () => {
  let clusterCa: KeyPairPem;
  let managerCa: KeyPairPem;
  beforeAll(async () => {
    [clusterCa, managerCa] = await Promise.all([createCa('cluster'), createCa('manager clients')]);
  });

  it('recognises an agent certificate issued by the cluster CA', async () => {
    const agent = await issueCertificate(clusterCa, {
      commonName: 'agent:node-2',
      organizationalUnit: 'debvisor-agent',
      usage: 'both',
    });
    expect(agentNodeIdOf(der(agent), new X509Certificate(clusterCa.certPem))).toBe('node-2');
  });

  it('does not take an agent-looking certificate from another CA (such as a trusted client CA) for an agent', async () => {
    const forged = await issueCertificate(managerCa, {
      commonName: 'agent:node-2',
      organizationalUnit: 'debvisor-agent',
      usage: 'client',
    });
    expect(agentNodeIdOf(der(forged), new X509Certificate(clusterCa.certPem))).toBeUndefined();
  });

  it('does not take another certificate of the cluster CA for an agent', async () => {
    const admin = await issueCertificate(clusterCa, {
      commonName: 'agent:node-2',
      organizationalUnit: 'debvisor-admin',
      usage: 'client',
    });
    const odd = await issueCertificate(clusterCa, {
      commonName: 'node-2',
      organizationalUnit: 'debvisor-agent',
      usage: 'client',
    });
    expect(agentNodeIdOf(der(admin), new X509Certificate(clusterCa.certPem))).toBeUndefined();
    expect(agentNodeIdOf(der(odd), new X509Certificate(clusterCa.certPem))).toBeUndefined();
    expect(agentNodeIdOf(undefined, new X509Certificate(clusterCa.certPem))).toBeUndefined();
  });
});
