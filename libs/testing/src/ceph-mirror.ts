import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { requireBinary } from './binaries';
import type { CephCluster } from './ceph';
import { spawnManaged, type ManagedProcess } from './processes';

/**
 * What an agent's Ceph client needs for mirroring on top of profile rbd: the site name and peers
 * in config-key, the peer bootstrap user, and the service map (`rbd mirror pool status` reads the
 * rbd-mirror daemons from it). docs/storage.md gives operators the same caps.
 */
export const MIRRORING_CLIENT_CAPS = {
  mon: [
    'profile rbd',
    'allow command "config-key set" with key prefix rbd/mirror/',
    'allow command "config-key get" with key prefix rbd/mirror/',
    'allow command "config-key rm" with key prefix rbd/mirror/',
    'allow command "auth get-or-create" with entity=client.rbd-mirror-peer',
    'allow command "service dump"',
    'allow command "service status"',
  ].join(', '),
  osd: 'profile rbd',
  mgr: 'profile rbd',
};

/**
 * rbd-mirror settings that keep tests fast (seconds instead of Ceph's 30 s defaults): how often it
 * looks for new peers and pools, re-checks image states, moves the sync point, and how fast a
 * standby takes over. Passed on its command line; its local-cluster connection inherits them.
 *
 * Not tunable: rbd-mirror writes the image statuses that `rbd mirror image status` shows on a
 * fixed 30 s timer (MirrorStatusUpdater's UPDATE_INTERVAL_SECONDS), except on some state changes
 * (errors, start, stop). Tests waiting on that status allow ~35 s; imageStatus() below asks the
 * daemon directly and answers at once.
 */
export const FAST_RBD_MIRROR_SETTINGS: Readonly<Record<string, string | number>> = {
  rbd_mirror_pool_replayers_refresh_interval: 1,
  rbd_mirror_image_state_check_interval: 1,
  rbd_mirror_sync_point_update_age: 1,
  rbd_mirror_leader_heartbeat_interval: 1,
  rbd_mirror_leader_max_missed_heartbeats: 2,
  rbd_mirror_delete_retry_interval: 1,
};

export interface RbdMirrorOptions {
  /** The daemon's cephx id: client.rbd-mirror.<id>; default `site`. */
  id?: string;
  /** Settings on its command line, added to FAST_RBD_MIRROR_SETTINGS. */
  settings?: Record<string, string | number>;
  /** How long start() waits for the daemon to answer on its admin socket; default 30 s. */
  startTimeoutMs?: number;
}

/** rbd-mirror's own view of one image (its admin socket): `Replaying`, `Stopped`, … */
export interface RbdMirrorImageView {
  name: string;
  state: string;
  description?: string;
}

export interface RbdMirrorDaemon {
  readonly cluster: CephCluster;
  /** client.rbd-mirror.<id> */
  readonly clientName: string;
  readonly adminSocket: string;
  /** Ceph's log of the daemon (debug output) and its standard output/error. */
  readonly logFile: string;
  readonly outputFile: string;
  readonly running: boolean;
  /** Starts it (again); resolves once it answers on its admin socket. */
  start(): Promise<void>;
  /** SIGTERM, as `systemctl stop`: it leaves cleanly, so peers see its images' status go down. */
  stop(): Promise<void>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
  /** The daemon's view of the image, asked through its admin socket (undefined: it does not replay it). */
  imageStatus(pool: string, image: string): Promise<RbdMirrorImageView | undefined>;
}

/**
 * An rbd-mirror daemon for a cluster of startCephCluster: its own cephx key with
 * `profile rbd-mirror`, its admin socket and logs in the cluster's directory, the test-speed
 * settings above. It replays every pool that has mirroring enabled and a peer.
 */
export async function startRbdMirror(
  cluster: CephCluster,
  options: RbdMirrorOptions = {},
): Promise<RbdMirrorDaemon> {
  const binary = requireBinary('rbd-mirror', 'rbd-mirror');
  const ceph = requireBinary('ceph', 'ceph-common');
  const id = options.id ?? 'site';
  if (!/^[a-z][a-z0-9]{0,30}$/.test(id))
    throw new Error(`rbd-mirror id ${JSON.stringify(id)}: lower-case letters and digits only`);
  const clientName = `client.rbd-mirror.${id}`;
  // The cluster's ceph.conf names keyrings <dir>/$cluster.$name.keyring: the daemon (and the
  // connection to its local cluster it opens itself) finds this one without --keyring.
  const keyring = join(cluster.dir, `${cluster.name}.${clientName}.keyring`);
  await cluster.exec('ceph', [
    'auth',
    'get-or-create',
    clientName,
    'mon',
    'profile rbd-mirror',
    'osd',
    'profile rbd',
    '-o',
    keyring,
  ]);
  const adminSocket = join(cluster.dir, 'run', `rbd-mirror.${id}.asok`);
  const logFile = join(cluster.dir, 'log', `rbd-mirror.${id}.log`);
  const outputFile = join(cluster.dir, 'log', `rbd-mirror.${id}.out`);
  const settings = { ...FAST_RBD_MIRROR_SETTINGS, ...options.settings };
  const args = [
    '--cluster',
    cluster.name,
    '-c',
    cluster.confPath,
    '--id',
    `rbd-mirror.${id}`,
    '-f',
    '--admin-socket',
    adminSocket,
    '--log-file',
    logFile,
    ...Object.entries(settings).map(([key, value]) => `--${key}=${value}`),
  ];
  // rbd-mirror opens its local-cluster connection from Ceph's default conf search (CEPH_CONF, then
  // /etc/ceph/<cluster>.conf), not from -c.
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C',
    TZ: 'UTC',
    CEPH_CONF: cluster.confPath,
  };
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  let daemon: ManagedProcess | undefined;

  const asok = (command: string[], timeoutMs = 10_000) =>
    new Promise<string>((resolve, reject) => {
      execFile(
        ceph,
        ['--admin-daemon', adminSocket, ...command],
        { timeout: timeoutMs, env },
        (error, stdout, stderr) =>
          error
            ? reject(
                new Error(
                  `rbd-mirror admin socket ${command.join(' ')}: ${stderr.trim() || error.message}`,
                ),
              )
            : resolve(stdout),
      );
    });

  const isRunning = () =>
    daemon !== undefined && daemon.child.exitCode === null && daemon.child.signalCode === null;

  const start = async () => {
    if (isRunning()) return;
    daemon = spawnManaged(`rbd-mirror.${id} (${cluster.name})`, binary, args, {
      env,
      logFile: outputFile,
    });
    const deadline = Date.now() + startTimeoutMs;
    let last = '';
    for (;;) {
      if (!isRunning())
        throw new Error(`rbd-mirror.${id} exited at start:\n${daemon.output().slice(-4000)}`);
      if (existsSync(adminSocket)) {
        try {
          await asok(['rbd', 'mirror', 'status'], 5_000);
          return;
        } catch (error) {
          last = (error as Error).message;
        }
      }
      if (Date.now() > deadline) {
        await daemon.kill();
        throw new Error(
          `rbd-mirror.${id} did not answer on ${adminSocket} within ${startTimeoutMs} ms (${last}):\n${daemon.output().slice(-4000)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  await start();
  return {
    cluster,
    clientName,
    adminSocket,
    logFile,
    outputFile,
    get running() {
      return isRunning();
    },
    start,
    stop: async () => {
      await daemon?.stop(15_000);
    },
    kill: async () => {
      await daemon?.kill();
    },
    async imageStatus(pool, image) {
      try {
        return JSON.parse(
          await asok(['rbd', 'mirror', 'status', `${pool}/${image}`]),
        ) as RbdMirrorImageView;
      } catch (error) {
        if (/unknown command|invalid command|Invalid command/i.test((error as Error).message))
          return undefined;
        throw error;
      }
    },
  };
}

/** Two clusters, each with its rbd-mirror daemon (pools are paired by the caller, e.g. through the agent). */
export interface RbdMirrorPair {
  readonly a: CephCluster;
  readonly b: CephCluster;
  readonly mirrorA: RbdMirrorDaemon;
  readonly mirrorB: RbdMirrorDaemon;
  /** Stops both daemons (the clusters are the caller's). */
  stop(): Promise<void>;
}

/** Starts an rbd-mirror daemon for each of two clusters. */
export async function startRbdMirrorPair(
  a: CephCluster,
  b: CephCluster,
  options: Omit<RbdMirrorOptions, 'id'> = {},
): Promise<RbdMirrorPair> {
  const mirrorA = await startRbdMirror(a, { ...options, id: 'a' });
  const mirrorB = await startRbdMirror(b, { ...options, id: 'b' }).catch(async (error: unknown) => {
    await mirrorA.stop();
    throw error;
  });
  return {
    a,
    b,
    mirrorA,
    mirrorB,
    stop: async () => {
      await Promise.all([mirrorA.stop(), mirrorB.stop()]);
    },
  };
}

/**
 * Writes `totalBytes` of data at random offsets of an existing image with `rbd bench --io-type
 * write` (as the cluster's admin): a quick way to change many objects at once. Use
 * cluster.writeImage for known bytes at a known place.
 */
export async function benchWrite(
  cluster: CephCluster,
  pool: string,
  image: string,
  totalBytes: number,
  ioSizeBytes = 1024 * 1024,
): Promise<void> {
  await cluster.exec(
    'rbd',
    [
      'bench',
      '--io-type',
      'write',
      '--io-pattern',
      'rand',
      '--io-size',
      String(ioSizeBytes),
      '--io-total',
      String(totalBytes),
      '--io-threads',
      '4',
      '--',
      `${pool}/${image}`,
    ],
    { timeoutMs: 120_000 },
  );
}

/**
 * Polls `check` until it answers a value other than undefined/false, at most `timeoutMs`; fails
 * naming `what` and the last answer or error. For conditions of real daemons (no fixed sleeps).
 */
export async function pollUntil<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined | false>,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const answer = await check();
      if (answer !== undefined && answer !== false) return answer;
      last = 'not yet';
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not reached within ${timeoutMs} ms (last: ${last.slice(0, 2000)})`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
