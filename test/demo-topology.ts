import { startCluster, type TestCluster } from '@debvisor/testing';
import { Etcd3 } from 'etcd3';
import { request } from 'node:https';
import { startBuiltManager, type BuiltManager } from './browser-harness';

/** Answers are checked field by field in the tests; their bodies are loosely typed on purpose. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export interface DemoTopology {
  readonly manager: BuiltManager;
  readonly east: TestCluster;
  readonly west: TestCluster;
  /** A request to the manager's REST API, with the bootstrap admin token unless another is given. */
  api(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: Json }>;
  stop(): Promise<void>;
}

/** The sim storage driver's image records (apps/agent/src/drivers/sim/sim-storage.driver.ts). */
const SIM_IMAGES = '/debvisor/sim/rbd/';

/**
 * What `npm start` runs (scripts/demo.mjs), for browser tests: the built manager with its embedded
 * PostgreSQL and web UI, and two simulated clusters dc-east and dc-west of real agent processes,
 * registered as remotes, with each cluster's images mirrored into the other so that VMs can move
 * across datacenters.
 */
export async function startDemoTopology(adminPassword: string, options: { nodes?: number; vmsPerNode?: number } = {}): Promise<DemoTopology> {
  const manager = await startBuiltManager(adminPassword);
  const nodes = options.nodes ?? 3;
  const vmsPerNode = options.vmsPerNode ?? 4;
  let east: TestCluster | undefined;
  let west: TestCluster | undefined;
  const api = (method: string, path: string, body?: unknown, token = manager.bootstrapToken) => call(manager, method, path, body, token);
  try {
    [east, west] = await Promise.all(
      ['dc-east', 'dc-west'].map((clusterId) => startCluster({ clusterId, nodes, vmsPerNode, trustedClientCaPem: manager.clientCaPem })),
    );
    await mirrorImages([east, west]);
    for (const cluster of [east, west]) {
      const key = await cluster.createApiKey(['*'], { principal: 'manager@demo' });
      const answer = await api('POST', '/api/v1/remotes', {
        id: cluster.clusterId,
        endpoints: cluster.agents.map((agent) => agent.endpoint),
        caCertPem: cluster.caPem,
        credentials: [{ name: 'admin', key }],
      });
      if (answer.status !== 201) throw new Error(`registering ${cluster.clusterId}: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    const refreshed = await api('GET', '/api/v1/resources/refresh');
    if (refreshed.body.remotes?.some((r: { status: string }) => r.status !== 'online')) throw new Error(`a demo cluster is not online: ${JSON.stringify(refreshed.body)}`);
  } catch (error) {
    await Promise.all([east?.stop(), west?.stop()]);
    await manager.process.stop();
    throw error;
  }
  const [e, w] = [east, west];
  return {
    manager,
    east: e,
    west: w,
    api,
    async stop() {
      await Promise.all([e.stop(), w.stop()]);
      await manager.process.stop();
    },
  };
}

/** Copies every cluster's simulated images into the others (what RBD mirroring provides for real). */
async function mirrorImages(clusters: TestCluster[]): Promise<void> {
  const clients = clusters.map((cluster) => new Etcd3({ hosts: cluster.etcd.endpoint }));
  try {
    const images = await Promise.all(clients.map((client) => client.getAll().prefix(SIM_IMAGES).strings()));
    for (const [i, client] of clients.entries()) {
      for (const [j, theirs] of images.entries()) {
        if (i === j) continue;
        for (const [key, value] of Object.entries(theirs)) if (!(key in images[i])) await client.put(key).value(value);
      }
    }
  } finally {
    for (const client of clients) client.close();
  }
}

function call(manager: BuiltManager, method: string, path: string, body: unknown, token: string): Promise<{ status: number; body: Json }> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      `${manager.base}${path}`,
      {
        method,
        ca: manager.caPem,
        timeout: 30_000,
        headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json' } : {}) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text && (res.headers['content-type'] ?? '').includes('application/json') ? JSON.parse(text) : text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}
