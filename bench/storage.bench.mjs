// npm run bench -- storage
//
// Ceph RBD through the agent on two real throw-away Ceph clusters (libs/testing startCephCluster,
// rbd-mirror daemons from startRbdMirrorPair), each figure with a baseline from the same run:
//   1. Snapshot create latency: SnapshotRbd through a real agent (mTLS gRPC, API key, validation,
//      per-image serialization, the rbd CLI) against plain `rbd snap create` run by this process
//      with the same client key, alternating, on the same image.
//   2. Replication lag under a steady write load: the primary is written at a fixed rate while a
//      mirror snapshot is taken through the agent every BENCH_LAG_SNAPSHOT_S seconds (what a mirror
//      schedule does); the lag (now − the newest mirror snapshot the secondary holds completely) is
//      sampled every second. Baseline: the snapshot interval itself (the lag cannot be lower).
//   3. Planned switchover of a 1 GiB image with 64 MiB changed since the last sync, through the
//      agents: final mirror snapshot → secondary synced → demote → promote → VM started at the
//      target (sim hypervisor: the start is the agent's, with its RBD lock; no guest boots). The
//      image's checksum at the target must equal the source's final content. Baseline: the same
//      64 MiB carried by hand, `rbd export-diff | rbd import-diff` between the two clusters.
//
// Prints one JSON document on stdout (and writes bench-results/storage.json); progress on stderr.
// Environment: BENCH_PARTS (snapshot,lag,switchover), BENCH_SNAP_ROUNDS (20),
// BENCH_LAG_RATES_MIB_S (4,16), BENCH_LAG_SECONDS (30), BENCH_LAG_SNAPSHOT_S (5),
// BENCH_SWITCH_IMAGE_MIB (1024), BENCH_SWITCH_CHANGED_MIB (64).
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const MiB = 1024 ** 2;
const root = join(import.meta.dirname, '..');
const require = createRequire(import.meta.url);
const testing = require(join(root, 'libs/testing/dist/index.js'));

const env = process.env;
const parts = new Set((env.BENCH_PARTS ?? 'snapshot,lag,switchover').split(','));
const SNAP_ROUNDS = Number(env.BENCH_SNAP_ROUNDS ?? 20);
const LAG_RATES = (env.BENCH_LAG_RATES_MIB_S ?? '4,16').split(',').map(Number);
const LAG_SECONDS = Number(env.BENCH_LAG_SECONDS ?? 30);
const LAG_SNAPSHOT_S = Number(env.BENCH_LAG_SNAPSHOT_S ?? 5);
const SWITCH_IMAGE_MIB = Number(env.BENCH_SWITCH_IMAGE_MIB ?? 1024);
const SWITCH_CHANGED_MIB = Number(env.BENCH_SWITCH_CHANGED_MIB ?? 64);
const POOL = 'rbd';

const say = (message) => process.stderr.write(`[storage bench] ${message}\n`);
const cleanups = [];
let cleaning;
const cleanup = () =>
  (cleaning ??= (async () => {
    for (const step of cleanups.reverse())
      await Promise.resolve()
        .then(step)
        .catch((error) => say(`cleanup: ${error.message}`));
    testing.cleanupTempDirs();
  })());
for (const signal of ['SIGINT', 'SIGTERM'])
  process.once(signal, () => void cleanup().then(() => process.exit(130)));

try {
  const result = await main();
  const out = JSON.stringify(result, null, 2);
  mkdirSync(join(root, 'bench-results'), { recursive: true });
  writeFileSync(join(root, 'bench-results/storage.json'), out + '\n');
  process.stdout.write(out + '\n');
} catch (error) {
  say(`failed: ${error.stack ?? error}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}

async function main() {
  const started = Date.now();
  say('starting two Ceph clusters …');
  const [cephA, cephB] = await Promise.all([
    testing.startCephCluster({
      clientCaps: testing.MIRRORING_CLIENT_CAPS,
      extraConfig: testing.FAST_RBD_MIRROR_SETTINGS,
    }),
    testing.startCephCluster({
      clientCaps: testing.MIRRORING_CLIENT_CAPS,
      extraConfig: testing.FAST_RBD_MIRROR_SETTINGS,
    }),
  ]);
  cleanups.push(
    () => cephA.stop(),
    () => cephB.stop(),
  );
  say(`clusters up in ${cephA.startMs} / ${cephB.startMs} ms`);
  const [a, b] = await Promise.all([startAgents('bench-a', cephA), startAgents('bench-b', cephB)]);
  const [clientA, clientB] = await Promise.all([connect(a), connect(b)]);
  const result = {
    machine: { cpus: (await import('node:os')).cpus().length },
    clusters: {
      startMs: [cephA.startMs, cephB.startMs],
      memoryBytes: [cephA.memoryBytes(), cephB.memoryBytes()],
    },
  };
  if (parts.has('snapshot'))
    result.snapshot = report('snapshot', await snapshotLatency(cephA, clientA));
  if (parts.has('lag') || parts.has('switchover')) {
    say('pairing the pools through the agents and starting rbd-mirror …');
    const { token } = await clientA.storage.createPeerBootstrap({
      pool: POOL,
      siteName: 'bench-a',
    });
    await clientB.storage.importPeerBootstrap({
      pool: POOL,
      siteName: 'bench-b',
      token,
      direction: 'rx-tx',
    });
    const mirrors = await testing.startRbdMirrorPair(cephA, cephB);
    cleanups.push(() => mirrors.stop());
  }
  if (parts.has('lag')) result.lag = report('lag', await replicationLag(cephA, clientA, clientB));
  if (parts.has('switchover'))
    result.switchover = report('switchover', await switchover(cephA, cephB, clientA, clientB, b));
  result.totalSeconds = Math.round((Date.now() - started) / 1000);
  return result;
}

/** Each part's figures go to stderr as soon as they are measured (a later part may fail). */
function report(part, figures) {
  say(`${part}: ${JSON.stringify(figures)}`);
  return figures;
}

/** One sim-hypervisor agent on the rbd storage driver of `ceph`. */
async function startAgents(clusterId, ceph) {
  const cluster = await testing.startCluster({
    clusterId,
    nodes: 1,
    vmsPerNode: 0,
    logLevel: 'warn',
    agentConfig: () => ({
      storage: { driver: 'rbd' },
      rbd: {
        cluster: ceph.name,
        conf: ceph.confPath,
        keyring: ceph.clientKeyringPath,
        clientId: ceph.clientId,
      },
    }),
  });
  cleanups.push(() => cluster.stop());
  return cluster;
}

async function connect(cluster) {
  return cluster.connect(await cluster.createApiKey(['storage:*', 'vm:*'], { principal: 'bench' }));
}

// --- 1. snapshot create latency -------------------------------------------------------------------
async function snapshotLatency(ceph, client) {
  say(`snapshot latency: ${SNAP_ROUNDS} rounds each, alternating …`);
  await ceph.exec('rbd', ['create', '--size', '1G', '--', `${POOL}/snap-bench`], { as: 'client' });
  await ceph.writeImage(POOL, 'snap-bench', 0, randomBytes(4 * MiB));
  const plain = [];
  const agent = [];
  for (let i = 0; i < SNAP_ROUNDS; i++) {
    let t = performance.now();
    await ceph.exec('rbd', ['snap', 'create', '--', `${POOL}/snap-bench@plain-${i}`], {
      as: 'client',
    });
    plain.push(performance.now() - t);
    t = performance.now();
    await client.storage.snapshotRbd({ pool: POOL, image: 'snap-bench', snapshot: `agent-${i}` });
    agent.push(performance.now() - t);
  }
  const listed = await client.storage.listSnapshots({ pool: POOL, image: 'snap-bench' });
  if (listed.snapshots.length !== 2 * SNAP_ROUNDS)
    throw new Error(
      `expected ${2 * SNAP_ROUNDS} snapshots, the agent lists ${listed.snapshots.length}`,
    );
  const p = stats(plain);
  const g = stats(agent);
  return {
    rounds: SNAP_ROUNDS,
    baselinePlainRbdMs: p,
    throughAgentMs: g,
    overheadRatioMedian: round(g.median / p.median, 3),
    overheadMsMedian: round(g.median - p.median, 1),
  };
}

// --- 2. replication lag under a steady write load -----------------------------------------------------
async function replicationLag(ceph, clientA, clientB) {
  const runs = [];
  for (const rate of LAG_RATES) {
    const image = `lag-${rate}`;
    say(
      `replication lag: writing ${rate} MiB/s for ${LAG_SECONDS} s, a mirror snapshot every ${LAG_SNAPSHOT_S} s …`,
    );
    await ceph.exec('rbd', ['create', '--size', '2G', '--', `${POOL}/${image}`], { as: 'client' });
    await clientA.storage.enableMirroring({
      pool: POOL,
      image,
      mode: 'snapshot',
      scheduleInterval: '',
    });
    await testing.pollUntil(
      `${image} replaying at the secondary`,
      180_000,
      async () => {
        const status = await clientB.storage.getMirrorStatus({ pool: POOL, image });
        return status.state === 'up+replaying' && status.lastMirroredSnapshotAt !== '' && status;
      },
      500,
    );
    // Warm-up: one mirror snapshot synced, so that the samples start from a current secondary.
    await clientA.storage.createMirrorSnapshot({ pool: POOL, image });
    await waitSynced(clientA, clientB, image, 180_000);
    const samples = [];
    const writer = steadyWriter(ceph, image, rate * MiB, LAG_SECONDS * 1000);
    const end = Date.now() + LAG_SECONDS * 1000;
    let nextSnapshot = Date.now();
    let snapshots = 0;
    while (Date.now() < end) {
      if (Date.now() >= nextSnapshot) {
        nextSnapshot += LAG_SNAPSHOT_S * 1000;
        snapshots++;
        void clientA.storage
          .createMirrorSnapshot({ pool: POOL, image })
          .catch((error) => say(`mirror snapshot: ${error.message}`));
      }
      const status = await clientB.storage.getMirrorStatus({ pool: POOL, image });
      if (status.lastMirroredSnapshotAt)
        samples.push({
          lagSeconds: (Date.now() - Date.parse(status.lastMirroredSnapshotAt)) / 1000,
          bytesPerSecond: status.bytesPerSecond,
        });
      await new Promise((resolve) => setTimeout(resolve, 1000)); // the sampling period, not a wait for a condition
    }
    const written = await writer;
    if (samples.length === 0)
      throw new Error(
        `no lag sample for ${image}: the secondary never reported a mirrored snapshot`,
      );
    const lag = stats(samples.map((s) => s.lagSeconds));
    runs.push({
      writeRateMiBs: rate,
      achievedWriteMiBs: round(written / MiB / LAG_SECONDS, 2),
      mirrorSnapshots: snapshots,
      lagSeconds: { median: round(lag.median, 2), p90: round(lag.p90, 2), max: round(lag.max, 2) },
      baselineSnapshotIntervalSeconds: LAG_SNAPSHOT_S,
      replicationMiBsReported: round(Math.max(...samples.map((s) => s.bytesPerSecond)) / MiB, 2),
    });
  }
  return runs;
}

/**
 * Writes `bytesPerSecond` as one contiguous piece per second at a random offset of the first GiB
 * (one rbd call a second: a call per MiB could not keep up on a loaded 2-core machine) for
 * `durationMs`; answers the bytes written.
 */
async function steadyWriter(ceph, image, bytesPerSecond, durationMs) {
  const piece = randomBytes(bytesPerSecond);
  const started = Date.now();
  let written = 0;
  for (let second = 0; Date.now() - started < durationMs; second++) {
    await ceph.writeImage(
      POOL,
      image,
      Math.floor(Math.random() * (1024 - bytesPerSecond / MiB)) * MiB,
      piece,
    );
    written += piece.length;
    const next = started + (second + 1) * 1000;
    if (next > Date.now()) await new Promise((resolve) => setTimeout(resolve, next - Date.now())); // pacing the load generator
  }
  return written;
}

// --- 3. planned switchover ----------------------------------------------------------------------------
async function switchover(cephA, cephB, clientA, clientB, clusterB) {
  const image = 'switch-bench';
  say(`switchover: ${SWITCH_IMAGE_MIB} MiB image, filling it …`);
  await cephA.exec('rbd', ['create', '--size', `${SWITCH_IMAGE_MIB}M`, '--', `${POOL}/${image}`], {
    as: 'client',
  });
  for (let offset = 0; offset < SWITCH_IMAGE_MIB * MiB; offset += 64 * MiB)
    await cephA.writeImage(POOL, image, offset, randomBytes(64 * MiB));
  await cephA.exec('rbd', ['snap', 'create', '--', `${POOL}/${image}@base`], { as: 'client' });
  await clientA.storage.enableMirroring({
    pool: POOL,
    image,
    mode: 'snapshot',
    scheduleInterval: '',
  });
  const initial = performance.now();
  await waitSynced(clientA, clientB, image, 900_000);
  const initialSyncMs = performance.now() - initial;
  say(`initial sync took ${Math.round(initialSyncMs)} ms; changing ${SWITCH_CHANGED_MIB} MiB …`);
  for (let i = 0; i < SWITCH_CHANGED_MIB; i++)
    await cephA.writeImage(
      POOL,
      image,
      Math.floor(Math.random() * SWITCH_IMAGE_MIB) * MiB,
      randomBytes(MiB),
    );
  const expected = await cephA.imageSha256(POOL, image);
  // For the baseline (untimed): the change as a snapshot of its own, taken while the image is still primary.
  await cephA.exec('rbd', ['snap', 'create', '--', `${POOL}/${image}@final`], { as: 'client' });

  const t0 = performance.now();
  await clientA.storage.createMirrorSnapshot({ pool: POOL, image });
  const snapshotTaken = performance.now();
  await waitSynced(clientA, clientB, image, 600_000);
  const synced = performance.now();
  await clientA.storage.demoteImage({ pool: POOL, image });
  const demoted = performance.now();
  await testing.pollUntil(
    'promotion at the target',
    120_000,
    () =>
      clientB.storage.promoteImage({ pool: POOL, image, force: false }).then((s) => s.primary && s),
    200,
  );
  const promoted = performance.now();
  const vm = {
    uuid: randomUUID(),
    name: 'switch-bench',
    vcpus: 1,
    memoryBytes: 256 * MiB,
    disks: [{ pool: POOL, image, sizeBytes: SWITCH_IMAGE_MIB * MiB, bus: 'virtio' }],
    nics: [],
    cpuModel: 'host-model',
    hugepages: false,
    tenant: '',
    labels: {},
  };
  await clientB.vm.defineVm({ spec: vm, nodeId: clusterB.agents[0].nodeId });
  const defined = performance.now();
  await clientB.vm.startVm({ uuid: vm.uuid }, { deadlineMs: 120_000 });
  const running = performance.now();
  const actual = await cephB.imageSha256(POOL, image);
  if (actual !== expected)
    throw new Error(`data lost in the switchover: target ${actual} ≠ source ${expected}`);

  say('baseline: the same change carried by export-diff | import-diff …');
  await cephB.exec(
    'rbd',
    ['create', '--size', `${SWITCH_IMAGE_MIB}M`, '--', `${POOL}/baseline-copy`],
    { as: 'client' },
  );
  await pipe(cephA, ['export-diff', '--', `${POOL}/${image}@base`, '-'], cephB, [
    'import-diff',
    '--',
    '-',
    `${POOL}/baseline-copy`,
  ]);
  const b0 = performance.now();
  await pipe(
    cephA,
    ['export-diff', '--from-snap', 'base', '--', `${POOL}/${image}@final`, '-'],
    cephB,
    ['import-diff', '--', '-', `${POOL}/baseline-copy`],
  );
  const baselineMs = performance.now() - b0;

  return {
    imageMiB: SWITCH_IMAGE_MIB,
    changedMiB: SWITCH_CHANGED_MIB,
    initialSyncMs: Math.round(initialSyncMs),
    totalMs: Math.round(running - t0),
    partsMs: {
      finalMirrorSnapshot: Math.round(snapshotTaken - t0),
      waitSynced: Math.round(synced - snapshotTaken),
      demote: Math.round(demoted - synced),
      promote: Math.round(promoted - demoted),
      defineVm: Math.round(defined - promoted),
      startVm: Math.round(running - defined),
    },
    checksumMatches: true,
    baselineExportImportDiffMs: Math.round(baselineMs),
  };
}

/** Until the secondary holds the primary's newest mirror snapshot completely. */
async function waitSynced(clientA, clientB, image, timeoutMs) {
  return testing.pollUntil(
    `${image} synced at the secondary`,
    timeoutMs,
    async () => {
      const [primary, secondary] = await Promise.all([
        clientA.storage.getMirrorStatus({ pool: POOL, image }),
        clientB.storage.getMirrorStatus({ pool: POOL, image }),
      ]);
      return (
        primary.lastSnapshotAt !== '' &&
        secondary.lastMirroredSnapshotAt !== '' &&
        Date.parse(secondary.lastMirroredSnapshotAt) >= Date.parse(primary.lastSnapshotAt) &&
        secondary
      );
    },
    200,
  );
}

/** `rbd <fromArgs>` of cluster `from` piped into `rbd <toArgs>` of cluster `to` (no shell). */
function pipe(from, fromArgs, to, toArgs) {
  const run = (cluster, args) =>
    spawn('rbd', [...cluster.cephArgs('client'), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const source = run(from, fromArgs);
  const sink = run(to, toArgs);
  source.stdout.pipe(sink.stdin);
  const done = (child, name) =>
    new Promise((resolve, reject) => {
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      child.once('exit', (code) =>
        code === 0
          ? resolve()
          : reject(new Error(`rbd ${name} exited ${code}: ${stderr.slice(-500)}`)),
      );
    });
  return Promise.all([done(source, fromArgs[0]), done(sink, toArgs[0])]);
}

function stats(values) {
  const sorted = [...values].sort((x, y) => x - y);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return {
    median: round(at(0.5), 2),
    p90: round(at(0.9), 2),
    min: round(sorted[0], 2),
    max: round(sorted.at(-1), 2),
    n: sorted.length,
  };
}

function round(value, digits) {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
