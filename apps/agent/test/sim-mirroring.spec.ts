import { startCluster, type AgentClient, type TestCluster } from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

/**
 * RBD mirroring of the sim storage driver through real agents of two clusters (real etcds): the
 * pairing and mirroring RPCs, the simulated rbd-mirror that one agent of each cluster runs, and
 * what a dead peer looks like.
 */
describe('simulated RBD mirroring through the agents of two sim clusters', () => {
  let east: TestCluster;
  let west: TestCluster;
  let viaEast: AgentClient[];
  let viaWest: AgentClient;
  let token: string;
  const ref = { pool: 'rbd', image: 'mirrored-disk0' };

  beforeAll(async () => {
    [east, west] = await Promise.all([
      startCluster({ clusterId: 'mirror-east', nodes: 2, vmsPerNode: 0, auditFile: true }),
      startCluster({ clusterId: 'mirror-west', nodes: 1, vmsPerNode: 0, auditFile: true }),
    ]);
    const eastKey = await east.createApiKey(['storage:*'], { principal: 'manager:east' });
    viaEast = east.agents.map((agent) => east.connect(eastKey, agent));
    viaWest = west.connect(await west.createApiKey(['storage:*'], { principal: 'manager:west' }));
    await east.createSimImage({ ...ref, sizeBytes: 2 ** 30 });
  });
  afterAll(async () => {
    for (const client of [...(viaEast ?? []), viaWest]) client?.close();
    await Promise.all([east?.stop(), west?.stop()]);
  });

  it('pairs the pools with a bootstrap token that no log, audit file or etcd of the issuer keeps', async () => {
    const created = await viaEast[0].storage.createPeerBootstrap({ pool: 'rbd', siteName: 'east' });
    token = created.token;
    expect(created.siteName).toBe('east');
    const imported = await viaWest.storage.importPeerBootstrap({
      pool: 'rbd',
      siteName: 'west',
      token,
      direction: 'rx-tx',
    });
    expect(imported).toMatchObject({
      pool: 'rbd',
      mode: 'image',
      siteName: 'west',
      peers: [{ siteName: 'east', direction: 'rx-tx' }],
    });
    // The same token's pairing seen from east, through its other agent.
    expect(await viaEast[1].storage.getPoolMirrorStatus({ pool: 'rbd' })).toMatchObject({
      siteName: 'east',
      peers: [{ siteName: 'west', direction: 'rx-tx' }],
    });

    const key = (JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { key: string }).key;
    for (const cluster of [east, west]) {
      for (const agent of cluster.agents) {
        expect(agent.process.output()).not.toContain(key);
        expect(agent.process.output()).not.toContain(token);
        expect(readFileSync(join(agent.stateDir, 'rpc-audit.log'), 'utf8')).not.toContain(key);
      }
    }
    const etcd = new Etcd3(east.etcd.clientOptions());
    try {
      expect(JSON.stringify(await etcd.getAll().prefix('/debvisor/').strings())).not.toContain(key);
    } finally {
      etcd.close();
    }
  });

  it('refuses a garbled token with INVALID_ARGUMENT without echoing it', async () => {
    const garbled = await rpcError(
      viaWest.storage.importPeerBootstrap({
        pool: 'rbd',
        siteName: 'west',
        token: `${token.slice(0, 20)}!!`,
        direction: 'rx-tx',
      }),
    );
    expect(garbled.code).toBe(status.INVALID_ARGUMENT);
    expect(garbled.details).not.toContain(token.slice(0, 20));
  });

  it('mirrors an image: the rbd-mirror of one west agent creates a replaying non-primary mirror of the same global id', async () => {
    const enabled = await viaEast[0].storage.enableMirroring({
      ...ref,
      mode: 'snapshot',
      scheduleInterval: '1h',
    });
    expect(enabled).toMatchObject({
      enabled: true,
      primary: true,
      mode: 'snapshot',
      scheduleInterval: '1h',
      globalId: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    const mirror = await eventually(async () => {
      const answer = await viaWest.storage.getMirrorStatus(ref).catch(() => undefined);
      return answer?.state === 'up+replaying' ? answer : undefined;
    }, 10_000);
    expect(mirror.value).toMatchObject({
      primary: false,
      globalId: enabled.globalId,
      lastMirroredSnapshotAt: enabled.lastSnapshotAt,
      peerState: 'up+stopped',
    });
    const primary = await eventually(async () => {
      const answer = await viaEast[1].storage.getMirrorStatus(ref);
      return answer.peerState === 'up+replaying' ? answer : undefined;
    }, 10_000);
    expect(primary.value).toMatchObject({
      state: 'up+stopped',
      lastMirroredSnapshotAt: enabled.lastSnapshotAt,
    });
    expect(
      (await viaWest.storage.listImages({ pool: 'rbd' })).images.map((i) => i.image),
    ).toContain(ref.image);

    // A promotion without force is refused while east is primary, naming why.
    const refused = await rpcError(viaWest.storage.promoteImage({ ...ref, force: false }));
    expect(refused.code).toBe(status.FAILED_PRECONDITION);
    expect(refused.details).toMatch(/still primary at site east/);
  });

  it('reports the mirror down+unknown within seconds once the primary cluster is gone, and a forced promotion works', async () => {
    await Promise.all(east.agents.map((agent) => agent.stop()));
    await east.etcd.stop();
    const down = await eventually(async () => {
      const answer = await viaWest.storage.getMirrorStatus(ref);
      return answer.state === 'down+unknown' ? answer : undefined;
    }, 10_000);
    expect(down.ms).toBeLessThan(10_000);
    expect(down.value.description).toMatch(/east/);
    expect((await viaWest.storage.getPoolMirrorStatus({ pool: 'rbd' })).states).toMatchObject({
      unknown: 1,
    });
    expect(await viaWest.storage.promoteImage({ ...ref, force: true })).toMatchObject({
      primary: true,
    });
  });
});
