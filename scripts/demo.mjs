// `npm start`: a demo federation on this machine — embedded PostgreSQL and the manager, and two
// simulated DebVisor clusters (dc-east, dc-west: one etcd and three agents each, ~40 VMs) with
// certificates from a generated demo CA, both registered as remotes. Ctrl-C stops everything; the
// next start reuses the state in .demo/ (or DEBVISOR_DEMO_DIR).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildParts, buildPlan, markBuilt } from './lib/build-plan.mjs';
import { prepareDemoState } from './lib/demo-state.mjs';
import { DEBIAN_PACKAGES, ensureDebianPackages, ensureNodeModules } from './lib/deps.mjs';
import { Supervised } from './lib/supervisor.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stateDir = resolve(process.env.DEBVISOR_DEMO_DIR ?? join(root, '.demo'));
const managerPort = Number(process.env.DEBVISOR_DEMO_PORT ?? 8443);
const CLUSTERS = [
  { id: 'dc-east', nodes: ['east-1', 'east-2', 'east-3'], vmsPerNode: 7 },
  { id: 'dc-west', nodes: ['west-1', 'west-2', 'west-3'], vmsPerNode: 7 },
];

const say = (message) => console.log(`[demo] ${message}`);

/** Mirrored VMs per datacenter: enough to try cross-datacenter migration and DR, few enough to keep the demo light. */
const MIRRORED_PER_CLUSTER = 6;

function fail(message) {
  console.error(`[demo] ${message}`);
  process.exit(1);
}

// --- prerequisites -------------------------------------------------------------------------------
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19))
  fail(`Node.js 20.19 or newer is needed (this is ${process.versions.node}).`);
try {
  ensureDebianPackages(
    DEBIAN_PACKAGES.filter((d) => d.binary === 'etcd'),
    say,
  ); // promtool is for the tests only
} catch (error) {
  fail(error.message);
}
ensureNodeModules(root, say);
// Only what changed since the last build (DEBVISOR_DEMO_BUILD=always: everything).
const plan =
  process.env.DEBVISOR_DEMO_BUILD === 'always'
    ? buildParts(root).map((part) => ({ ...part, reason: 'DEBVISOR_DEMO_BUILD=always' }))
    : buildPlan(root);
if (plan.length === 0) say('Build: up to date (no source changed since the last build), skipped.');
for (const part of plan) {
  say(`Building ${part.name} (${part.reason}) …`);
  const started = Date.now();
  const build = spawnSync(part.command[0], part.command.slice(1), {
    cwd: root,
    stdio: 'inherit',
    timeout: 1_200_000,
  });
  if (build.status !== 0) fail(`Building ${part.name} failed; see above.`);
  markBuilt(root, part, started);
  say(`Built ${part.name} in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
}

const testing = await import(join(root, 'libs/testing/dist/index.js'));
const { createClusterPki, writeTlsFiles, startEtcd, spawnManaged } = testing;

// --- state: ports and PKI, chosen once and reused ------------------------------------------------
// Private: logs 0600 in a 0700 directory (the manager's log holds its first-start banner); the state
// directory 0711, as the embedded PostgreSQL runs as its own user and must traverse it.
prepareDemoState(stateDir);
const portsFile = join(stateDir, 'ports.json');
const ports = existsSync(portsFile) ? JSON.parse(readFileSync(portsFile, 'utf8')) : {};

async function isFree(port) {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', () => resolvePort(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort(true)));
  });
}

/** The port remembered for `name` if still free, else a new free one (remembered from now on). */
async function portFor(name) {
  if (ports[name] && (await isFree(ports[name]))) return ports[name];
  ports[name] = await testing.freePort();
  writeFileSync(portsFile, JSON.stringify(ports, null, 2), { mode: 0o600 });
  return ports[name];
}

if (!(await isFree(managerPort))) {
  fail(
    `Port ${managerPort} is in use. Stop what uses it, or pick another port: DEBVISOR_DEMO_PORT=9443 npm start`,
  );
}

const children = [];
let stopping = false;
async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  say('Stopping …');
  // Agents first (they revoke their leases), then etcd, then the manager.
  for (const group of ['agent', 'etcd', 'manager']) {
    await Promise.all(
      children.filter((c) => c.kind === group).map((c) => c.supervised.stop(15_000)),
    );
  }
  say('Stopped. State kept in ' + stateDir);
  process.exit(code);
}
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));

/**
 * Every child is supervised: one that dies is reported and started again with a back-off; the
 * demo stops only on Ctrl-C. `touch .demo/hold/<id>` stops one and keeps it stopped, removing the
 * file starts it again; `.demo/pids/<id>.pid` holds its pid (to freeze it with kill -STOP, or crash
 * it with kill -9). Answers the child, once started.
 */
function supervise(kind, id, start) {
  const supervised = new Supervised({
    id,
    start,
    say,
    holdDir: join(stateDir, 'hold'),
    pidDir: join(stateDir, 'pids'),
    shuttingDown: () => stopping,
  });
  children.push({ kind, supervised });
  return supervised.start();
}

// --- manager ------------------------------------------------------------------------------------
const managerState = join(stateDir, 'manager');
say(`Starting the manager (state in ${managerState}) …`);
const manager = await supervise('manager', 'manager', async () => {
  const started = spawnManaged(
    'manager',
    process.execPath,
    [join(root, 'apps/manager/dist/main.js')],
    {
      cwd: root,
      env: {
        ...process.env,
        DEBVISOR_STATE_DIR: managerState,
        DEBVISOR_LISTEN: `0.0.0.0:${managerPort}`,
        DEBVISOR_POLL_INTERVAL_SECONDS: '15',
        DEBVISOR_WEB_DIR: join(root, 'apps/web/dist'),
        // No plain-HTTP listener on port 80: ACME HTTP-01 needs a public name, which a demo has not
        // (set DEBVISOR_HTTP_LISTEN=0.0.0.0:80 before npm start to try it).
        DEBVISOR_HTTP_LISTEN: process.env.DEBVISOR_HTTP_LISTEN ?? 'off',
        // The demo keeps using the token of its first start (in admin-token, 0600) across restarts.
        DEBVISOR_BOOTSTRAP_TOKEN_HOURS: '8760',
      },
      logFile: join(stateDir, 'logs/manager.log'),
    },
  );
  await started.waitFor(/"msg":"manager listening"/, 180_000);
  return started;
}).catch((error) => fail(error.message));
const tokenFile = join(stateDir, 'admin-token');
const printed = manager.output().match(/bootstrap admin token: (dvdm_[A-Za-z0-9_-]+)/);
if (printed) writeFileSync(tokenFile, printed[1] + '\n', { mode: 0o600 });
if (!existsSync(tokenFile)) {
  fail(
    `The manager's bootstrap token was printed at its first start but is not in ${tokenFile}. Remove ${stateDir} to start afresh.`,
  );
}
const token = readFileSync(tokenFile, 'utf8').trim();
// The administrator's password is printed once too; the demo keeps it beside the token.
const passwordFile = join(stateDir, 'admin-password');
const password = manager.output().match(/administrator: admin@local password: (\S+)/);
if (password) writeFileSync(passwordFile, password[1] + '\n', { mode: 0o600 });
let adminPassword = existsSync(passwordFile)
  ? readFileSync(passwordFile, 'utf8').trim()
  : undefined;
const managerUrl = `https://127.0.0.1:${managerPort}`;
const managerClientCa = readFileSync(join(managerState, 'pki/client-ca.crt'), 'utf8');
const managerCert = readFileSync(join(managerState, 'pki/server-ca.crt'), 'utf8');

/** A call to the manager's API, verifying its self-signed certificate against the file it wrote. */
function api(method, path, body) {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolveCall, rejectCall) => {
    const request = https.request(
      `${managerUrl}/api/v1${path}`,
      {
        method,
        ca: managerCert,
        servername: 'localhost',
        timeout: 30_000,
        headers: {
          Authorization: `Bearer ${token}`,
          ...(payload
            ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) }
            : {}),
        },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          if (status >= 400 && status !== 404)
            return rejectCall(new Error(`${method} ${path}: ${status} ${text}`));
          resolveCall({ status, body: text ? JSON.parse(text) : undefined });
        });
      },
    );
    request.on('timeout', () =>
      request.destroy(new Error(`${method} ${path}: no answer within 30 s`)),
    );
    request.on('error', rejectCall);
    request.end(payload);
  });
}

// A state directory from before logins existed has no admin@local: give it one, through the API.
if (adminPassword === undefined) {
  adminPassword = randomBytes(18).toString('base64url');
  say('Creating the login admin@local (this demo state predates logins) …');
  const created = await api('POST', '/access/users', {
    username: 'admin',
    realm: 'local',
    password: adminPassword,
    displayName: 'Administrator',
  }).catch((error) => {
    if (!/: 409 /.test(error.message)) throw error;
    return api('POST', '/access/users/admin@local/password', { password: adminPassword });
  });
  void created;
  await api('PUT', '/access/acl', {
    path: '/',
    principalType: 'user',
    principal: 'admin@local',
    role: 'Admin',
  });
  writeFileSync(passwordFile, adminPassword + '\n', { mode: 0o600 });
}

// --- clusters -----------------------------------------------------------------------------------
for (const cluster of CLUSTERS) {
  const dir = join(stateDir, cluster.id);
  const pkiDir = join(dir, 'pki');
  mkdirSync(pkiDir, { recursive: true, mode: 0o700 });
  if (!existsSync(join(pkiDir, 'ca.key'))) {
    say(`Creating the demo CA and agent certificates of ${cluster.id} …`);
    const pki = await createClusterPki(cluster.id);
    writeFileSync(join(pkiDir, 'ca.key'), pki.ca.keyPem, { mode: 0o600 });
    for (const node of cluster.nodes)
      writeTlsFiles(pkiDir, node, await pki.agent(node), pki.ca.certPem);
  }
  writeFileSync(join(pkiDir, 'manager-client-ca.crt'), managerClientCa);

  const etcdPort = await portFor(`${cluster.id}/etcd`);
  say(`Starting etcd of ${cluster.id} on 127.0.0.1:${etcdPort} …`);
  const etcdOptions = {
    name: cluster.id,
    dataDir: join(dir, 'etcd'),
    clientPort: etcdPort,
    logFile: join(stateDir, `logs/etcd-${cluster.id}.log`),
  };
  // etcd over mutual TLS: every etcd of this process shares one CA and client certificate.
  let etcdTls;
  await supervise('etcd', `etcd-${cluster.id}`, async () => {
    const instance = await startEtcd(etcdOptions);
    etcdTls = instance.tls;
    return instance.process;
  }).catch((error) => fail(error.message));
  const etcd = { endpoint: `https://127.0.0.1:${etcdPort}`, tls: etcdTls };
  cluster.etcd = etcd.endpoint;
  cluster.etcdTls = etcdTls;

  cluster.endpoints = [];
  for (const node of cluster.nodes) {
    const port = await portFor(`${cluster.id}/${node}`);
    const endpoint = `127.0.0.1:${port}`;
    const metricsPort = await portFor(`${cluster.id}/${node}/metrics`);
    cluster.endpoints.push(endpoint);
    const configFile = join(dir, `${node}.json`);
    writeFileSync(
      configFile,
      JSON.stringify(
        {
          clusterId: cluster.id,
          nodeId: node,
          listen: endpoint,
          advertise: endpoint,
          etcd: { endpoints: [etcd.endpoint], tls: etcd.tls },
          tls: {
            cert: join(pkiDir, `${node}.crt`),
            key: join(pkiDir, `${node}.key`),
            ca: join(pkiDir, 'ca.crt'),
            clientCas: [join(pkiDir, 'manager-client-ca.crt')],
          },
          stateDir: join(dir, 'nodes', node),
          hypervisor: { driver: 'sim' },
          storage: { driver: 'sim' },
          // rbd-mirror replays every second: a cross-datacenter switchover waits for one replay of the demotion.
          sim: { timeScale: 1, seedVms: cluster.vmsPerNode, mirror: { replayIntervalMs: 1000 } },
          metrics: { listen: `127.0.0.1:${metricsPort}` },
        },
        null,
        2,
      ),
    );
    const agent = supervise('agent', `agent-${node}`, async () => {
      const started = spawnManaged(
        `agent ${node}`,
        process.execPath,
        [join(root, 'apps/agent/dist/main.js'), '--config', configFile],
        {
          cwd: root,
          logFile: join(stateDir, `logs/agent-${node}.log`),
        },
      );
      await started.waitFor(/"msg":"agent ready"/, 60_000);
      return started;
    });
    cluster.ready = [...(cluster.ready ?? []), agent];
  }
  say(`Starting the agents of ${cluster.id}: ${cluster.nodes.join(', ')} …`);
}
for (const cluster of CLUSTERS)
  await Promise.all(cluster.ready).catch((error) => fail(error.message));

// --- remotes: one API key per cluster, registered once; endpoints kept current ------------------
for (const cluster of CLUSTERS) {
  const existing = await api('GET', `/remotes/${cluster.id}`);
  if (existing.status === 404) {
    say(`Creating an API key in ${cluster.id} and registering it as a remote …`);
    const created = execFileSync(
      process.execPath,
      [
        join(root, 'apps/agent/dist/cli.js'),
        'apikey',
        'create',
        '--etcd',
        cluster.etcd,
        '--etcd-ca',
        cluster.etcdTls.ca,
        '--etcd-cert',
        cluster.etcdTls.cert,
        '--etcd-key',
        cluster.etcdTls.key,
        '--principal',
        'manager@demo',
        '--permissions',
        '*',
        '--description',
        'demo manager',
        '--json',
      ],
      { cwd: root, encoding: 'utf8', timeout: 30_000 },
    );
    const { key } = JSON.parse(created);
    await api('POST', '/remotes', {
      id: cluster.id,
      description: `Simulated cluster ${cluster.id}`,
      endpoints: cluster.endpoints,
      caCertPem: readFileSync(join(stateDir, cluster.id, 'pki/ca.crt'), 'utf8'),
      credentials: [{ name: 'admin', key }],
    });
  } else if (JSON.stringify(existing.body.endpoints) !== JSON.stringify(cluster.endpoints)) {
    await api('PATCH', `/remotes/${cluster.id}`, { endpoints: cluster.endpoints });
  }
}
// The manager polled while the agents were still starting; refresh until every remote answers.
let resources;
for (let attempt = 0; attempt < 30; attempt++) {
  await api('GET', '/resources/refresh');
  resources = (await api('GET', '/resources')).body;
  if (resources.remotes.every((r) => r.status === 'online')) break;
  await new Promise((r) => setTimeout(r, 1000));
}
const offline = resources.remotes
  .filter((r) => r.status !== 'online')
  .map((r) => `${r.remote} (${r.error?.message ?? r.status})`);
if (offline.length) say(`Not answering yet: ${offline.join(', ')}; the manager keeps polling.`);
const vmCount = resources.items.filter((r) => r.type === 'vm').length;

// --- RBD mirroring (simulated, but real pairing): the two datacenters' pools are paired through a
// peer bootstrap (the manager's pairing task), and a few VMs per datacenter have their disks
// mirrored to the other, so that they can move across datacenters (live migration, switchover,
// failover). VMs whose disk names exist in the other datacenter too (each seeds its own dns-01,
// web-01, …) are left alone: their pre-flight shows why they cannot move.
const mirrored = await setUpMirroring().catch((error) => {
  say(`Mirroring was not set up: ${error.message}`);
  return [];
});

/**
 * Pairs pool rbd of dc-east and dc-west, and on the first start mirrors up to MIRRORED_PER_CLUSTER
 * VMs each way (later starts keep what is mirrored, wherever those VMs run now); answers
 * "remote/name" of every mirrored VM, at the remote where it runs.
 */
async function setUpMirroring() {
  const [east, west] = CLUSTERS.map((c) => c.id);
  const pairs = (await api('GET', '/replication/pairs')).body.items;
  const paired = pairs.find(
    (p) =>
      [p.remoteA, p.remoteB].sort().join() === [east, west].sort().join() && p.state === 'paired',
  );
  if (!paired) {
    say(`Pairing pool rbd of ${east} and ${west} for RBD mirroring …`);
    const accepted = await api('POST', '/replication/pairs', {
      remoteA: east,
      poolA: 'rbd',
      remoteB: west,
      poolB: 'rbd',
    }).catch((error) => {
      if (/: 409 /.test(error.message)) return undefined; // being paired already (a previous start)
      throw error;
    });
    if (accepted) await taskDone(accepted.body.taskId, 'pairing');
  }
  const mirroredNow = async () =>
    (await api('GET', '/replication/vms')).body.items
      .map((r) => `${r.primaryRemote}/${r.name}`)
      .sort();
  const already = await mirroredNow();
  if (already.length > 0) return already;

  // The VMs of each datacenter with their disks, and every disk name in use there.
  const vms = {};
  const images = {};
  for (const cluster of CLUSTERS) {
    const items = (await api('GET', `/remotes/${cluster.id}/vms`)).body.items;
    vms[cluster.id] = await Promise.all(
      items.map(async (vm) => ({
        ...vm,
        disks: (await api('GET', `/remotes/${cluster.id}/vms/${vm.id}`)).body.disks ?? [],
      })),
    );
    images[cluster.id] = new Set(
      vms[cluster.id].flatMap((vm) => vm.disks.map((d) => `${d.pool}/${d.image}`)),
    );
  }
  say(`Mirroring up to ${MIRRORED_PER_CLUSTER} VMs of each datacenter to the other …`);
  for (const [from, to] of [
    [east, west],
    [west, east],
  ]) {
    const candidates = vms[from]
      .filter(
        (vm) =>
          vm.disks.length > 0 &&
          vm.disks.every((d) => d.pool === 'rbd' && !images[to].has(`${d.pool}/${d.image}`)),
      )
      .sort((a, b) => a.name.localeCompare(b.name))
      .slice(0, MIRRORED_PER_CLUSTER);
    for (const vm of candidates) {
      const accepted = await api('POST', `/remotes/${from}/vms/${vm.id}/replication`, {
        targetRemote: to,
        scheduleInterval: '5m',
      }).catch((error) => {
        if (/: 409 /.test(error.message)) return undefined; // mirrored already
        throw error;
      });
      if (accepted) await taskDone(accepted.body.taskId, `mirroring of ${from}/${vm.name}`);
    }
  }
  return mirroredNow();
}

/** Waits (up to a minute) for a manager task to end; throws when it did not succeed. */
async function taskDone(taskId, what) {
  for (let attempt = 0; attempt < 120; attempt++) {
    const task = (await api('GET', `/tasks/${taskId}`)).body;
    if (task.state === 'succeeded') return;
    if (task.state === 'failed' || task.state === 'cancelled')
      throw new Error(`${what} ${task.state}: ${task.error ?? 'no reason given'}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${what} did not finish within a minute (task ${taskId})`);
}

console.log(`
  DebVisor Datacenter Manager demo is running.

    Web UI and API:   ${managerUrl.replace('127.0.0.1', 'localhost')}/   (its CA: ${join(managerState, 'pki/server-ca.crt')})
    Log in as:        admin@local   password: ${adminPassword}
    Admin API token:  ${token}
    Remotes:          ${CLUSTERS.map((c) => `${c.id} (${c.nodes.length} nodes)`).join(', ')}, ${vmCount} VMs
    Mirrored VMs:     ${mirrored.length ? mirrored.join(', ') : 'none'} (these can move across datacenters)
    Logs and state:   ${stateDir}
    A node down:      touch ${join(stateDir, 'hold', 'agent-east-3')}   (rm it to start the agent again; see docs/demo.md)

  Try:  curl --cacert ${join(managerState, 'pki/server-ca.crt')} \\
          -H 'Authorization: Bearer ${token}' https://localhost:${managerPort}/api/v1/resources?type=vm

  Press Ctrl-C to stop.
`);
