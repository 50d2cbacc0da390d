import { startCluster, type TestCluster } from '@debvisor/testing';
import { Etcd3 } from 'etcd3';
import { startBuiltManager, type ApiAnswer, type BuiltManager } from './browser-harness';

export interface DemoTopology {
  readonly manager: BuiltManager;
  readonly east: TestCluster;
  readonly west: TestCluster;
  /** A request to the manager's REST API, with the bootstrap admin token unless another is given. */
  api(method: string, path: string, body?: unknown, token?: string): Promise<ApiAnswer>;
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
export async function startDemoTopology(
  adminPassword: string,
  options: { nodes?: number; vmsPerNode?: number } = {},
): Promise<DemoTopology> {
  const manager = await startBuiltManager(adminPassword);
  const nodes = options.nodes ?? 3;
  const vmsPerNode = options.vmsPerNode ?? 4;
  let east: TestCluster | undefined;
  let west: TestCluster | undefined;
  const api = manager.api;
  try {
    [east, west] = await Promise.all(
      ['dc-east', 'dc-west'].map((clusterId) =>
        startCluster({ clusterId, nodes, vmsPerNode, trustedClientCaPem: manager.clientCaPem }),
      ),
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
      if (answer.status !== 201)
        throw new Error(
          `registering ${cluster.clusterId}: ${answer.status} ${JSON.stringify(answer.body)}`,
        );
    }
    const refreshed = await api('GET', '/api/v1/resources/refresh');
    if (refreshed.body.remotes?.some((r: { status: string }) => r.status !== 'online'))
      throw new Error(`a demo cluster is not online: ${JSON.stringify(refreshed.body)}`);
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
  const clients = clusters.map((cluster) => new Etcd3(cluster.etcd.clientOptions()));
  try {
    const images = await Promise.all(
      clients.map((client) => client.getAll().prefix(SIM_IMAGES).strings()),
    );
    for (const [i, client] of clients.entries()) {
      for (const [j, theirs] of images.entries()) {
        if (i === j) continue;
        for (const [key, value] of Object.entries(theirs))
          if (!(key in images[i])) await client.put(key).value(value);
      }
    }
  } finally {
    for (const client of clients) client.close();
  }
}
