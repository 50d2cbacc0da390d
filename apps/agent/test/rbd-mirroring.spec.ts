import {
  MIRRORING_CLIENT_CAPS,
  benchWrite,
  pollUntil,
  startCephCluster,
  startRbdMirrorPair,
  type CephCluster,
  type RbdMirrorPair,
} from '@debvisor/testing';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RbdCliRepository } from '../src/drivers/rbd/rbd-cli.repository';
import { RbdMirroring } from '../src/drivers/rbd/rbd-mirroring';
import { RbdStorageDriver } from '../src/drivers/rbd/rbd-storage.driver';
import type { ImageMirrorStatus, ImageRef, StorageDriver } from '../src/drivers/storage.driver';
import { AgentError, ErrorCode } from '../src/shared/agent-error';
import { systemClock } from '../src/shared/clock';

/**
 * Snapshot-based RBD mirroring between two real Ceph clusters (site-a, site-b), each with its
 * rbd-mirror daemon, driven through the rbd driver's mirroring as the agent's Ceph client. One
 * cluster pair for the whole file; the tests run in order and build on each other's state.
 */

const PEER_TIMEOUT_MS = 5_000;
const COMMAND_TIMEOUT_MS = 30_000;
const POOL = 'rbd';
/** rbd-mirror rewrites `rbd mirror image status` every 30 s: waits on it allow one period and some. */
const STATUS_WAIT_MS = 75_000;

/** The rbd storage driver as the agent wires it (create-drivers.ts): CLI repository, mirroring, VM locks. */
function driverFor(cluster: CephCluster, site: string): StorageDriver {
  const cli = new RbdCliRepository({
    cluster: cluster.name,
    conf: cluster.confPath,
    keyring: cluster.clientKeyringPath,
    clientId: cluster.clientId,
    rbdBinary: 'rbd',
    cephBinary: 'ceph',
    radosBinary: 'rados',
    timeoutMs: COMMAND_TIMEOUT_MS,
    peerTimeoutMs: PEER_TIMEOUT_MS,
  });
  const mirroring = new RbdMirroring({
    cli,
    clock: systemClock,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    peerTimeoutMs: PEER_TIMEOUT_MS,
    defaultSiteName: site,
    imageHolder: (ref) => driver.imageHolder(ref),
  });
  const driver: RbdStorageDriver = new RbdStorageDriver(cli, mirroring);
  return driver;
}

function rpoSeconds(status: ImageMirrorStatus): number {
  expect(status.lastMirroredSnapshotAt).not.toBe('');
  return (Date.now() - Date.parse(status.lastMirroredSnapshotAt)) / 1000;
}

async function expectAgentError(
  promise: Promise<unknown>,
  code: ErrorCode,
  message?: RegExp,
): Promise<AgentError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AgentError);
  expect((error as AgentError).code).toBe(code);
  if (message) expect((error as AgentError).message).toMatch(message);
  return error as AgentError;
}

/** Every file under `dir` except the monitor's and OSD's data stores (where Ceph keeps its keys by design). */
function writtenFiles(dir: string): string[] {
  const files: string[] = [];
  const walk = (path: string) => {
    for (const entry of readdirSync(path)) {
      const full = join(path, entry);
      const stat = statSync(full, { throwIfNoEntry: false });
      if (!stat) continue;
      if (stat.isDirectory()) {
        if (full === join(dir, 'mon') || full === join(dir, 'osd')) continue;
        walk(full);
      } else if (stat.isFile()) files.push(full);
    }
  };
  walk(dir);
  return files;
}

describe('RBD snapshot mirroring between two real Ceph clusters', () => {
  let a: CephCluster;
  let b: CephCluster;
  let pair: RbdMirrorPair;
  let siteA: StorageDriver;
  let siteB: StorageDriver;
  let token = '';
  const timings: Record<string, number> = {};
  const disk: ImageRef = { pool: POOL, image: 'vm1-disk0' };

  /** Waits until B holds A's newest mirror snapshot completely; answers B's status. */
  const waitSynced = async (
    from: StorageDriver,
    to: StorageDriver,
    ref: ImageRef,
    what: string,
  ) => {
    const primary = await from.mirrorStatus(ref);
    expect(primary.lastSnapshotAt).not.toBe('');
    return pollUntil(
      `${what}: the secondary holds the snapshot of ${primary.lastSnapshotAt}`,
      STATUS_WAIT_MS,
      async () => {
        const secondary = await to.mirrorStatus(ref);
        return secondary.lastMirroredSnapshotAt >= primary.lastSnapshotAt ? secondary : undefined;
      },
    );
  };

  beforeAll(async () => {
    const started = Date.now();
    [a, b] = await Promise.all([
      startCephCluster({ name: 'sitea', clientCaps: MIRRORING_CLIENT_CAPS }),
      startCephCluster({ name: 'siteb', clientCaps: MIRRORING_CLIENT_CAPS }),
    ]);
    pair = await startRbdMirrorPair(a, b);
    timings.pairStartMs = Date.now() - started;
    siteA = driverFor(a, 'site-a');
    siteB = driverFor(b, 'site-b');
  }, 240_000);

  afterAll(async () => {
    console.log(`rbd mirroring timings: ${JSON.stringify(timings)}`);
    await pair?.stop();
    await Promise.all([a?.stop(), b?.stop()]);
  }, 60_000);

  it('pairs the pools through a peer bootstrap token created at one site and imported at the other', async () => {
    token = await siteA.createPeerBootstrap(POOL, 'site-a');
    expect(token).toMatch(/^[A-Za-z0-9+/=]{40,}$/);
    await expectAgentError(
      siteB.importPeerBootstrap(POOL, 'site-b', 'bm90IGEgdG9rZW4=', 'rx-tx'),
      ErrorCode.InvalidArgument,
      /not one of a Ceph cluster/,
    );
    await expectAgentError(
      siteB.importPeerBootstrap(POOL, '-site', token, 'rx-tx'),
      ErrorCode.InvalidArgument,
      /site name/,
    );

    const atB = await siteB.importPeerBootstrap(POOL, 'site-b', token, 'rx-tx');
    expect(atB).toMatchObject({ pool: POOL, mode: 'image', siteName: 'site-b' });
    expect(atB.peers).toEqual([
      expect.objectContaining({ siteName: 'site-a', direction: 'rx-tx' }),
    ]);
    // rx-tx: site-b registered itself at site-a too.
    const atA = await siteA.poolMirrorStatus(POOL);
    expect(atA).toMatchObject({ mode: 'image', siteName: 'site-a' });
    expect(atA.peers).toEqual([
      expect.objectContaining({ siteName: 'site-b', direction: 'rx-tx' }),
    ]);
    // Both daemons serve the pool.
    await pollUntil('both rbd-mirror daemons report OK', 30_000, async () => {
      const [x, y] = await Promise.all([
        siteA.poolMirrorStatus(POOL),
        siteB.poolMirrorStatus(POOL),
      ]);
      return x.daemonHealth === 'OK' && y.daemonHealth === 'OK';
    });
  });

  it('refuses hostile names and intervals before any command runs', async () => {
    const refusing = new RbdMirroring({
      cli: { run: () => Promise.reject(new Error('no command may run')) },
      clock: systemClock,
      commandTimeoutMs: 1000,
      peerTimeoutMs: 1000,
      defaultSiteName: 'x',
    });
    await expectAgentError(
      refusing.enableMirroring({ pool: POOL, image: '--force' }, ''),
      ErrorCode.InvalidArgument,
    );
    await expectAgentError(
      refusing.enableMirroring({ pool: 'rbd/x', image: 'a' }, ''),
      ErrorCode.InvalidArgument,
    );
    await expectAgentError(
      refusing.enableMirroring({ pool: POOL, image: 'a' }, '1s; rm'),
      ErrorCode.InvalidArgument,
      /schedule interval/,
    );
    await expectAgentError(
      refusing.promote({ pool: POOL, image: 'a\nb' }, true),
      ErrorCode.InvalidArgument,
    );
    await expectAgentError(refusing.createPeerBootstrap('-p', ''), ErrorCode.InvalidArgument);
    await expectAgentError(
      refusing.importPeerBootstrap(POOL, '', token.slice(0, 20), 'rx-tx'),
      ErrorCode.InvalidArgument,
    );
  });

  it('mirrors an image with data: the secondary replays it and holds the same content after a mirror snapshot', async () => {
    await a.exec('rbd', ['create', '--size', '64M', '--', `${POOL}/${disk.image}`], {
      as: 'client',
    });
    await benchWrite(a, POOL, disk.image, 16 * 1024 * 1024);
    const disabled = await siteA.mirrorStatus(disk);
    expect(disabled).toMatchObject({ enabled: false, state: '', primary: false });

    const enabledAt = Date.now();
    const enabled = await siteA.enableMirroring(disk, '1m');
    expect(enabled).toMatchObject({
      enabled: true,
      primary: true,
      mode: 'snapshot',
      scheduleInterval: '1m',
    });
    expect(enabled.globalId).toMatch(/^[0-9a-f-]{36}$/);
    expect(enabled.lastSnapshotAt).not.toBe('');
    // Enabling again is idempotent; another interval replaces the schedule.
    expect((await siteA.enableMirroring(disk, '2m')).scheduleInterval).toBe('2m');

    await pollUntil(
      "site-b's rbd-mirror replays the image",
      60_000,
      async () => (await pair.mirrorB.imageStatus(POOL, disk.image))?.state === 'Replaying',
    );
    timings.firstReplayingDaemonMs = Date.now() - enabledAt;
    const replaying = await pollUntil('site-b reports up+replaying', STATUS_WAIT_MS, async () => {
      const status = await siteB.mirrorStatus(disk);
      return status.state === 'up+replaying' ? status : undefined;
    });
    timings.firstReplayingStatusMs = Date.now() - enabledAt;
    expect(replaying).toMatchObject({
      enabled: true,
      primary: false,
      globalId: enabled.globalId,
      splitBrain: false,
      scheduleInterval: '',
    });
    expect(replaying.description).toBe('replaying');

    await benchWrite(a, POOL, disk.image, 8 * 1024 * 1024);
    const snapshot = await siteA.createMirrorSnapshot(disk);
    expect(snapshot.lastSnapshotAt >= enabled.lastSnapshotAt).toBe(true);
    const synced = await waitSynced(siteA, siteB, disk, 'after a mirror snapshot');
    expect(rpoSeconds(synced)).toBeLessThan(60);
    expect(await b.imageSha256(POOL, disk.image)).toBe(await a.imageSha256(POOL, disk.image));
    // A secondary takes no mirror snapshots and cannot be resynced while primary elsewhere is fine.
    await expectAgentError(
      siteB.createMirrorSnapshot(disk),
      ErrorCode.FailedPrecondition,
      /not primary here/,
    );
    await expectAgentError(siteA.resync(disk), ErrorCode.FailedPrecondition, /primary here/);
  }, 180_000);

  it("reports a rising RPO while the peer's rbd-mirror is stopped, and a low one after it restarts", async () => {
    await siteA.enableMirroring(disk, '');
    const before = await waitSynced(siteA, siteB, disk, 'before stopping');
    const rpoBefore = rpoSeconds(before);

    await pair.mirrorB.stop();
    const down = await pollUntil('site-b reports its image down', STATUS_WAIT_MS, async () => {
      const status = await siteB.mirrorStatus(disk);
      return status.state.startsWith('down+') ? status : undefined;
    });
    expect(down.lastMirroredSnapshotAt).toBe(before.lastMirroredSnapshotAt);
    // New data and snapshots at the primary do not arrive: the RPO only grows.
    await benchWrite(a, POOL, disk.image, 4 * 1024 * 1024);
    const newer = await siteA.createMirrorSnapshot(disk);
    expect(newer.lastSnapshotAt > before.lastMirroredSnapshotAt).toBe(true);
    const rising = await pollUntil(
      'the RPO rises to 20 s and 5 s above where it was',
      45_000,
      async () => {
        const status = await siteB.mirrorStatus(disk);
        expect(status.lastMirroredSnapshotAt).toBe(before.lastMirroredSnapshotAt);
        const rpo = rpoSeconds(status);
        return rpo > Math.max(20, rpoBefore + 5) ? rpo : undefined;
      },
    );
    const atPrimary = await siteA.mirrorStatus(disk);
    expect(atPrimary.lastMirroredSnapshotAt <= before.lastMirroredSnapshotAt).toBe(true);
    expect(atPrimary.peerState).toMatch(/^down\+/);

    // Back: the next snapshot (the schedule's, here taken by hand) arrives and the RPO falls.
    await pair.mirrorB.start();
    await siteA.createMirrorSnapshot(disk);
    const after = await waitSynced(siteA, siteB, disk, 'after the restart');
    expect(rpoSeconds(after)).toBeLessThan(rising);
    expect(await b.imageSha256(POOL, disk.image)).toBe(await a.imageSha256(POOL, disk.image));
  }, 240_000);

  it('refuses to demote or disable an image a VM or a running writer holds, naming the holder', async () => {
    const held: ImageRef = { pool: POOL, image: 'held-disk0' };
    await siteA.createImage(POOL, held.image, 8 * 1024 * 1024);
    await siteA.enableMirroring(held, '');
    // The VM lock the agent takes when a VM starts.
    await siteA.lockImage(held, 'vm-held');
    await expectAgentError(siteA.demote(held), ErrorCode.FailedPrecondition, /in use by vm-held/);
    await expectAgentError(
      siteA.disableMirroring(held, false),
      ErrorCode.FailedPrecondition,
      /in use by vm-held/,
    );
    await siteA.unlockImage(held, 'vm-held');
    // librbd's own lock, as a running QEMU holds it.
    await a.exec('rbd', ['lock', 'add', '--', `${POOL}/${held.image}`, 'writer-1'], {
      as: 'client',
    });
    await expectAgentError(siteA.demote(held), ErrorCode.FailedPrecondition, /in use by writer-1/);
    expect((await siteA.mirrorStatus(held)).primary).toBe(true);
    const locks = await a.exec('rbd', [
      'lock',
      'ls',
      '--format',
      'json',
      '--',
      `${POOL}/${held.image}`,
    ]);
    const [lock] = JSON.parse(locks.stdout.toString('utf8')) as { id: string; locker: string }[];
    await a.exec('rbd', ['lock', 'rm', '--', `${POOL}/${held.image}`, lock!.id, lock!.locker]);
    await siteA.disableMirroring(held, false);
    expect((await siteA.mirrorStatus(held)).enabled).toBe(false);
  });

  it('switches over planned: final snapshot, synced, demote at A, promote at B, with the same content', async () => {
    await benchWrite(a, POOL, disk.image, 8 * 1024 * 1024);
    const started = Date.now();
    await siteA.createMirrorSnapshot(disk);
    await waitSynced(siteA, siteB, disk, 'final snapshot');
    const syncedMs = Date.now() - started;
    const content = await a.imageSha256(POOL, disk.image);
    const demoted = await siteA.demote(disk);
    expect(demoted.primary).toBe(false);
    const promoted = await siteB.promote(disk, false);
    timings.switchoverMs = Date.now() - started;
    timings.switchoverDemotePromoteMs = timings.switchoverMs - syncedMs;
    expect(promoted).toMatchObject({ primary: true, enabled: true, splitBrain: false });
    expect(await b.imageSha256(POOL, disk.image)).toBe(content);
    expect((await siteA.mirrorStatus(disk)).splitBrain).toBe(false);
    // Back again the same way, so that site-a is primary for the failover below.
    await siteB.createMirrorSnapshot(disk);
    await waitSynced(siteB, siteA, disk, 'switch back');
    await siteB.demote(disk);
    await siteA.promote(disk, false);
    expect(await a.imageSha256(POOL, disk.image)).toBe(content);
  }, 240_000);

  let fenced = '';
  it("fails over with site-a's cluster stopped: a planned promotion is refused, a forced one succeeds", async () => {
    await benchWrite(a, POOL, disk.image, 4 * 1024 * 1024);
    await siteA.createMirrorSnapshot(disk);
    await waitSynced(siteA, siteB, disk, 'before the failure');
    fenced = await a.imageSha256(POOL, disk.image);
    await pair.mirrorA.kill();
    await a.stopDaemons();

    await expectAgentError(
      siteB.promote(disk, false),
      ErrorCode.FailedPrecondition,
      /still primary at the peer/,
    );
    const started = Date.now();
    const promoted = await siteB.promote(disk, true);
    timings.forcedPromoteMs = Date.now() - started;
    expect(promoted.primary).toBe(true);
    expect(await b.imageSha256(POOL, disk.image)).toBe(fenced);
    // New writes at the survivor: site-a's copy is stale from now on.
    await b.writeImage(POOL, disk.image, 0, randomBytes(1024 * 1024));
  }, 240_000);

  it('fails calls that reach a stopped peer within the peer timeout; local calls stay fast', async () => {
    const started = Date.now();
    await expectAgentError(
      siteB.importPeerBootstrap(POOL, 'site-b', token, 'rx-tx'),
      ErrorCode.Unavailable,
      /peer cluster did not answer within 5 s/,
    );
    const elapsed = Date.now() - started;
    timings.peerDownImportMs = elapsed;
    expect(elapsed).toBeLessThan(PEER_TIMEOUT_MS + 5_000);
    const local = Date.now();
    await siteB.mirrorStatus(disk);
    await siteB.poolMirrorStatus(POOL);
    expect(Date.now() - local).toBeLessThan(5_000);
  }, 60_000);

  it('detects the split brain when site-a returns, and resyncs it from site-b after its demotion', async () => {
    await a.startDaemons();
    await pair.mirrorA.start();
    const [atA, atB] = await pollUntil(
      'both sites report the split brain',
      STATUS_WAIT_MS,
      async () => {
        const both = await Promise.all([siteA.mirrorStatus(disk), siteB.mirrorStatus(disk)]);
        return both.every((s) => s.primary && s.splitBrain) ? both : undefined;
      },
    );
    expect(atA.peerDescription).toBe('local image is primary');
    expect(atB.peerDescription).toBe('local image is primary');

    await siteA.demote(disk);
    await pollUntil('site-a reports split-brain', STATUS_WAIT_MS, async () => {
      const status = await siteA.mirrorStatus(disk);
      return status.state === 'up+error' && status.splitBrain;
    });
    const resyncAt = Date.now();
    await siteA.resync(disk);
    const expected = await b.imageSha256(POOL, disk.image);
    expect(expected).not.toBe(fenced);
    await pollUntil('site-a replays from site-b again', STATUS_WAIT_MS, async () => {
      const status = await siteA.mirrorStatus(disk);
      return status.state === 'up+replaying' && !status.splitBrain && !status.primary;
    });
    await siteB.createMirrorSnapshot(disk);
    await waitSynced(siteB, siteA, disk, 'after the resync');
    timings.resyncMs = Date.now() - resyncAt;
    expect(await a.imageSha256(POOL, disk.image)).toBe(expected);
    expect((await siteB.mirrorStatus(disk)).splitBrain).toBe(false);
  }, 300_000);

  it('never writes the bootstrap token or its key to a file or log of either site', () => {
    expect(token).not.toBe('');
    const key = (JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { key: string }).key;
    const files = [...writtenFiles(a.dir), ...writtenFiles(b.dir)];
    expect(files.filter((file) => file.includes('/log/')).length).toBeGreaterThan(0);
    const leaking = files.filter((file) => {
      const text = readFileSync(file).toString('latin1');
      return text.includes(token) || text.includes(key);
    });
    expect(leaking).toEqual([]);
  });
});
