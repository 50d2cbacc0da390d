import { startEtcd, type EtcdInstance } from '@debvisor/testing';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { Clock } from '../../shared/clock';
import type { ImageRef } from '../storage.driver';
import { SimRbdMirrorDaemon } from './sim-rbd-mirror.daemon';
import { SimStorageDriver } from './sim-storage.driver';

const GiB = 1024 ** 3;
const logger = pino({ level: 'silent' });

/** A clock the test moves (schedules, staleness); starts at the real time. */
function testClock(): Clock & { advance(ms: number): void } {
  let offset = 0;
  return {
    now: () => new Date(Date.now() + offset),
    sleep: async () => undefined,
    advance: (ms) => (offset += ms),
  };
}

interface Site {
  name: string;
  server: EtcdInstance;
  etcd: Etcd3;
  driver: SimStorageDriver;
  daemon: SimRbdMirrorDaemon;
}

/** Simulated mirroring between two sim clusters, each with its own real etcd. */
describe('simulated RBD mirroring between two sim clusters (two real etcds)', () => {
  const clock = testClock();
  let east: Site;
  let west: Site;
  let n = 0;
  const ref = (): ImageRef => ({ pool: 'rbd', image: `vm-${++n}-disk0` });

  async function site(name: string, server?: EtcdInstance): Promise<Site> {
    const etcdServer = server ?? (await startEtcd({ name }));
    const etcd = new Etcd3(etcdServer.clientOptions());
    const driver = new SimStorageDriver({
      etcd,
      clock,
      clusterId: name,
      nodeId: 'node-1',
      etcdEndpoints: [etcdServer.endpoint],
      peerEtcd: { tls: etcdServer.tls },
      peerTimeoutMs: 800,
      staleAfterMs: 3_000,
    });
    const daemon = new SimRbdMirrorDaemon({
      driver,
      etcd,
      nodeId: 'node-1',
      intervalMs: 200,
      clock,
      logger,
    });
    return { name, server: etcdServer, etcd, driver, daemon };
  }

  function close(s: Site | undefined): void {
    s?.driver.close();
    s?.etcd.close();
  }

  async function refusal(call: Promise<unknown>): Promise<AgentError> {
    const error = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(error instanceof AgentError))
      throw new Error(`expected an AgentError, got ${String(error)}`);
    return error;
  }

  /** One rbd-mirror round at each site (west first: it replays from east). */
  async function replay(): Promise<void> {
    await west.daemon.replay();
    await east.daemon.replay();
  }

  /** A mirrored image: created and enabled at east, replayed to west. */
  async function mirrored(interval = ''): Promise<ImageRef> {
    const image = ref();
    await east.driver.createImage(image.pool, image.image, 10 * GiB);
    await east.driver.enableMirroring(image, interval);
    await replay();
    return image;
  }

  beforeAll(async () => {
    [east, west] = await Promise.all([site('dc-east'), site('dc-west')]);
  });
  afterAll(async () => {
    close(east);
    close(west);
    await Promise.all([east?.server.stop(), west?.server.stop()]);
  });

  it('pairs the pools through a bootstrap token that carries a key the peer must present', async () => {
    expect(
      (
        await refusal(
          west.driver.importPeerBootstrap('rbd', 'dc-west', 'bm90IGEgdG9rZW4=', 'rx-tx'),
        )
      ).code,
    ).toBe(ErrorCode.InvalidArgument);
    const token = await east.driver.createPeerBootstrap('rbd', 'dc-east');
    const decoded = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as {
      key: string;
      endpoints: string[];
    };
    expect(decoded.endpoints).toEqual([east.server.endpoint]);

    // A token whose key east never issued is refused, and so is a site of the same name.
    const forged = Buffer.from(JSON.stringify({ ...decoded, key: 'A'.repeat(43) })).toString(
      'base64',
    );
    expect(
      (await refusal(west.driver.importPeerBootstrap('rbd', 'dc-west', forged, 'rx-tx'))).code,
    ).toBe(ErrorCode.PermissionDenied);
    expect(
      (await refusal(west.driver.importPeerBootstrap('rbd', 'dc-east', token, 'rx-tx'))).message,
    ).toMatch(/both sites are named dc-east/);
    expect(
      (await refusal(west.driver.importPeerBootstrap('other', 'dc-west', token, 'rx-tx'))).message,
    ).toMatch(/pool rbd/);

    const status = await west.driver.importPeerBootstrap('rbd', 'dc-west', token, 'rx-tx');
    expect(status).toMatchObject({
      pool: 'rbd',
      mode: 'image',
      siteName: 'dc-west',
      peers: [{ siteName: 'dc-east', direction: 'rx-tx', uuid: expect.any(String) }],
    });
    expect(await east.driver.poolMirrorStatus('rbd')).toMatchObject({
      siteName: 'dc-east',
      peers: [{ siteName: 'dc-west', direction: 'rx-tx' }],
    });
    // The key is kept where the peer needs it, never in what callers read.
    expect(JSON.stringify(await east.driver.poolMirrorStatus('rbd'))).not.toContain(decoded.key);
    expect(JSON.stringify(status)).not.toContain(decoded.key);
    // East keeps only a hash of the key it issued.
    expect(
      JSON.stringify(await east.etcd.getAll().prefix('/debvisor/sim/rbd-mirror/').strings()),
    ).not.toContain(decoded.key);
  });

  it('replays a primary image into a non-primary mirror of the same global id and content at the peer', async () => {
    const image = await mirrored();
    const [primary, secondary] = await Promise.all([
      east.driver.mirrorStatus(image),
      west.driver.mirrorStatus(image),
    ]);
    expect(primary).toMatchObject({
      enabled: true,
      primary: true,
      state: 'up+stopped',
      mode: 'snapshot',
      globalId: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    expect(secondary).toMatchObject({
      enabled: true,
      primary: false,
      state: 'up+replaying',
      globalId: primary.globalId,
      peerState: 'up+stopped',
    });
    expect(secondary.lastMirroredSnapshotAt).toBe(primary.lastSnapshotAt);
    expect(primary).toMatchObject({
      peerState: 'up+replaying',
      lastMirroredSnapshotAt: primary.lastSnapshotAt,
    });
    expect(await west.driver.imageContent(image)).toEqual(await east.driver.imageContent(image));
    expect(await west.driver.getImage(image)).toMatchObject({ sizeBytes: 10 * GiB });

    // Writes land at the primary; the mirror is read-only and catches up with the next mirror snapshot.
    expect((await refusal(west.driver.writeImage(image, 'vm'))).message).toMatch(
      /non-primary mirror of site dc-east \(read-only\)/,
    );
    await east.driver.writeImage(image, 'vm');
    await replay();
    expect(await west.driver.imageContent(image)).not.toEqual(
      await east.driver.imageContent(image),
    );
    await east.driver.createMirrorSnapshot(image);
    await replay();
    expect(await west.driver.imageContent(image)).toEqual(await east.driver.imageContent(image));
    expect((await west.driver.poolMirrorStatus('rbd')).states.replaying).toBeGreaterThan(0);
  });

  it('takes mirror snapshots on the image’s schedule', async () => {
    const image = await mirrored('5m');
    const first = (await east.driver.mirrorStatus(image)).lastSnapshotAt;
    await east.driver.writeImage(image, 'vm');
    await replay();
    expect((await east.driver.mirrorStatus(image)).lastSnapshotAt).toBe(first);
    clock.advance(5 * 60_000);
    try {
      await replay();
      await replay();
      const status = await west.driver.mirrorStatus(image);
      expect(Date.parse(status.lastMirroredSnapshotAt)).toBeGreaterThan(Date.parse(first));
      expect(status).toMatchObject({ scheduleInterval: '5m', state: 'up+replaying' });
      expect(await west.driver.imageContent(image)).toEqual(await east.driver.imageContent(image));
    } finally {
      clock.advance(-5 * 60_000);
    }
  });

  it('switches over as planned: demote, replay the demotion snapshot, promote — no write lost', async () => {
    const image = await mirrored();
    await east.driver.lockImage(image, 'vm-s');
    await east.driver.writeImage(image, 'vm-s');
    expect((await refusal(west.driver.promote(image, false))).message).toMatch(
      /still primary at site dc-east/,
    );
    expect((await refusal(east.driver.demote(image))).message).toMatch(/in use by vm-s/);
    await east.driver.unlockImage(image, 'vm-s');
    const final = await east.driver.imageContent(image);
    await east.driver.demote(image);
    expect((await refusal(west.driver.promote(image, false))).message).toMatch(
      /not received the demotion snapshot/,
    );
    await west.daemon.replay();
    expect(await west.driver.promote(image, false)).toMatchObject({
      primary: true,
      state: 'up+stopped',
    });
    expect(await west.driver.imageContent(image)).toEqual(final);

    // Now east replays from west.
    await west.driver.writeImage(image, 'vm-s');
    await west.driver.createMirrorSnapshot(image);
    await replay();
    expect(await east.driver.mirrorStatus(image)).toMatchObject({
      primary: false,
      state: 'up+replaying',
      splitBrain: false,
    });
    expect(await east.driver.imageContent(image)).toEqual(await west.driver.imageContent(image));
  });

  it('removes the non-primary mirror when the primary stops mirroring; a non-primary needs force to disable', async () => {
    const image = await mirrored();
    expect((await refusal(west.driver.disableMirroring(image, false))).message).toMatch(
      /non-primary mirror/,
    );
    expect(await east.driver.disableMirroring(image, false)).toMatchObject({ enabled: false });
    await replay();
    expect(await west.driver.getImage(image)).toBeUndefined();
    expect(await east.driver.getImage(image)).toBeDefined();
  });

  it('refuses to replay over a peer image of the same name that is not the mirror (another VM’s disk)', async () => {
    const image = ref();
    await west.driver.createImage(image.pool, image.image, GiB);
    const theirs = await west.driver.imageContent(image);
    await east.driver.createImage(image.pool, image.image, GiB);
    await east.driver.enableMirroring(image, '');
    await replay();
    expect(await west.driver.imageContent(image)).toEqual(theirs);
    expect(await west.driver.mirrorStatus(image)).toMatchObject({ enabled: false });
    expect(await east.driver.mirrorStatus(image)).toMatchObject({
      peerState: 'up+error',
      peerDescription: expect.stringMatching(/another image named/),
    });
  });

  describe('when east goes down', () => {
    it('marks the mirror down+unknown within the peer timeout, fails over by force, then detects the split brain and resyncs', async () => {
      const image = await mirrored();
      await east.driver.writeImage(image, 'vm-d');
      const lost = await east.driver.imageContent(image); // written after the last mirror snapshot
      await east.server.stop();
      try {
        const started = Date.now();
        await west.daemon.replay();
        expect(Date.now() - started).toBeLessThan(5_000);
        expect(await west.driver.mirrorStatus(image)).toMatchObject({
          primary: false,
          state: 'down+unknown',
          description: expect.stringMatching(/dc-east/),
        });
        expect((await refusal(west.driver.promote(image, false))).code).toBe(ErrorCode.Unavailable);
        expect(await west.driver.promote(image, true)).toMatchObject({ primary: true });
        await west.driver.writeImage(image, 'vm-d');
      } finally {
        east.server = await startEtcd({
          name: 'dc-east',
          dataDir: east.server.dataDir,
          clientPort: Number(new URL(east.server.endpoint).port),
        });
      }
      // East is back with its image still primary: split brain on both sides (west's next rounds reach east again).
      await waitFor(async () => {
        await replay();
        return (await west.driver.mirrorStatus(image)).splitBrain || undefined;
      }, 5_000);
      expect(await east.driver.mirrorStatus(image)).toMatchObject({
        primary: true,
        splitBrain: true,
        state: 'up+error',
      });
      expect(await west.driver.mirrorStatus(image)).toMatchObject({
        primary: true,
        splitBrain: true,
      });
      expect(await east.driver.imageContent(image)).toEqual(lost);

      // Failback: demote the stale side; its data diverged, so it must be resynced.
      await east.driver.demote(image);
      await replay();
      expect(await east.driver.mirrorStatus(image)).toMatchObject({
        primary: false,
        state: 'up+error',
        description: expect.stringMatching(/split-brain/),
      });
      expect(await west.driver.mirrorStatus(image)).toMatchObject({
        splitBrain: false,
        peerState: 'up+error',
      });
      expect((await refusal(west.driver.resync(image))).message).toMatch(/is primary here/);
      await east.driver.resync(image);
      await west.driver.createMirrorSnapshot(image); // what west wrote after its promotion travels too
      await replay();
      expect(await east.driver.mirrorStatus(image)).toMatchObject({
        primary: false,
        state: 'up+replaying',
        splitBrain: false,
      });
      expect(await east.driver.imageContent(image)).toEqual(await west.driver.imageContent(image));
    });
  });

  it('runs the replayer on one agent of a cluster at a time, and another takes over when it stops', async () => {
    const image = await mirrored();
    const second = new SimStorageDriver({
      etcd: west.etcd,
      clock,
      clusterId: 'dc-west',
      nodeId: 'node-2',
      etcdEndpoints: [west.server.endpoint],
      peerEtcd: { tls: west.server.tls },
      peerTimeoutMs: 800,
      staleAfterMs: 3_000,
    });
    const daemons = [
      west.daemon,
      new SimRbdMirrorDaemon({
        driver: second,
        etcd: west.etcd,
        nodeId: 'node-2',
        intervalMs: 200,
        clock,
        logger,
      }),
    ];
    try {
      for (const daemon of daemons) daemon.start();
      const leader = await waitFor(async () => west.driver.repository.replayerLeader(), 5_000);
      expect(['node-1', 'node-2']).toContain(leader);
      await east.driver.writeImage(image, 'vm');
      await east.driver.createMirrorSnapshot(image);
      await waitFor(
        async () =>
          (await west.driver.imageContent(image)).checksum ===
          (await east.driver.imageContent(image)).checksum
            ? true
            : undefined,
        5_000,
      );

      await daemons[leader === 'node-1' ? 0 : 1].stop();
      const next = await waitFor(async () => {
        const now = await west.driver.repository.replayerLeader();
        return now && now !== leader ? now : undefined;
      }, 10_000);
      expect(next).not.toBe(leader);
      await east.driver.writeImage(image, 'vm');
      await east.driver.createMirrorSnapshot(image);
      await waitFor(
        async () =>
          (await west.driver.imageContent(image)).checksum ===
          (await east.driver.imageContent(image)).checksum
            ? true
            : undefined,
        5_000,
      );
    } finally {
      await Promise.all(daemons.map((daemon) => daemon.stop()));
      second.close();
    }
  });
});

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
