// npm run bench -- console
//
// Whether open consoles slow the manager's other API calls: the same authenticated GET
// (/api/v1/remotes) through the built manager (its own process), timed in alternating blocks
//   baseline — the consoles are open but idle;
//   typical  — BENCH_CONSOLES consoles of a sim VM (the agent's RFB test pattern) as a viewer uses
//              them: incremental update requests, answered when the screen changes (the pattern's
//              ticker bar, 80 KB twice a second);
//   flood    — the same consoles asking for a full 640×480×32-bit frame (1.2 MB) as soon as the
//              last one arrived: the most a console can carry, through the manager's WebSocket and
//              the agent's gRPC stream (the sim agent drawing frames shares the machine's cores).
// The viewers run in a worker thread, so that their work does not delay the timed requests' own
// event loop. Requests are sequential over one keep-alive connection. Also reports the console
// throughput of each phase.
//
// Prints one JSON document on stdout (and writes bench-results/console.json); progress on stderr.
// Environment: BENCH_REQUESTS (per phase, 2000), BENCH_BLOCK (100), BENCH_CONSOLES (2).
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request, Agent } from 'node:https';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');
const testing = require(join(root, 'libs/testing/dist/index.js'));

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000);
const BLOCK = Number(process.env.BENCH_BLOCK ?? 100);
const CONSOLES = Number(process.env.BENCH_CONSOLES ?? 2);
const log = (message) => process.stderr.write(`[bench console] ${message}\n`);
const round = (value, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;
const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]);
};

const stateDir = testing.tempDir('debvisor-bench-console-');
const port = await testing.freePort();
const managerProcess = testing.spawnManaged(
  'manager',
  process.execPath,
  [join(root, 'apps/manager/dist/main.js')],
  {
    env: {
      ...process.env,
      DEBVISOR_STATE_DIR: stateDir,
      DEBVISOR_LISTEN: `127.0.0.1:${port}`,
      DEBVISOR_POLL_INTERVAL_SECONDS: '3600',
      DEBVISOR_LOG_LEVEL: 'warn',
      DEBVISOR_WEB_DIR: join(stateDir, 'no-web'),
      DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '10000000',
      DEBVISOR_RATE_LIMIT_GLOBAL: '10000000',
      // The viewers authenticate with the bootstrap token (a benchmark has no browser session).
      DEBVISOR_CONSOLE_ALLOW_API_TOKENS: 'true',
    },
  },
);
await managerProcess.waitFor(/"msg":"manager listening"/, 180_000);
const base = `https://localhost:${port}`;
const ca = readFileSync(join(stateDir, 'pki/server-ca.crt'), 'utf8');
const token = /bootstrap admin token: (dvdm_[A-Za-z0-9_-]+)/.exec(managerProcess.output())[1];
const agent = new Agent({ keepAlive: true, maxSockets: 1, ca });

function call(method, path, body) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      `${base}${path}`,
      {
        method,
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          ...(payload ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () =>
          res.statusCode < 300
            ? resolve({ ms: performance.now() - started, body: text ? JSON.parse(text) : null })
            : reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

log('starting a sim cluster');
const clientCa = (await call('GET', '/api/v1/manager/identity')).body.clientCa.pem;
const cluster = await testing.startCluster({
  clusterId: 'bench-con',
  nodes: 1,
  vmsPerNode: 3,
  trustedClientCaPem: clientCa,
  logLevel: 'warn',
});
const key = await cluster.createApiKey(['*'], { principal: 'manager' });
await call('POST', '/api/v1/remotes', {
  id: 'bench-con',
  endpoints: cluster.agents.map((a) => a.endpoint),
  caCertPem: cluster.caPem,
  credentials: [{ name: 'admin', key }],
});
await call('GET', '/api/v1/resources/refresh');
const vm = (await call('GET', '/api/v1/resources?type=vm&q=status:running')).body.items[0];
if (!vm) throw new Error('the sim cluster has no running VM');

const tickets = [];
for (let i = 0; i < CONSOLES; i += 1)
  tickets.push(
    (await call('POST', `/api/v1/remotes/bench-con/vms/${vm.id}/console/ticket`)).body.ticket,
  );

// The viewers: a minimal RFB client per console that asks for a full frame whenever `streaming`.
const viewer = new Worker(
  `
  const { parentPort, workerData } = require('node:worker_threads');
  const WebSocket = require(workerData.ws);
  const FULL = 16 + 640 * 480 * 4;
  const TICKER = 16 + 640 * 32 * 4;
  let mode = 'off';
  let bytes = 0;
  const viewers = workerData.tickets.map((ticket) => {
    const socket = new WebSocket(workerData.url, ['debvisor-console.v1', ticket], {
      ca: workerData.ca,
      headers: { authorization: 'Bearer ' + workerData.token },
    });
    const state = { socket, phase: 'version', pending: 0, ready: false };
    socket.on('message', (data) => {
      bytes += data.length;
      if (state.phase === 'version') {
        socket.send(Buffer.from('RFB 003.008\\n', 'latin1'));
        state.phase = 'security';
      } else if (state.phase === 'security') {
        socket.send(Buffer.from([1]));
        socket.send(Buffer.from([1]));
        state.phase = 'init';
      } else if (state.phase === 'init') {
        state.phase = 'normal';
        state.ready = true;
        parentPort.postMessage({ ready: true });
      } else {
        state.pending -= data.length;
        if (state.pending <= 0) next(state);
      }
    });
    socket.on('error', (error) => parentPort.postMessage({ error: error.message }));
    return state;
  });
  function next(state) {
    state.pending = 0;
    if (mode === 'off') return;
    const incremental = mode === 'typical' ? 1 : 0;
    state.pending = incremental ? TICKER : FULL;
    state.socket.send(Buffer.from([3, incremental, 0, 0, 0, 0, 2, 128, 1, 224]));
  }
  parentPort.on('message', (message) => {
    if (message.mode !== undefined) {
      mode = message.mode;
      bytes = 0;
      if (mode !== 'off') for (const state of viewers) if (state.pending <= 0) next(state);
      parentPort.postMessage({ switched: mode });
    }
    if (message.report) parentPort.postMessage({ bytes });
    if (message.close) for (const state of viewers) state.socket.close();
  });
  `,
  {
    eval: true,
    workerData: {
      ws: require.resolve('ws'),
      url: `${base.replace('https:', 'wss:')}/api/v1/remotes/bench-con/vms/${vm.id}/console/ws`,
      tickets,
      ca,
      token,
    },
  },
);
const messages = [];
const waiters = [];
viewer.on('message', (message) => {
  if (message.error) throw new Error(`viewer: ${message.error}`);
  const waiter = waiters.findIndex((w) => w.match(message));
  if (waiter >= 0) waiters.splice(waiter, 1)[0].resolve(message);
  else messages.push(message);
});
const next = (match) =>
  new Promise((resolve, reject) => {
    const queued = messages.findIndex(match);
    if (queued >= 0) return resolve(messages.splice(queued, 1)[0]);
    const timer = setTimeout(() => reject(new Error('the viewer did not answer')), 60_000);
    waiters.push({ match, resolve: (m) => (clearTimeout(timer), resolve(m)) });
  });
for (let i = 0; i < CONSOLES; i += 1) await next((m) => m.ready);
log(`${CONSOLES} consoles open on VM ${vm.name}`);

const PHASES = ['baseline', 'typical', 'flood'];
const times = { baseline: [], typical: [], flood: [] };
const carried = {
  baseline: { bytes: 0, ms: 0 },
  typical: { bytes: 0, ms: 0 },
  flood: { bytes: 0, ms: 0 },
};
log('warming up');
for (let i = 0; i < 200; i += 1) await call('GET', '/api/v1/remotes');
log(`measuring ${REQUESTS} requests per phase in blocks of ${BLOCK}`);
for (let done = 0; done < REQUESTS; done += BLOCK) {
  for (const phase of PHASES) {
    const mode = phase === 'baseline' ? 'off' : phase;
    viewer.postMessage({ mode });
    await next((m) => m.switched === mode);
    const started = performance.now();
    for (let i = 0; i < BLOCK; i += 1) times[phase].push((await call('GET', '/api/v1/remotes')).ms);
    viewer.postMessage({ report: true });
    carried[phase].bytes += (await next((m) => m.bytes !== undefined)).bytes;
    carried[phase].ms += performance.now() - started;
  }
}
viewer.postMessage({ mode: 'off', close: true });

const summary = (values) => ({
  p50: percentile(values, 50),
  p99: percentile(values, 99),
  mean: round(values.reduce((a, b) => a + b, 0) / values.length),
});
const stats = Object.fromEntries(PHASES.map((phase) => [phase, summary(times[phase])]));
const added = (phase) => ({
  p50: round(stats[phase].p50 - stats.baseline.p50),
  p99: round(stats[phase].p99 - stats.baseline.p99),
  mean: round(stats[phase].mean - stats.baseline.mean),
});
const throughput = (phase) => round(carried[phase].bytes / 1e6 / (carried[phase].ms / 1000), 2);
const result = {
  benchmark: 'console',
  route: 'GET /api/v1/remotes',
  consoles: CONSOLES,
  requestsPerPhase: times.baseline.length,
  unit: 'ms',
  baseline: stats.baseline,
  typical: { ...stats.typical, added: added('typical'), consoleMBps: throughput('typical') },
  flood: { ...stats.flood, added: added('flood'), consoleMBps: throughput('flood') },
};
await viewer.terminate();
agent.destroy();
await managerProcess.stop();
await cluster.stop();
testing.cleanupTempDirs();
mkdirSync(join(root, 'bench-results'), { recursive: true });
writeFileSync(join(root, 'bench-results/console.json'), `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
