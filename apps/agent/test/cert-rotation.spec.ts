import {
  agentClient,
  startCallLoad,
  startCluster,
  type AgentClient,
  type CallLoad,
  type TestAgent,
  type TestCluster,
} from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { eventually, rpcError } from './helpers';

/**
 * Calls per second of the client that keeps calling through every rotation (the benchmark
 * cert-rotation runs 200/s; the test keeps the shared CI machine's etcd responsive).
 */
const RATE = 50;

describe('agent certificates that rotate themselves (real agents)', () => {
  let cluster: TestCluster;
  let apiKey: string;
  let vmOfNode2: string;
  const clients: AgentClient[] = [];

  beforeAll(async () => {
    cluster = await startCluster({
      clusterId: 'rotation',
      nodes: 2,
      vmsPerNode: 2,
      // Renewed after 28–36 s, with room for a busy machine (a renewal waits for etcd and a peer).
      certificateLifetimeSeconds: 40,
      issuerNodes: ['node-1'],
      // The agent's default lease: a stall of a busy machine does not take a node out of the registry.
      leaseTtlSeconds: 15,
    });
    apiKey = await cluster.createApiKey(['*'], { principal: 'manager:rotation' });
    const client = cluster.connect(apiKey);
    clients.push(client);
    vmOfNode2 = (await client.vm.listVms({ nodeId: 'node-2' })).vms[0].spec!.uuid;
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await cluster?.stop();
  });

  /** The certificate an agent holds now (its tls.cert file, rewritten at each renewal). */
  const certificateOf = (agent: TestAgent) => {
    const config = JSON.parse(readFileSync(agent.configFile, 'utf8')) as { tls: { cert: string } };
    return new X509Certificate(readFileSync(config.tls.cert, 'utf8'));
  };

  /** The cluster CAs an agent trusts now (its tls.ca file, rewritten when the trust changes). */
  const trustOf = (agent: TestAgent) => {
    const config = JSON.parse(readFileSync(agent.configFile, 'utf8')) as { tls: { ca: string } };
    return readFileSync(config.tls.ca, 'utf8').trim();
  };

  /** Waits until every agent holds a certificate other than `seen` (by serial) and answers them. */
  async function renewedSince(seen: Map<string, string>): Promise<Map<string, string>> {
    const { value } = await eventually(async () => {
      const now = new Map(cluster.agents.map((a) => [a.nodeId, certificateOf(a).serialNumber]));
      return [...now].every(([node, serial]) => seen.get(node) !== serial) ? now : undefined;
    }, 60_000);
    return value;
  }

  /** A client trusting `caPem`, calling both agents directly and node-2 through node-1 (forwarded). */
  function load(caPem: string): CallLoad {
    const connect = (agent: TestAgent) => {
      const client = agentClient(agent.endpoint, {
        caPem,
        certPem: cluster.client.certPem,
        keyPem: cluster.client.keyPem,
        apiKey,
      });
      clients.push(client);
      return client;
    };
    const [one, two] = cluster.agents.map(connect);
    return startCallLoad(
      [
        () => one.node.getHealth({}),
        () => two.node.getHealth({}),
        () => one.vm.getVm({ uuid: vmOfNode2 }), // forwarded over node-1's peer channel
      ],
      RATE,
    );
  }

  it('renews only for a cluster agent presenting its certificate, not for the manager', async () => {
    const client = cluster.connect(apiKey); // the harness's manager-like client certificate
    clients.push(client);
    const asManager = await rpcError(
      client.node.renewCertificate({ csrPem: '-----BEGIN CERTIFICATE REQUEST-----' }),
    );
    expect(asManager.code).toBe(status.UNAUTHENTICATED);
    expect(asManager.details).toBe(
      'only an agent certificate of this cluster may renew a certificate',
    );
  });

  it(
    'renews node certificates and rotates the CA while a client keeps calling, with zero failed calls',
    { timeout: 180_000 },
    async () => {
      onTestFailed(() => {
        for (const agent of cluster.agents)
          console.error(`--- ${agent.nodeId}\n${agent.process.output().slice(-4000)}`);
      });
      const serials = new Map(cluster.agents.map((a) => [a.nodeId, certificateOf(a).serialNumber]));
      // A client that knows only the old CA, as the manager does before the rotation.
      const oldOnly = load(cluster.caPem);

      // Node certificates: a renewal of every node (node-2 renews through node-1, the issuer).
      await renewedSince(serials);
      for (const agent of cluster.agents) {
        const cert = certificateOf(agent);
        expect(cert.subject).toContain(`CN=agent:${agent.nodeId}`);
        expect(Date.parse(cert.validTo) - Date.parse(cert.validFrom)).toBeLessThanOrEqual(44_000); // 40 s, back-dated by a tenth;
      }

      // CA rotation, begun: every agent trusts old and new and renews from the new CA.
      const begun = await cluster.admin([
        'ca',
        'begin',
        '--issuer-cert',
        cluster.issuerFiles.cert,
        '--issuer-key',
        cluster.issuerFiles.key,
      ]);
      expect(begun.code, begun.stderr).toBe(0);
      const newCaPem = readFileSync(`${cluster.issuerFiles.cert}.next`, 'utf8');
      const newCa = new X509Certificate(newCaPem);
      // What `ca status` shows, read from etcd directly (no CLI process every 100 ms).
      const etcd = cluster.etcd.client();
      try {
        await eventually(async () => {
          const nodes = Object.values(
            (await etcd.getAll().prefix('/debvisor/trust/node-certs/').json()) as Record<
              string,
              { issuerFingerprint: string }
            >,
          );
          return nodes.length === 2 &&
            nodes.every((n) => n.issuerFingerprint === newCa.fingerprint256)
            ? true
            : undefined;
        }, 30_000);
      } finally {
        etcd.close();
      }
      // The manager now puts the new CA into its remote: a client trusting both, then the new one alone.
      const both = load(cluster.caPem + newCaPem);
      const newOnly = agentClient(cluster.agents[1].endpoint, {
        caPem: newCaPem,
        certPem: cluster.client.certPem,
        keyPem: cluster.client.keyPem,
        apiKey,
      });
      clients.push(newOnly);
      await expect(newOnly.node.getClusterInfo({})).resolves.toMatchObject({
        principal: 'manager:rotation',
      });
      const beforeFinish = await oldOnly.stop();

      // Finished: the old CA is dropped; renewals go on under the new one.
      const finished = await cluster.admin([
        'ca',
        'finish',
        '--issuer-cert',
        cluster.issuerFiles.cert,
        '--issuer-key',
        cluster.issuerFiles.key,
      ]);
      expect(finished.code, finished.stderr).toBe(0);
      // Every agent has applied the new trust (it rewrites its tls.ca) while the client goes on.
      await eventually(
        async () =>
          cluster.agents.every((a) => trustOf(a) === newCaPem.trim()) ? true : undefined,
        30_000,
      );
      const after = await both.stop();

      for (const counts of [beforeFinish, after]) {
        expect(counts.errors).toEqual([]);
        expect(counts.failed).toBe(0);
        expect(counts.ok).toBeGreaterThan(0);
      }
      // A certificate of the old CA is no longer an agent of this cluster.
      const status_ = JSON.parse((await cluster.admin(['ca', 'status', '--json'])).stdout) as {
        rotating: boolean;
        cas: { fingerprint: string }[];
      };
      expect(status_).toMatchObject({
        rotating: false,
        cas: [{ fingerprint: newCa.fingerprint256 }],
      });
    },
  );
});
