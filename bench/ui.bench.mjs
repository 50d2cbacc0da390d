// npm run bench -- ui
//
// The web UI with 100 remotes x 1,000 VMs, in Debian's Chromium: the time from navigation start
// to a dashboard showing every figure (total-vms = 100000), and to the first rendered page of a
// search across the 100,000 VMs on the resources page (and to rows in the middle of that list
// after a jump), each as the median of BENCH_RUNS runs in fresh browser contexts (nothing cached)
// and in a warm one (a reload, the bundle cached). Baselines in the same run: the raw fetch time
// of the same API answers from Node (so the UI's own cost is the difference), and the size of the
// built bundle (apps/web/dist/assets/*.js and *.css, raw and gzip).
//
// The set-up is one real simulated cluster (a real etcd and one real agent with 1,000 VMs)
// registered 100 times as the remotes dc-000 … dc-099: the manager keeps one cache and one set of
// channels per remote, so it does the work of 100 clusters, while the machine runs only one.
//
// Prints one JSON document on stdout (and writes bench-results/ui.json). Environment:
// BENCH_REMOTES (100), BENCH_VMS (1000: VMs of the cluster), BENCH_RUNS (7). Also saves
// test-artifacts/web-dashboard-100-remotes.png and web-resources-100k.png.
/* global document */ // page functions run in the browser
import { chromium } from 'playwright-core';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const require = createRequire(import.meta.url);
const root = join(import.meta.dirname, '..');
const testing = require(join(root, 'libs/testing/dist/index.js'));

const env = (name, fallback) => Number(process.env[name] ?? fallback);
const REMOTES = env('BENCH_REMOTES', 100);
const VMS = env('BENCH_VMS', 1000);
const RUNS = env('BENCH_RUNS', 7);
// One agent: a cluster-wide ListVms then needs no fan-out to other agents, whose per-node deadline
// 100 simultaneous refreshes of the same cluster would overrun.
const NODES = 1;
const AIM_MS = 1500;
const SEARCH = 'status:running';
const WEB_DIR = join(root, 'apps/web/dist');
const ARTIFACTS = join(root, 'test-artifacts');

const log = (message) => process.stderr.write(`[bench ui] ${message}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return Math.round(sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2);
};
const figures = (values) => ({
  median: median(values),
  best: Math.round(Math.min(...values)),
  worst: Math.round(Math.max(...values)),
  runs: values.map(Math.round),
});

/** One API call with the bootstrap token; answers the parsed body and the bytes received. */
function api(base, token, ca, path, { method = 'GET', body } = {}) {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${path}`,
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
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode >= 400)
            reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 500)}`));
          else
            resolve({ body: text ? JSON.parse(text) : undefined, bytes: Buffer.byteLength(text) });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** The built manager as an operator starts it (embedded PostgreSQL, the built web UI), as test/browser-harness.ts does. */
async function startManager() {
  const stateDir = join(testing.tempDir('debvisor-bench-ui-'), 'manager');
  const port = await testing.freePort();
  const managerEnv = {
    ...process.env,
    DEBVISOR_STATE_DIR: stateDir,
    DEBVISOR_LISTEN: `127.0.0.1:${port}`,
    // The benchmark refreshes on its own schedule, so that no background refresh lands in a measurement.
    DEBVISOR_POLL_INTERVAL_SECONDS: '3600',
    DEBVISOR_REMOTE_TIMEOUT_MS: '120000',
    DEBVISOR_WEB_DIR: WEB_DIR,
    DEBVISOR_LOG_LEVEL: 'warn',
    DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '10000000',
    DEBVISOR_RATE_LIMIT_GLOBAL: '10000000',
  };
  delete managerEnv.DATABASE_URL;
  delete managerEnv.DATABASE_ADMIN_URL;
  delete managerEnv.DEBVISOR_PUBLIC_URL;
  const child = testing.spawnManaged(
    'manager',
    process.execPath,
    [join(root, 'apps/manager/dist/main.js')],
    { cwd: root, env: managerEnv },
  );
  await child.waitFor(/"msg":"manager listening"/, 180_000);
  return {
    process: child,
    base: `https://localhost:${port}`,
    ca: readFileSync(join(stateDir, 'pki/server-ca.crt'), 'utf8'),
    clientCa: readFileSync(join(stateDir, 'pki/client-ca.crt'), 'utf8'),
    token: /bootstrap admin token: (dvdm_[A-Za-z0-9_-]+)/.exec(child.output())[1],
  };
}

/** Debian's Chromium, trusting exactly the manager's CA key (the arguments of test/browser-harness.ts launchChromium). */
function launchChromium(caPem) {
  const caSpki = new X509Certificate(caPem).publicKey.export({ type: 'spki', format: 'der' });
  return chromium.launch({
    executablePath: testing.requireBinary('chromium', 'chromium'),
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--ignore-certificate-errors-spki-list=${createHash('sha256').update(caSpki).digest('base64')}`,
    ],
  });
}

function bundleSize() {
  const dir = join(WEB_DIR, 'assets');
  const files = readdirSync(dir).filter((f) => f.endsWith('.js') || f.endsWith('.css'));
  const sum = (ext) => {
    const chosen = files.filter((f) => f.endsWith(ext));
    const contents = chosen.map((f) => readFileSync(join(dir, f)));
    return {
      files: chosen.length,
      rawBytes: contents.reduce((n, c) => n + c.length, 0),
      gzipBytes: contents.reduce((n, c) => n + gzipSync(c, { level: 9 }).length, 0),
    };
  };
  const js = sum('.js');
  const css = sum('.css');
  return {
    js,
    css,
    total: { rawBytes: js.rawBytes + css.rawBytes, gzipBytes: js.gzipBytes + css.gzipBytes },
  };
}

/** Milliseconds from the page's navigation start until `ready` holds (performance.now() in the page). */
async function timeTo(page, url, ready, arg) {
  await page.goto(url, { waitUntil: 'commit' });
  await page.waitForFunction(ready, arg, { timeout: 120_000, polling: 'raf' });
  return page.evaluate(() => performance.now());
}

const dashboardReady = (total) =>
  document.querySelector('[data-testid="total-vms"]')?.textContent === String(total) &&
  document.querySelector('[data-testid="remote-row"]') !== null;
const resourcesReady = (total) =>
  document.querySelector('[data-testid="result-count"]')?.textContent === String(total) &&
  document.querySelector('[data-testid="vm-row"]') !== null;

async function main() {
  const manager = await startManager();
  let cluster;
  let browser;
  try {
    const { base, token, ca } = manager;
    log(`starting one simulated cluster: ${NODES} agents with ${VMS / NODES} VMs each …`);
    cluster = await testing.startCluster({
      clusterId: 'bench-ui',
      nodes: NODES,
      vmsPerNode: VMS / NODES,
      trustedClientCaPem: manager.clientCa,
      leaseTtlSeconds: 30,
      logLevel: 'error',
    });
    const key = await cluster.createApiKey(['*'], { principal: 'bench@manager' });
    log(`registering it as ${REMOTES} remotes …`);
    const ids = Array.from({ length: REMOTES }, (_, i) => `dc-${String(i).padStart(3, '0')}`);
    for (let i = 0; i < ids.length; i += 10) {
      await Promise.all(
        ids.slice(i, i + 10).map((id) =>
          api(base, token, ca, '/api/v1/remotes', {
            method: 'POST',
            body: {
              id,
              endpoints: cluster.agents.map((a) => a.endpoint),
              caCertPem: cluster.caPem,
              credentials: [{ name: 'bench', key }],
            },
          }),
        ),
      );
    }
    // Three refreshes: every remote cached, and a few samples of history for the charts.
    const refreshMs = [];
    for (let round = 0; round < 3; round++) {
      const t = performance.now();
      await api(base, token, ca, '/api/v1/resources/refresh');
      refreshMs.push(performance.now() - t);
      await sleep(1000);
    }
    const dashboard = (await api(base, token, ca, '/api/v1/dashboard')).body;
    const expectedVms = REMOTES * VMS;
    if (dashboard.totals.vms.total !== expectedVms || dashboard.totals.remotes.online !== REMOTES) {
      throw new Error(
        `the manager shows ${dashboard.totals.vms.total} VMs on ${dashboard.totals.remotes.online} online remotes, expected ${expectedVms} on ${REMOTES}`,
      );
    }
    log(
      `${dashboard.totals.vms.total} VMs on ${REMOTES} remotes cached (refresh ${Math.round(median(refreshMs))} ms)`,
    );

    // Baseline: the same answers fetched from Node, no browser.
    const searchPath = `/api/v1/resources?type=vm&q=${encodeURIComponent(SEARCH)}&limit=200&offset=0`;
    const fetchDashboard = [];
    const fetchResources = [];
    let dashboardBytes = 0;
    let resourcesBytes = 0;
    let searchTotal = 0;
    for (let run = 0; run < RUNS + 1; run++) {
      let t = performance.now();
      const d = await api(base, token, ca, '/api/v1/dashboard');
      if (run > 0) fetchDashboard.push(performance.now() - t);
      dashboardBytes = d.bytes;
      t = performance.now();
      const r = await api(base, token, ca, searchPath);
      if (run > 0) fetchResources.push(performance.now() - t);
      resourcesBytes = r.bytes;
      searchTotal = r.body.total;
    }

    browser = await launchChromium(ca);
    const fresh = async () => {
      const context = await browser.newContext({
        locale: 'en-GB',
        viewport: { width: 1366, height: 768 },
      });
      await context.addInitScript((t) => sessionStorage.setItem('debvisor.token', t), token);
      return context;
    };

    log(`dashboard: ${RUNS} cold runs …`);
    const dashboardCold = [];
    let rowsRendered = 0;
    for (let run = 0; run < RUNS; run++) {
      const context = await fresh();
      const page = await context.newPage();
      dashboardCold.push(await timeTo(page, `${base}/#/`, dashboardReady, expectedVms));
      rowsRendered = await page.locator('[data-testid="remote-row"]').count();
      if (run === RUNS - 1) {
        mkdirSync(ARTIFACTS, { recursive: true });
        await page.screenshot({ path: join(ARTIFACTS, 'web-dashboard-100-remotes.png') });
      }
      await context.close();
    }
    log('dashboard: warm runs (reloads) …');
    const dashboardWarm = [];
    {
      const context = await fresh();
      const page = await context.newPage();
      await timeTo(page, `${base}/#/`, dashboardReady, expectedVms);
      for (let run = 0; run < RUNS; run++) {
        await page.goto('about:blank');
        dashboardWarm.push(await timeTo(page, `${base}/#/`, dashboardReady, expectedVms));
      }
      await context.close();
    }

    log(`resources: ${RUNS} cold runs of "${SEARCH}" …`);
    const resourcesCold = [];
    const jumpMs = [];
    for (let run = 0; run < RUNS; run++) {
      const context = await fresh();
      const page = await context.newPage();
      resourcesCold.push(
        await timeTo(
          page,
          `${base}/#/resources?q=${encodeURIComponent(SEARCH)}`,
          resourcesReady,
          searchTotal,
        ),
      );
      // Jump to the middle of the list: the rows there are a page the browser has not fetched yet.
      const middle = Math.floor(searchTotal / 2);
      const t = await page.evaluate(() => performance.now());
      await page.evaluate((fraction) => {
        const box = document.querySelector('.vm-box');
        box.scrollTop = box.scrollHeight * fraction;
      }, middle / searchTotal);
      await page.waitForFunction(
        (row) =>
          [...document.querySelectorAll('[data-testid="vm-row"]')].some(
            (r) => Math.abs(Number(r.getAttribute('aria-rowindex')) - row) < 40,
          ),
        middle,
        { timeout: 60_000, polling: 'raf' },
      );
      jumpMs.push((await page.evaluate(() => performance.now())) - t);
      if (run === RUNS - 1)
        await page.screenshot({ path: join(ARTIFACTS, 'web-resources-100k.png') });
      await context.close();
    }

    const result = {
      benchmark: 'ui',
      machine: { cpus: (await import('node:os')).cpus().length },
      setup: {
        remotes: REMOTES,
        clusters: 1,
        agents: NODES,
        vmsPerRemote: VMS,
        vmsTotal: dashboard.totals.vms.total,
        refreshMs: figures(refreshMs),
      },
      aimMs: AIM_MS,
      dashboard: {
        coldMs: figures(dashboardCold),
        warmMs: figures(dashboardWarm),
        remoteRowsRendered: rowsRendered,
        meetsAim: median(dashboardCold) < AIM_MS,
      },
      resources: {
        search: SEARCH,
        matches: searchTotal,
        firstPageColdMs: figures(resourcesCold),
        jumpToMiddleMs: figures(jumpMs),
      },
      baseline: {
        fetchDashboardMs: figures(fetchDashboard),
        dashboardBytes,
        fetchResourcesPageMs: figures(fetchResources),
        resourcesPageBytes: resourcesBytes,
      },
      uiOverDashboardFetchMs: median(dashboardCold) - median(fetchDashboard),
      bundle: bundleSize(),
    };
    return result;
  } finally {
    await browser?.close();
    await cluster?.stop();
    await manager.process.stop();
    testing.cleanupTempDirs();
  }
}

const results = await main();
const json = JSON.stringify(results, null, 2) + '\n';
process.stdout.write(json);
mkdirSync(join(root, 'bench-results'), { recursive: true });
writeFileSync(join(root, 'bench-results/ui.json'), json);
