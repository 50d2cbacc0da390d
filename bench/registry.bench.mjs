// npm run bench -- registry
//
// Part 1: 1,000 simulated agents register in one etcd and heartbeat every 5 s through the agent's
// own registry code (RegistryService + RegistryRepository); baseline: a plain etcd put loop in
// the same run, on the same etcd.
// Part 2: the manager's cache refresh for 100 remotes x 1,000 simulated VMs; baseline: the same
// ListNodes + ListVms calls made directly to the agents.
//
// Prints one JSON document on stdout. Environment: BENCH_AGENTS (1000), BENCH_HEARTBEAT_S (5),
// BENCH_DURATION_S (30), BENCH_REMOTES (100), BENCH_CLUSTERS (10), BENCH_VMS (1000).
import { Etcd3 } from 'etcd3';
import { request } from 'node:https';
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');
const testing = require(join(root, 'libs/testing/dist/index.js'));
const { RegistryRepository } = require(
  join(root, 'apps/agent/dist/registry/registry.repository.js'),
);
const { RegistryService } = require(join(root, 'apps/agent/dist/registry/registry.service.js'));
const { systemClock } = require(join(root, 'apps/agent/dist/shared/clock.js'));
const { createLogger } = require(join(root, 'apps/agent/dist/shared/logger.js'));

const env = (name, fallback) => Number(process.env[name] ?? fallback);
const AGENTS = env('BENCH_AGENTS', 1000);
const HEARTBEAT_S = env('BENCH_HEARTBEAT_S', 5);
const DURATION_S = env('BENCH_DURATION_S', 30);
const REMOTES = env('BENCH_REMOTES', 100);
const CLUSTERS = env('BENCH_CLUSTERS', 10);
const VMS = env('BENCH_VMS', 1000);

const log = (message) => process.stderr.write(`[bench registry] ${message}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const percentile = (values, p) => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return (
    Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] * 100) /
    100
  );
};

async function revision(client) {
  const response = await client.kv.range({ key: Buffer.from('/bench/none') });
  return Number(response.header.revision);
}

// --- part 1: heartbeats ------------------------------------------------------------------------
async function heartbeatBench() {
  const etcd = await testing.startEtcd({ name: 'bench' });
  const logger = createLogger('error');
  try {
    // Baseline: plain puts for 5 s with the same concurrency the agents reach (16 in flight).
    const plain = new Etcd3(etcd.clientOptions());
    let puts = 0;
    const putLatencies = [];
    const until = Date.now() + 5_000;
    await Promise.all(
      Array.from({ length: 16 }, async (_, worker) => {
        while (Date.now() < until) {
          const t = performance.now();
          await plain.put(`/bench/plain/${worker}`).value(String(puts));
          putLatencies.push(performance.now() - t);
          puts++;
        }
      }),
    );
    const baseline = {
      writesPerSecond: Math.round(puts / 5),
      putLatencyMs: { p50: percentile(putLatencies, 50), p99: percentile(putLatencies, 99) },
    };
    log(`baseline: ${baseline.writesPerSecond} puts/s`);

    // 1,000 agents sharing 50 etcd connections (20 agents each), as agents behind a few hosts would.
    const connections = Array.from({ length: 50 }, () => new Etcd3(etcd.clientOptions()));
    const agents = Array.from({ length: AGENTS }, (_, i) => {
      const nodeId = `sim-${String(i + 1).padStart(4, '0')}`;
      const service = new RegistryService(
        new RegistryRepository(connections[i % connections.length], logger),
        systemClock,
        HEARTBEAT_S * 3,
      );
      return { nodeId, service, leaseId: undefined };
    });
    const info = (nodeId, i) => ({
      nodeId,
      hostname: nodeId,
      fqdn: `${nodeId}.bench.example`,
      addresses: [`10.${(i >> 8) & 255}.${i & 255}.1`],
      agentEndpoint: `${nodeId}.bench.example:9443`,
      cpuModel: 'Simulated CPU',
      cpuFlags: ['sse4_2', 'avx2'],
      cpuCount: 32,
      memoryBytes: 256 * 2 ** 30,
      hugepages: { pageSizeBytes: 2 ** 21, total: 0, free: 0 },
      versions: { agent: 'bench' },
      hypervisorDriver: 'sim',
      storageDriver: 'sim',
      bridges: ['vmbr0'],
    });
    const registerStart = performance.now();
    for (let i = 0; i < agents.length; i += 50) {
      await Promise.all(
        agents.slice(i, i + 50).map(async (agent, j) => {
          agent.leaseId = (await agent.service.register(info(agent.nodeId, i + j))).leaseId;
        }),
      );
    }
    const registerSeconds = (performance.now() - registerStart) / 1000;
    log(
      `${AGENTS} agents registered in ${registerSeconds.toFixed(1)} s; heartbeating for ${DURATION_S} s …`,
    );

    const latencies = [];
    let attempted = 0;
    let succeeded = 0;
    let late = 0;
    const revBefore = await revision(plain);
    const started = performance.now();
    const stopAt = Date.now() + DURATION_S * 1000;
    const cpuBefore = process.cpuUsage();
    await Promise.all(
      agents.map(async (agent, i) => {
        // Spread the agents evenly over the interval, as independent agents would be.
        await sleep((i / AGENTS) * HEARTBEAT_S * 1000);
        while (Date.now() < stopAt) {
          const t = performance.now();
          attempted++;
          const status = {
            cpuUsage: Math.random(),
            memoryUsedBytes: 2 ** 30,
            memoryTotalBytes: 256 * 2 ** 30,
            vmCount: 10,
            vmsRunning: 8,
            drivers: [{ name: 'sim', status: 'ok', message: '' }],
            health: 'ok',
          };
          const ok = await agent.service
            .heartbeat(agent.nodeId, agent.leaseId, status)
            .catch(() => false);
          const ms = performance.now() - t;
          latencies.push(ms);
          if (ok && ms <= HEARTBEAT_S * 1000) succeeded++;
          if (ms > HEARTBEAT_S * 1000) late++;
          await sleep(Math.max(0, HEARTBEAT_S * 1000 - ms));
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    const writes = (await revision(plain)) - revBefore;
    const cpu = process.cpuUsage(cpuBefore);
    const listStart = performance.now();
    const listed = await agents[0].service.list();
    const listMs = performance.now() - listStart;
    for (const c of connections) c.close();
    plain.close();
    return {
      agents: AGENTS,
      heartbeatIntervalSeconds: HEARTBEAT_S,
      durationSeconds: Math.round(elapsed),
      registerSeconds: Math.round(registerSeconds * 10) / 10,
      heartbeats: {
        attempted,
        succeeded,
        late,
        successRate: attempted ? Math.round((succeeded / attempted) * 10000) / 10000 : 0,
      },
      heartbeatLatencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
      etcdWritesPerSecond: Math.round(writes / elapsed),
      listNodes: {
        nodes: listed.length,
        alive: listed.filter((n) => n.alive).length,
        ms: Math.round(listMs),
      },
      benchProcessCpuSeconds: Math.round((cpu.user + cpu.system) / 1e5) / 10,
      baseline,
      heartbeatWritesVsBaselineCapacity:
        Math.round((writes / elapsed / baseline.writesPerSecond) * 1000) / 1000,
    };
  } finally {
    await etcd.stop();
  }
}

// --- part 2: manager cache refresh -----------------------------------------------------------
function https(url, { method = 'GET', token, ca, body }) {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        ca,
        servername: 'localhost',
        headers: {
          Authorization: `Bearer ${token}`,
          ...(payload ? { 'Content-Type': 'application/json' } : {}),
        },
        timeout: 300_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () =>
          res.statusCode >= 400
            ? reject(new Error(`${method} ${url}: ${res.statusCode} ${text.slice(0, 500)}`))
            : resolve(text ? JSON.parse(text) : undefined),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

function rssBytes(pid) {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : null;
}

async function refreshBench() {
  const dir = testing.tempDir('debvisor-bench-manager-');
  const postgres = await testing.startPostgres();
  const port = await testing.freePort();
  const manager = testing.spawnManaged(
    'manager',
    process.execPath,
    [join(root, 'apps/manager/dist/main.js')],
    {
      cwd: root,
      env: {
        ...process.env,
        DEBVISOR_STATE_DIR: dir,
        DEBVISOR_LISTEN: `127.0.0.1:${port}`,
        DATABASE_URL: await postgres.createDatabase(),
        DEBVISOR_POLL_INTERVAL_SECONDS: '3600',
        DEBVISOR_REMOTE_TIMEOUT_MS: '60000',
        DEBVISOR_LOG_LEVEL: 'warn',
      },
    },
  );
  const clusters = [];
  try {
    await manager.waitFor(/"msg":"manager listening"/, 120_000);
    const token = /bootstrap admin token: (dvdm_[A-Za-z0-9_-]+)/.exec(manager.output())[1];
    const ca = readFileSync(join(dir, 'pki/server-ca.crt'), 'utf8');
    const clientCa = readFileSync(join(dir, 'pki/client-ca.crt'), 'utf8');
    const base = `https://127.0.0.1:${port}/api/v1`;
    log(`starting ${CLUSTERS} simulated clusters with ${VMS} VMs each …`);
    for (let i = 0; i < CLUSTERS; i++) {
      clusters.push(
        await testing.startCluster({
          clusterId: `bench-${i}`,
          nodes: 1,
          vmsPerNode: VMS,
          trustedClientCaPem: clientCa,
          leaseTtlSeconds: 30,
          logLevel: 'error',
        }),
      );
    }
    const keys = await Promise.all(
      clusters.map((c) => c.createApiKey(['*'], { principal: 'bench@manager' })),
    );
    log(`registering ${REMOTES} remotes (${REMOTES / CLUSTERS} per cluster) …`);
    for (let r = 0; r < REMOTES; r++) {
      const c = r % CLUSTERS;
      await https(`${base}/remotes`, {
        method: 'POST',
        token,
        ca,
        body: {
          id: `remote-${r}`,
          endpoints: [clusters[c].agents[0].endpoint],
          caCertPem: clusters[c].caPem,
          credentials: [{ name: 'bench', key: keys[c] }],
        },
      });
    }
    const rssBefore = rssBytes(manager.child.pid);
    const refreshTimes = [];
    let vmCount = 0;
    for (let round = 0; round < 3; round++) {
      const t = performance.now();
      await https(`${base}/resources/refresh`, { method: 'GET', token, ca });
      refreshTimes.push(performance.now() - t);
      const list = await https(`${base}/resources?type=vm`, { token, ca });
      vmCount = list.items.length;
      if (list.remotes.some((r) => r.status !== 'online'))
        throw new Error('a remote was not online after the refresh');
    }
    const rssAfter = rssBytes(manager.child.pid);

    // Baseline: the same calls (ListNodes + cluster-wide ListVms per remote) straight to the agents,
    // over channels opened beforehand, as the manager's are.
    const clients = Array.from({ length: REMOTES }, (_, r) =>
      clusters[r % CLUSTERS].connect(keys[r % CLUSTERS]),
    );
    const direct = [];
    try {
      for (let round = 0; round < 4; round++) {
        const t = performance.now();
        await Promise.all(
          clients.map((client) =>
            Promise.all([
              client.node.listNodes({}, { deadlineMs: 120_000 }),
              client.vm.listVms({}, { deadlineMs: 120_000 }),
            ]),
          ),
        );
        if (round > 0) direct.push(performance.now() - t); // round 0 connects
      }
    } finally {
      for (const client of clients) client.close();
    }
    return {
      remotes: REMOTES,
      clusters: CLUSTERS,
      vmsPerRemote: VMS,
      vmsCached: vmCount,
      refreshMs: {
        best: Math.round(Math.min(...refreshTimes)),
        median: Math.round(percentile(refreshTimes, 50)),
      },
      managerRssBytes: { beforeRefresh: rssBefore, afterRefresh: rssAfter },
      baselineDirectQueryMs: {
        best: Math.round(Math.min(...direct)),
        median: Math.round(percentile(direct, 50)),
      },
      refreshOverDirect: Math.round((Math.min(...refreshTimes) / Math.min(...direct)) * 100) / 100,
    };
  } finally {
    await Promise.all(clusters.map((c) => c.stop()));
    await manager.stop();
    await postgres.stop();
    testing.cleanupTempDirs();
  }
}

const results = {
  benchmark: 'registry',
  machine: { cpus: (await import('node:os')).cpus().length },
  heartbeats: await heartbeatBench(),
  managerRefresh: await refreshBench(),
};
const json = JSON.stringify(results, null, 2) + '\n';
process.stdout.write(json);
mkdirSync(join(root, 'bench-results'), { recursive: true });
writeFileSync(join(root, 'bench-results/registry.json'), json);
