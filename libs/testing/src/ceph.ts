import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireBinary } from './binaries';
import { freePort } from './ports';
import { spawnManaged, type ManagedProcess } from './processes';
import { tempDir } from './temp';

/** The Debian package of each binary the harness runs. */
const PACKAGES = {
  'ceph-mon': 'ceph-mon',
  'ceph-mgr': 'ceph-mgr',
  'ceph-osd': 'ceph-osd',
  ceph: 'ceph-common',
  rbd: 'ceph-common',
  rados: 'ceph-common',
  'ceph-authtool': 'ceph-common',
  monmaptool: 'ceph-base',
} as const;
type CephBinary = keyof typeof PACKAGES;
/** The client tools tests run against a cluster. */
export type CephTool = 'ceph' | 'rbd' | 'rados';

/**
 * Modules the manager loads by default that the tests do not need. rbd_support stays: it runs
 * mirror-snapshot schedules and `rbd trash purge` schedules. Disabling an always-on module makes
 * the manager report it as failed (MGR_MODULE_ERROR); the harness mutes that one health check.
 */
const DISABLED_MGR_MODULES = [
  'balancer',
  'crash',
  'devicehealth',
  'orchestrator',
  'pg_autoscaler',
  'progress',
  'status',
  'telemetry',
  'volumes',
  'restful',
  'iostat',
  'nfs',
  'diskprediction_local',
];

/** The agent's client: what an rbd storage driver needs (images, snapshots, groups, locks, blocklisting). */
export const DEFAULT_CLIENT_CAPS = {
  // profile rbd allows `osd blocklist add <addr>/<nonce>` (exclusive-lock break) and reading maps.
  mon: 'profile rbd',
  osd: 'profile rbd',
  mgr: 'profile rbd',
};

export interface CephClusterOptions {
  /** The Ceph cluster name ($cluster in paths and admin sockets); default a unique `dv<hex>`. */
  name?: string;
  fsid?: string;
  /** The client the agent uses (client.<clientId>); default `debvisor`. */
  clientId?: string;
  /** Caps of that client; default DEFAULT_CLIENT_CAPS. */
  clientCaps?: { mon: string; osd: string; mgr?: string };
  /** Pools created with size 1 and `rbd pool init`; default ['rbd']. */
  pools?: string[];
  /** Size of the OSD's sparse block file; default 10 GiB (sparse: only written data takes disk). */
  osdSizeBytes?: number;
  /** Deadline for the whole start (and each restart); default 90 s. */
  startTimeoutMs?: number;
  /** Extra `[global]` settings (name = value) appended to ceph.conf (e.g. rbd-mirror intervals). */
  extraConfig?: Record<string, string | number | boolean>;
}

export interface CephExecResult {
  stdout: Buffer;
  stderr: string;
  code: number | null;
}

export interface CephCluster {
  readonly name: string;
  readonly fsid: string;
  /** The temp directory holding everything (conf, keyrings, data, run dir, logs). */
  readonly dir: string;
  readonly confPath: string;
  /** v2:127.0.0.1:<port> */
  readonly monHost: string;
  readonly adminKeyringPath: string;
  /** client.<clientId>'s keyring (the agent's). */
  readonly clientKeyringPath: string;
  readonly clientId: string;
  /** Milliseconds the first start took (mkfs through pools ready). */
  readonly startMs: number;
  /** Arguments naming this cluster and a user: `--cluster <name> -c <conf> --id <id> --keyring <path>`. */
  cephArgs(as?: 'admin' | 'client'): string[];
  /**
   * Runs `ceph`, `rbd` or `rados` against this cluster (admin by default; `input` goes to stdin). Rejects
   * when it exits non-zero (message with the tail of stderr) unless `allowFailure`.
   */
  exec(
    tool: CephTool,
    args: string[],
    options?: {
      as?: 'admin' | 'client';
      input?: Buffer;
      timeoutMs?: number;
      allowFailure?: boolean;
    },
  ): Promise<CephExecResult>;
  /** `<tool> <args> --format json`, parsed. */
  json<T = unknown>(tool: CephTool, args: string[]): Promise<T>;
  /** Writes `data` as the image's whole content (`rbd import - <pool>/<image>`; the image must not exist). */
  importImage(pool: string, image: string, data: Buffer): Promise<void>;
  /** sha256 (hex) of the image's content (`rbd export <pool>/<image> -`), optionally at a snapshot. */
  imageSha256(pool: string, image: string, snapshot?: string): Promise<string>;
  /** Overwrites `data.length` bytes at `offset` of an existing image (`rbd bench`-free: import-diff is not needed). */
  writeImage(pool: string, image: string, offset: number, data: Buffer): Promise<void>;
  /** Resident memory (bytes) of the cluster's daemons, summed from /proc. */
  memoryBytes(): number;
  /** Whether the daemons run (false after stopDaemons). */
  readonly running: boolean;
  /** Stops the daemons (SIGKILL: as a site that loses power), keeping the data; for "peer down" tests. */
  stopDaemons(): Promise<void>;
  /** Starts the daemons again on the same data and monitor port; resolves once the pools serve again. */
  startDaemons(): Promise<void>;
  /** Kills every daemon and removes the directory. */
  stop(): Promise<void>;
}

/**
 * A throw-away single-host Ceph cluster from Debian's packages: one monitor (msgr v2 on a free
 * loopback port), one manager, one bluestore OSD on a sparse file (`ceph-osd --mkfs`, no
 * ceph-volume), cephx on, pools of size 1 initialised for RBD, and an admin plus an agent client
 * keyring. Everything lives in one temp directory; two clusters run side by side.
 */
export async function startCephCluster(options: CephClusterOptions = {}): Promise<CephCluster> {
  const bin = Object.fromEntries(
    (Object.keys(PACKAGES) as CephBinary[]).map((name) => [
      name,
      requireBinary(name, PACKAGES[name]),
    ]),
  ) as Record<CephBinary, string>;
  const started = Date.now();
  const name = options.name ?? `dv${randomBytes(4).toString('hex')}`;
  if (!/^[a-z][a-z0-9]{0,30}$/.test(name))
    throw new Error(`cluster name ${JSON.stringify(name)}: lower-case letters and digits only`);
  const fsid = options.fsid ?? randomUUID();
  const clientId = options.clientId ?? 'debvisor';
  const pools = options.pools ?? ['rbd'];
  const deadlineMs = options.startTimeoutMs ?? 90_000;
  const dir = tempDir(`debvisor-ceph-${name}-`);
  const daemons: ManagedProcess[] = [];
  let running = false;

  const confPath = join(dir, 'ceph.conf');
  const adminKeyringPath = join(dir, `${name}.client.admin.keyring`);
  const clientKeyringPath = join(dir, `${name}.client.${clientId}.keyring`);
  const monKeyringPath = join(dir, `${name}.mon.a.keyring`);
  const mgrKeyringPath = join(dir, `${name}.mgr.x.keyring`);
  const osdKeyringPath = join(dir, `${name}.osd.0.keyring`);
  const logDir = join(dir, 'log');

  const cephArgs = (as: 'admin' | 'client' = 'admin') => [
    '--cluster',
    name,
    '-c',
    confPath,
    '--id',
    as === 'admin' ? 'admin' : clientId,
    '--keyring',
    as === 'admin' ? adminKeyringPath : clientKeyringPath,
  ];

  const exec: CephCluster['exec'] = (tool, args, execOptions = {}) =>
    new Promise((resolve, reject) => {
      const timeoutMs = execOptions.timeoutMs ?? 60_000;
      const child = spawn(bin[tool], [...cephArgs(execOptions.as), ...args], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' },
      });
      const out: Buffer[] = [];
      let err = '';
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on(
        'data',
        (chunk: Buffer) => (err = (err + chunk.toString('utf8')).slice(-16_384)),
      );
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.stdin.on('error', () => undefined);
      child.stdin.end(execOptions.input);
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        const result = { stdout: Buffer.concat(out), stderr: err, code };
        if (code === 0 || execOptions.allowFailure) return resolve(result);
        const why = signal === 'SIGKILL' ? `killed after ${timeoutMs} ms` : `exit ${code}`;
        reject(new Error(`${tool} ${args.join(' ')} failed (${why}): ${err.trim().slice(-2000)}`));
      });
    });

  const json = async <T>(tool: CephTool, args: string[]): Promise<T> =>
    JSON.parse(
      (await exec(tool, [...args, '--format', 'json'], { timeoutMs: 15_000 })).stdout.toString(
        'utf8',
      ),
    ) as T;

  const startDaemon = (kind: 'mon' | 'mgr' | 'osd', id: string) => {
    const daemon = spawnManaged(
      `ceph-${kind}.${id} (${name})`,
      bin[`ceph-${kind}`],
      ['--cluster', name, '-c', confPath, '-i', id, '-f'],
      { logFile: join(logDir, `${kind}.${id}.out`) },
    );
    daemons.push(daemon);
    return daemon;
  };

  const killDaemons = async () => {
    running = false;
    await Promise.all(daemons.splice(0).map((daemon) => daemon.kill()));
  };

  /** Polls `check` until it answers true; fails with the last reason and the daemons' output. */
  const waitUntil = async (what: string, deadline: number, check: () => Promise<boolean>) => {
    let last = '';
    for (;;) {
      const dead = daemons.find(
        (daemon) => daemon.child.exitCode !== null || daemon.child.signalCode !== null,
      );
      if (dead)
        throw new Error(
          `${dead.name} exited while waiting for ${what}:\n${dead.output().slice(-4000)}`,
        );
      try {
        if (await check()) return;
      } catch (error) {
        last = (error as Error).message;
      }
      if (Date.now() > deadline)
        throw new Error(
          `ceph cluster ${name}: ${what} not reached within ${deadlineMs} ms (${last.slice(-1000)})`,
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  const waitServing = async (deadline: number) => {
    await waitUntil('monitor quorum', deadline, async () => {
      const stat = await json<{ quorum?: unknown[] }>('ceph', [
        'quorum_status',
        '--connect-timeout',
        '2',
      ]);
      return (stat.quorum?.length ?? 0) === 1;
    });
    await waitUntil('1 OSD up and in', deadline, async () => {
      const stat = await json<{ num_up_osds: number; num_in_osds: number }>('ceph', [
        'osd',
        'stat',
      ]);
      return stat.num_up_osds === 1 && stat.num_in_osds === 1;
    });
    await waitUntil('an active manager', deadline, async () => {
      const stat = await json<{ available: boolean }>('ceph', ['mgr', 'stat']);
      return stat.available;
    });
  };

  const waitPgsClean = (deadline: number) =>
    waitUntil('every placement group active+clean', deadline, async () => {
      const stat = await json<{
        pg_summary?: { num_pgs: number; num_pg_by_state: { name: string; num: number }[] };
      }>('ceph', ['pg', 'stat']);
      const summary = stat.pg_summary;
      if (!summary || summary.num_pgs === 0) return pools.length === 0;
      const clean =
        summary.num_pg_by_state.find((state) => state.name === 'active+clean')?.num ?? 0;
      return clean === summary.num_pgs;
    });

  try {
    mkdirSync(logDir);
    for (const sub of ['run', 'mon', 'mgr', 'osd']) mkdirSync(join(dir, sub));
    const port = await freePort();
    const monHost = `v2:127.0.0.1:${port}`;
    writeFileSync(
      confPath,
      cephConf({
        dir,
        fsid,
        monHost,
        clientId,
        osdSizeBytes: options.osdSizeBytes,
        extra: options.extraConfig,
      }),
    );

    const run = (tool: CephBinary, args: string[]) =>
      new Promise<string>((resolve, reject) => {
        execFile(bin[tool], args, { timeout: 60_000, encoding: 'utf8' }, (error, stdout, stderr) =>
          error
            ? reject(new Error(`${tool} ${args.join(' ')} failed: ${error.message}\n${stderr}`))
            : resolve(stdout),
        );
      });

    // Every key is made here and given to the monitor at mkfs (no auth calls at run time).
    const caps = options.clientCaps ?? DEFAULT_CLIENT_CAPS;
    const keyrings: [string, string, Record<string, string>][] = [
      [
        adminKeyringPath,
        'client.admin',
        { mon: 'allow *', osd: 'allow *', mgr: 'allow *', mds: 'allow *' },
      ],
      [mgrKeyringPath, 'mgr.x', { mon: 'allow profile mgr', osd: 'allow *', mds: 'allow *' }],
      [
        osdKeyringPath,
        'osd.0',
        { mon: 'allow profile osd', mgr: 'allow profile osd', osd: 'allow *' },
      ],
      [
        clientKeyringPath,
        `client.${clientId}`,
        { mon: caps.mon, osd: caps.osd, ...(caps.mgr ? { mgr: caps.mgr } : {}) },
      ],
    ];
    await run('ceph-authtool', [
      '--create-keyring',
      monKeyringPath,
      '--gen-key',
      '-n',
      'mon.',
      '--cap',
      'mon',
      'allow *',
    ]);
    for (const [path, entity, entityCaps] of keyrings) {
      const capArgs = Object.entries(entityCaps).flatMap(([service, cap]) => [
        '--cap',
        service,
        cap,
      ]);
      await run('ceph-authtool', ['--create-keyring', path, '--gen-key', '-n', entity, ...capArgs]);
      await run('ceph-authtool', [monKeyringPath, '--import-keyring', path]);
    }
    const monmap = join(dir, 'monmap');
    await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[${monHost}]`, monmap]);
    await run('ceph-mon', [
      '--cluster',
      name,
      '-c',
      confPath,
      '-i',
      'a',
      '--mkfs',
      '--monmap',
      monmap,
      '--keyring',
      monKeyringPath,
    ]);
    running = true;
    startDaemon('mon', 'a');
    const deadline = started + deadlineMs;

    // The OSD's mkfs needs no monitor (--no-mon-config): it runs while the monitor starts.
    const osdUuid = randomUUID();
    mkdirSync(join(dir, 'osd', `${name}-0`));
    const osdMkfs = run('ceph-osd', [
      '--cluster',
      name,
      '-c',
      confPath,
      '-i',
      '0',
      '--mkfs',
      '--osd-uuid',
      osdUuid,
      '--no-mon-config',
    ]);
    mkdirSync(join(dir, 'mgr', `${name}-x`));
    await waitUntil('monitor quorum', deadline, async () => {
      await exec('ceph', ['mon', 'stat', '--connect-timeout', '2'], { timeoutMs: 5_000 });
      return true;
    });
    startDaemon('mgr', 'x');
    const [osdId] = await Promise.all([
      exec('ceph', ['osd', 'new', osdUuid, '0']).then((r) => r.stdout.toString('utf8').trim()),
      exec('ceph', ['health', 'mute', 'MGR_MODULE_ERROR', '--sticky']),
      ...pools.map((pool) =>
        exec('ceph', [
          'osd',
          'pool',
          'create',
          pool,
          '8',
          '8',
          'replicated',
          '--size',
          '1',
          '--autoscale-mode',
          'off',
        ]),
      ),
      osdMkfs,
    ]);
    if (osdId !== '0') throw new Error(`expected OSD id 0, got ${osdId}`);
    startDaemon('osd', '0');

    await waitServing(deadline);
    await Promise.all(pools.map((pool) => exec('rbd', ['pool', 'init', pool])));
    await waitPgsClean(deadline);
    const startMs = Date.now() - started;

    const cluster: CephCluster = {
      name,
      fsid,
      dir,
      confPath,
      monHost,
      adminKeyringPath,
      clientKeyringPath,
      clientId,
      startMs,
      cephArgs,
      exec,
      json,
      get running() {
        return running;
      },
      async importImage(pool, image, data) {
        await exec('rbd', ['import', '--no-progress', '-', '--', `${pool}/${image}`], {
          input: data,
        });
      },
      async imageSha256(pool, image, snapshot) {
        const spec = snapshot ? `${pool}/${image}@${snapshot}` : `${pool}/${image}`;
        const { stdout } = await exec('rbd', ['export', '--no-progress', '--', spec, '-']);
        return createHash('sha256').update(stdout).digest('hex');
      },
      async writeImage(pool, image, offset, data) {
        // A diff stream (rbd diff v1) with one data record: `rbd import-diff` writes it in place.
        const header = Buffer.from('rbd diff v1\n', 'ascii');
        const record = Buffer.alloc(1 + 16);
        record.write('w', 0, 'ascii');
        record.writeBigUInt64LE(BigInt(offset), 1);
        record.writeBigUInt64LE(BigInt(data.length), 9);
        const stream = Buffer.concat([header, record, data, Buffer.from('e', 'ascii')]);
        await exec('rbd', ['import-diff', '--no-progress', '-', '--', `${pool}/${image}`], {
          input: stream,
        });
      },
      memoryBytes() {
        let total = 0;
        for (const daemon of daemons) {
          try {
            const status = readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8');
            const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
            total += kb * 1024;
          } catch {
            // exited
          }
        }
        return total;
      },
      stopDaemons: killDaemons,
      async startDaemons() {
        if (running) return;
        running = true;
        startDaemon('mon', 'a');
        startDaemon('mgr', 'x');
        startDaemon('osd', '0');
        const restartDeadline = Date.now() + deadlineMs;
        await waitServing(restartDeadline);
        await waitPgsClean(restartDeadline);
      },
      async stop() {
        await killDaemons();
        rmSync(dir, { recursive: true, force: true });
      },
    };
    return cluster;
  } catch (error) {
    await killDaemons();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

interface ConfOptions {
  dir: string;
  fsid: string;
  monHost: string;
  clientId: string;
  osdSizeBytes?: number;
  extra?: Record<string, string | number | boolean>;
}

function cephConf(o: ConfOptions): string {
  const settings: Record<string, string | number | boolean> = {
    fsid: o.fsid,
    'mon host': o.monHost,
    'mon initial members': 'a',
    'public addr': '127.0.0.1',
    'ms bind ipv6': false,
    'ms bind msgr1': false,
    'auth cluster required': 'cephx',
    'auth service required': 'cephx',
    'auth client required': 'cephx',
    'auth allow insecure global id reclaim': false,
    'run dir': join(o.dir, 'run'),
    'admin socket': join(o.dir, 'run', '$cluster-$name.asok'),
    'pid file': join(o.dir, 'run', '$cluster-$name.pid'),
    'log file': join(o.dir, 'log', '$cluster-$name.log'),
    'log to stderr': false,
    'err to stderr': true,
    'mon data': join(o.dir, 'mon', '$cluster-$id'),
    'mgr data': join(o.dir, 'mgr', '$cluster-$id'),
    'osd data': join(o.dir, 'osd', '$cluster-$id'),
    keyring: join(o.dir, '$cluster.$name.keyring'),
    // One OSD: pools of one replica, placement by OSD, no warnings about it.
    'osd pool default size': 1,
    'osd pool default min size': 1,
    'osd pool default pg autoscale mode': 'off',
    'mon allow pool size one': true,
    'mon allow pool delete': true,
    'mon warn on pool no redundancy': false,
    'mon data avail warn': 1,
    'mon data avail crit': 0,
    'osd crush chooseleaf type': 0,
    // Bluestore on a sparse file, small caches.
    'osd objectstore': 'bluestore',
    'bluestore block path': join(o.dir, 'osd', '$cluster-$id', 'block.file'),
    'bluestore block create': true,
    'bluestore block size': o.osdSizeBytes ?? 10 * 1024 ** 3,
    'bluestore fsck on mkfs': false,
    'bluestore cache autotune': false,
    'bluestore cache size': 64 * 1024 ** 2,
    'osd memory target': 896 * 1024 ** 2,
    'osd op num shards': 1,
    'osd op num threads per shard': 2,
    'mgr disabled modules': DISABLED_MGR_MODULES.join(' '),
    'mgr initial modules': '',
    'mgr standby modules': false,
    // PG states reach the monitor within a second (readiness is polled on them).
    'mgr stats period': 1,
    'mon mgr digest period': 1,
    ...o.extra,
  };
  const line = ([key, value]: [string, string | number | boolean]) => {
    const text = String(value);
    if (/[\n\r]/.test(text) || /[\n\r=[\]]/.test(key))
      throw new Error(`cannot write ${key} = ${text} to ceph.conf`);
    return `${key} = ${text}`;
  };
  // The command-line users (admin, the agent's client) run many rbd/ceph processes at once: no
  // admin socket for them, or each one after the first warns that the socket exists.
  const noAdminSocket = ['client.admin', `client.${o.clientId}`].flatMap((name) => [
    `[${name}]`,
    'admin socket =',
  ]);
  return ['[global]', ...Object.entries(settings).map(line), ...noAdminSocket, ''].join('\n');
}
