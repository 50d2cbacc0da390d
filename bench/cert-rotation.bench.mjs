// npm run bench -- cert-rotation
//
// A client calls a two-node cluster (node-1 holds the CA key) at BENCH_RATE calls/s: both agents
// directly and node-2 through node-1 (a forwarded call over the agents' peer channel). Baseline: the
// same load for BENCH_BASELINE_S seconds with no rotation. Rotation: the same load while every node
// renews its certificate on its own schedule (lifetime BENCH_LIFETIME_S), then a CA rotation
// (`ca begin`, every node renews from the new CA, `ca finish`). Figures: calls, failed calls and
// latency p50/p99 for both phases, and how long the CA rotation took to reach every node.
//
// Prints one JSON document on stdout. Environment: BENCH_RATE (200), BENCH_BASELINE_S (10),
// BENCH_LIFETIME_S (30).
import { createRequire } from 'node:module';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');
const testing = require(join(root, 'libs/testing/dist/index.js'));

const env = (name, fallback) => Number(process.env[name] ?? fallback);
const RATE = env('BENCH_RATE', 200);
const BASELINE_S = env('BENCH_BASELINE_S', 10);
const LIFETIME_S = env('BENCH_LIFETIME_S', 30);

const log = (message) => process.stderr.write(`[bench cert-rotation] ${message}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const percentile = (values, p) => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const at = sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  return Math.round(at * 100) / 100;
};
const summary = (result, seconds) => ({
  seconds: Math.round(seconds * 10) / 10,
  calls: result.ok + result.failed,
  failed: result.failed,
  callsPerSecond: Math.round((result.ok + result.failed) / seconds),
  latencyMs: { p50: percentile(result.latenciesMs, 50), p99: percentile(result.latenciesMs, 99) },
  errors: result.errors.slice(0, 3),
});

/** True once `probe` answers true; false (logged) when it does not within `timeoutMs`. */
async function until(what, probe, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return true;
    if (Date.now() > deadline) {
      log(`${what}: not within ${timeoutMs} ms (the machine may be too busy for this rate)`);
      return false;
    }
    await sleep(100);
  }
}

const cluster = await testing.startCluster({
  clusterId: 'bench-rotation',
  nodes: 2,
  vmsPerNode: 2,
  certificateLifetimeSeconds: LIFETIME_S,
  issuerNodes: ['node-1'],
  // The agent's default lease: a stall of a busy machine does not take a node out of the registry.
  leaseTtlSeconds: 15,
  logLevel: 'warn',
});
const etcd = cluster.etcd.client();
const clients = [];
try {
  const apiKey = await cluster.createApiKey(['*'], { principal: 'bench' });
  const connect = (agent) => {
    const client = testing.agentClient(agent.endpoint, {
      caPem: cluster.caPem,
      certPem: cluster.client.certPem,
      keyPem: cluster.client.keyPem,
      apiKey,
    });
    clients.push(client);
    return client;
  };
  const [one, two] = cluster.agents.map(connect);
  const vmOfNode2 = (await one.vm.listVms({ nodeId: 'node-2' })).vms[0].spec.uuid;
  const calls = [
    () => one.node.getHealth({}),
    () => two.node.getHealth({}),
    () => one.vm.getVm({ uuid: vmOfNode2 }),
  ];
  const certificateOf = (agent) => {
    const config = JSON.parse(readFileSync(agent.configFile, 'utf8'));
    return new X509Certificate(readFileSync(config.tls.cert, 'utf8'));
  };
  const serials = () => cluster.agents.map((a) => certificateOf(a).serialNumber);

  log(`baseline: ${RATE} calls/s for ${BASELINE_S} s, no rotation`);
  const before = serials();
  let started = performance.now();
  let load = testing.startCallLoad(calls, RATE);
  await sleep(BASELINE_S * 1000);
  const baseline = summary(await load.stop(), (performance.now() - started) / 1000);
  const renewedInBaseline = serials().some((s, i) => s !== before[i]);

  log('rotation: node certificate renewals, then a CA rotation, under the same load');
  const initial = serials();
  started = performance.now();
  load = testing.startCallLoad(calls, RATE);
  const everyNodeRenewed = await until(
    'every node renews its certificate',
    async () => serials().every((s, i) => s !== initial[i]),
    LIFETIME_S * 3000,
  );
  const admin = (command) =>
    cluster.admin([
      'ca',
      command,
      '--issuer-cert',
      cluster.issuerFiles.cert,
      '--issuer-key',
      cluster.issuerFiles.key,
    ]);
  const begunAt = performance.now();
  const begun = await admin('begin');
  if (begun.code !== 0) throw new Error(`ca begin: ${begun.stderr}`);
  const newCa = new X509Certificate(readFileSync(`${cluster.issuerFiles.cert}.next`, 'utf8'));
  const caRolledOut = await until(
    'every node holds a certificate of the new CA',
    async () => {
      // What `ca status` shows, read from etcd directly (no CLI process every 100 ms).
      const nodes = Object.values(await etcd.getAll().prefix('/debvisor/trust/node-certs/').json());
      return nodes.length === 2 && nodes.every((n) => n.issuerFingerprint === newCa.fingerprint256);
    },
    60_000,
  );
  const caRolloutMs = caRolledOut ? Math.round(performance.now() - begunAt) : null;
  const finished = await admin(caRolledOut ? 'finish' : 'status');
  if (finished.code !== 0) throw new Error(`ca finish: ${finished.stderr}`);
  await sleep(2_000);
  const rotation = summary(await load.stop(), (performance.now() - started) / 1000);

  const result = {
    benchmark: 'cert-rotation',
    ratePerSecond: RATE,
    certificateLifetimeSeconds: LIFETIME_S,
    baseline: { ...baseline, renewals: renewedInBaseline },
    rotation: { ...rotation, everyNodeRenewed, caRolledOut, caRolloutToEveryNodeMs: caRolloutMs },
    failedCallsDuringRotation: rotation.failed,
  };
  const json = JSON.stringify(result, null, 2);
  process.stdout.write(`${json}\n`);
  mkdirSync(join(root, 'bench-results'), { recursive: true });
  writeFileSync(join(root, 'bench-results/cert-rotation.json'), json);
} finally {
  for (const client of clients) client.close();
  etcd.close();
  await cluster.stop();
}
