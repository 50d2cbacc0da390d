import {
  cleanupTempDirs,
  createManagerIdentity,
  exposedMetricNames,
  freePort,
  httpsGet,
  requireBinary,
  sampleSum,
  samplesOf,
  startCluster,
  tempDir,
  type TestCluster,
} from '@debvisor/testing';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  eventually,
  startTestDatabases,
  startTestManager,
  stateDirWithClientIdentity,
  type TestDatabases,
  type TestManager,
} from './manager-harness';
import { metricNamesIn } from './promql';

/**
 * Observability of the whole federation: a real manager and a real two-node cluster. What the
 * manager and an agent export (and promtool's opinion of it), the trace id that follows a request
 * from the manager's API into the agents' logs, readiness, and the operator assets in
 * docs/monitoring (alert rules, their unit tests, the Grafana dashboard, the example Prometheus
 * configuration) checked against what the apps really export.
 */
const MONITORING = resolve(__dirname, '../../../docs/monitoring');
const RULES = join(MONITORING, 'prometheus-rules.yml');
const RULE_TESTS = join(MONITORING, 'prometheus-rules.test.yml');
const DASHBOARD = join(MONITORING, 'grafana/debvisor-federation.json');
const PROMETHEUS_CONFIG = join(MONITORING, 'prometheus.yml');

let dbs: TestDatabases;
let identity: Awaited<ReturnType<typeof createManagerIdentity>>;
let cluster: TestCluster;
let key: string;
let m: TestManager;
/** The manager's own metrics listener (DEBVISOR_METRICS_LISTEN): scrapes that no token counts. */
let metricsUrl: string;

beforeAll(async () => {
  identity = await createManagerIdentity('monitoring-spec');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: 'dc-mon',
      nodes: 2,
      vmsPerNode: 2,
      trustedClientCaPem: identity.ca.certPem,
    }),
  ]);
  key = await cluster.createApiKey(['*'], { principal: 'manager' });
  const metricsPort = await freePort();
  metricsUrl = `https://127.0.0.1:${metricsPort}/metrics`;
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    stateDir: stateDirWithClientIdentity(identity),
    env: { DEBVISOR_METRICS_LISTEN: `127.0.0.1:${metricsPort}` },
  });
  const added = await m.api('POST', '/api/v1/remotes', remoteBody('dc-mon', key));
  expect(added.status, added.text).toBe(201);
  await m.api('GET', '/api/v1/resources/refresh?remote=dc-mon');
}, 180_000);

afterAll(async () => {
  await m?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

function remoteBody(id: string, apiKey: string) {
  return {
    id,
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key: apiKey }],
  };
}

async function scrapeManager(): Promise<string> {
  const answer = await httpsGet(metricsUrl, {
    ca: readFileSync(join(m.stateDir, 'pki/server-ca.crt'), 'utf8'),
  });
  expect(answer.status).toBe(200);
  return answer.body;
}

async function scrapeAgent(): Promise<string> {
  const answer = await cluster.scrape(cluster.agents[0]);
  expect(answer.status).toBe(200);
  return answer.body;
}

function run(
  command: string,
  args: string[],
  input?: string,
): Promise<{ code: number; output: string }> {
  return new Promise((resolvePromise) => {
    const child = execFile(command, args, { timeout: 30_000 }, (error, stdout, stderr) =>
      resolvePromise({
        code: error ? (typeof error.code === 'number' ? error.code : 1) : 0,
        output: `${stdout}${stderr}`,
      }),
    );
    child.stdin?.end(input ?? '');
  });
}

async function taskOutcome(taskId: string): Promise<{ state: string; type: string }> {
  return eventually(async () => {
    const task = await m.api('GET', `/api/v1/tasks/${taskId}`);
    return ['succeeded', 'failed'].includes(task.body.state) ? task.body : undefined;
  }, 30_000);
}

describe('trace ids from the manager to the agents', () => {
  it("puts the request's trace id in the error answer and in the log line of the agent that refused the call", async () => {
    const refused = await m.api(
      'POST',
      '/api/v1/remotes',
      remoteBody('dc-mon-wrong-key', `dvk_0123456789abcdef_${'x'.repeat(43)}`),
    );
    expect(refused.status, refused.text).toBe(422);
    expect(refused.body.error.code).toBe('remote_credential_rejected');
    const traceId = refused.body.error.traceId as string;
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(m.logs()).toContain(`"traceId":"${traceId}"`);
    const [line] = await cluster.agents[0].process.waitFor(
      new RegExp(`.*"traceId":"${traceId}".*"msg":"rpc failed".*`),
      5_000,
    );
    expect(JSON.parse(line)).toMatchObject({
      rpc: 'NodeService.GetClusterInfo',
      code: 'UNAUTHENTICATED',
      level: 40,
    });
    // The manager counts the refused call by its gRPC status.
    expect(
      sampleSum(await scrapeManager(), 'rpc_requests_total', {
        service: 'debvisor.v1.NodeService',
        method: 'GetClusterInfo',
        status: 'UNAUTHENTICATED',
      }),
    ).toBe(1);
  });

  it('follows one API call by its trace id into the manager log, the agent it calls and the node that answers it', async () => {
    const vms = (await m.api('GET', '/api/v1/remotes/dc-mon/vms')).body.items as {
      id: string;
      node: string;
      status: string;
    }[];
    const vm = vms.find((v) => v.node === 'node-2')!;
    const action = vm.status === 'running' ? 'stop' : 'start';
    const traceId = 'ops.run-42:power-1'; // the caller's own id, with the separators agents accept too
    const accepted = await m.api(
      'POST',
      `/api/v1/remotes/dc-mon/vms/${vm.id}/${action}`,
      undefined,
      { headers: { 'x-trace-id': traceId } },
    );
    expect(accepted.status, accepted.text).toBe(202);
    expect(accepted.headers['x-trace-id']).toBe(traceId);
    const outcome = await taskOutcome(accepted.body.taskId);
    expect(outcome, JSON.stringify(outcome)).toMatchObject({ state: 'succeeded' });

    const rpc = action === 'stop' ? 'VmService.StopVm' : 'VmService.StartVm';
    const managerLines = m
      .logs()
      .split('\n')
      .filter((line) => line.includes(`"traceId":"${traceId}"`));
    expect(managerLines.some((line) => line.includes(`/vms/${vm.id}/${action}`))).toBe(true); // the request line
    expect(managerLines.some((line) => line.includes('"msg":"task succeeded"'))).toBe(true); // the task it started
    // node-1 (the remote's first endpoint) takes the call and forwards it to node-2, which owns the VM.
    await cluster.agents[0].process.waitFor(
      new RegExp(`"rpc":"${rpc}","traceId":"${escape(traceId)}".*"msg":"rpc ok"`),
      5_000,
    );
    await cluster.agents[1].process.waitFor(
      new RegExp(
        `"rpc":"${rpc}","traceId":"${escape(traceId)}".*"forwardedBy":"node-1".*"msg":"rpc ok"`,
      ),
      5_000,
    );
  });
});

describe("the manager's metrics", () => {
  it('counts its calls to agents by service, method and gRPC status, authentication results, and HTTP requests by route template', async () => {
    const before = await scrapeManager();
    await m.api('GET', '/api/v1/resources/refresh?remote=dc-mon');
    expect(
      (await m.api('GET', '/api/v1/remotes', undefined, { token: 'dvdm_0000000000000000_nope' }))
        .status,
    ).toBe(401);
    const after = await scrapeManager();
    const delta = (name: string, labels: Record<string, string>) =>
      sampleSum(after, name, labels) - sampleSum(before, name, labels);
    expect(
      delta('rpc_requests_total', {
        service: 'debvisor.v1.NodeService',
        method: 'ListNodes',
        status: 'OK',
      }),
    ).toBe(1);
    expect(
      delta('rpc_requests_total', {
        service: 'debvisor.v1.VmService',
        method: 'ListVms',
        status: 'OK',
      }),
    ).toBe(1);
    expect(delta('auth_attempts_total', { method: 'token', result: 'failure' })).toBe(1);
    expect(delta('auth_attempts_total', { method: 'token', result: 'success' })).toBe(1);
    expect(
      sampleSum(after, 'http_requests_total', {
        method: 'GET',
        route: '/api/v1/resources/refresh',
        status: '200',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleSum(after, 'rpc_request_duration_seconds_count', {
        service: 'debvisor.v1.NodeService',
        method: 'ListNodes',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(after).not.toMatch(/dvk_|dvdm_|manager-spec|admin@local/);
  });

  it('describes the federation: the remote up, its nodes and VMs by state, tasks by type and outcome, certificates', async () => {
    const text = await scrapeManager();
    expect(samplesOf(text, 'debvisor_remote_up', { remote: 'dc-mon' }).map((s) => s.value)).toEqual(
      [1],
    );
    expect(sampleSum(text, 'debvisor_nodes', { remote: 'dc-mon', state: 'ok' })).toBe(2);
    expect(sampleSum(text, 'debvisor_vms', { remote: 'dc-mon' })).toBe(4);
    expect(sampleSum(text, 'debvisor_tasks_total', { type: 'vm.start', outcome: 'failed' })).toBe(
      0,
    );
    expect(
      samplesOf(text, 'debvisor_migrations_total')
        .map((s) => s.labels.outcome)
        .sort(),
    ).toEqual(['cancelled', 'failed', 'succeeded']);
    const https = sampleSum(text, 'debvisor_certificate_expiry_timestamp_seconds', {
      cert: 'https',
    });
    expect(https * 1000).toBeGreaterThan(Date.now());
    expect(
      samplesOf(text, 'rpc_service_status', { service: 'manager' }).map((s) => s.value),
    ).toEqual([1]);
    // Remote ids are bounded (operators register them); VM names never become labels.
    const vmNames = (
      (await m.api('GET', '/api/v1/remotes/dc-mon/vms')).body.items as { name: string }[]
    ).map((v) => v.name);
    for (const name of vmNames) expect(text).not.toContain(`"${name}"`);
  });

  it('passes promtool check metrics, on the manager and on an agent, after traffic', async () => {
    const promtool = requireBinary('promtool', 'prometheus');
    for (const [who, text] of [
      ['manager', await scrapeManager()],
      ['agent', await scrapeAgent()],
    ]) {
      expect(text, who).toContain('rpc_requests_total{');
      const result = await run(promtool, ['check', 'metrics'], text);
      expect(result, `${who}: ${result.output}`).toEqual({ code: 0, output: '' });
    }
  });
});

describe('readiness', () => {
  it('answers 503 while every configured remote is unreachable and 200 once one answers', async () => {
    const other = await startTestManager({
      databaseUrl: await dbs.fresh(),
      stateDir: stateDirWithClientIdentity(identity),
    });
    try {
      const dead = {
        endpoints: [`127.0.0.1:${await freePort()}`],
        caCertPem: cluster.caPem,
        credentials: [{ name: 'admin', key }],
        addAnyway: true,
      };
      expect((await other.api('POST', '/api/v1/remotes', { id: 'dc-dead', ...dead })).status).toBe(
        201,
      );
      await other.api('GET', '/api/v1/resources/refresh?remote=dc-dead');
      const down = await other.api('GET', '/readyz', undefined, { token: null });
      expect(down.status).toBe(503);
      expect(down.body.error).toMatchObject({
        code: 'not_ready',
        message: 'not ready: no remote is reachable (1 configured, all unreachable)',
      });
      expect(
        sampleSum((await other.api('GET', '/metrics')).text, 'rpc_service_status', {
          service: 'manager',
        }),
      ).toBe(0);

      expect((await other.api('POST', '/api/v1/remotes', remoteBody('dc-mon', key))).status).toBe(
        201,
      );
      await other.api('GET', '/api/v1/resources/refresh?remote=dc-mon');
      const up = await other.api('GET', '/readyz', undefined, { token: null });
      expect(up.status).toBe(200);
      expect(up.body.checks).toEqual({ database: 'ok', poller: 'ok', remotes: '1 of 2 reachable' });
    } finally {
      await other.stop();
    }
  });
});

describe('reading metric names out of PromQL (for the checks below)', () => {
  it('finds selected metrics, not functions, aggregations, labels, matchers, ranges or variables', () => {
    const expr =
      'max by (cluster) (debvisor_ceph_health_status * on (job, instance) group_left (cluster) debvisor_agent_info{cluster=~"$cluster",x="a b"}) ' +
      '/ sum(rate(rpc_requests_total{status!~"OK"}[$__rate_interval])) > bool 0.01 or vector(0) unless time() - up offset 5m';
    expect(metricNamesIn(expr).sort()).toEqual([
      'debvisor_agent_info',
      'debvisor_ceph_health_status',
      'rpc_requests_total',
      'up',
    ]);
  });
});

describe('the monitoring assets in docs/monitoring', () => {
  const promtool = () => requireBinary('promtool', 'prometheus');
  let exported: Set<string>;
  beforeAll(async () => {
    exported = new Set([
      ...exposedMetricNames(await scrapeManager()),
      ...exposedMetricNames(await scrapeAgent()),
    ]);
  });

  it('has alert rules that pass promtool check rules, and unit tests that pass and cover every rule', async () => {
    const checked = await run(promtool(), ['check', 'rules', RULES]);
    expect(checked.code, checked.output).toBe(0);
    const tested = await run(promtool(), ['test', 'rules', RULE_TESTS]);
    expect(tested.code, tested.output).toBe(0);
    expect(tested.output).toContain('SUCCESS');

    const alerts = rules().map((rule) => rule.alert);
    expect(alerts).toEqual(
      expect.arrayContaining([
        'DebVisorAuthenticationFailures',
        'DebVisorRateLimitViolations',
        'DebVisorRpcErrorRate',
        'DebVisorBackendConnectionErrors',
        'DebVisorMigrationFailed',
        'DebVisorRemoteUnreachable',
        'DebVisorNodeDegraded',
        'DebVisorNodeDown',
        'DebVisorCephHealthWarning',
        'DebVisorCephHealthError',
        'DebVisorCertificateExpiringSoon',
        'DebVisorMirrorRpoOverTarget',
        'DebVisorMirroringError',
        'DebVisorMirrorSplitBrain',
      ]),
    );
    const tests = parseYaml(readFileSync(RULE_TESTS, 'utf8')) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const firing = new Set(
      tests.tests.flatMap((t) =>
        t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname),
      ),
    );
    const quiet = new Set(
      tests.tests.flatMap((t) =>
        t.alert_rule_test.filter((a) => a.exp_alerts.length === 0).map((a) => a.alertname),
      ),
    );
    expect(
      alerts.filter((alert) => !firing.has(alert)),
      'rules without a test where they fire',
    ).toEqual([]);
    expect(
      alerts.filter((alert) => !quiet.has(alert)),
      'rules without a test where they stay quiet',
    ).toEqual([]);
    for (const rule of rules()) {
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      expect(['warning', 'critical'], rule.alert).toContain(rule.labels.severity);
      expect(rule.annotations.summary, rule.alert).toBeTruthy();
      expect(rule.annotations.description.length, rule.alert).toBeGreaterThan(80);
    }
  });

  it('queries only metrics that the manager or an agent exports, in the rules and in the dashboard', () => {
    const queried = new Map<string, Set<string>>();
    const note = (where: string, expr: string) => {
      for (const name of metricNamesIn(expr))
        queried.set(name, (queried.get(name) ?? new Set()).add(where));
    };
    for (const rule of rules()) note(`rule ${rule.alert}`, rule.expr);
    for (const [where, expr] of dashboardQueries()) note(where, expr);
    expect(queried.size).toBeGreaterThan(15);
    const unknown = [...queried]
      .filter(([name]) => !exported.has(name))
      .map(([name, where]) => `${name} (${[...where].join(', ')})`);
    expect(unknown).toEqual([]);
  });

  it('has a provisioning-ready dashboard: a datasource variable on every query, unique panel ids, the panels the NOC needs', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
    expect(dashboard.uid).toBe('debvisor-federation');
    expect(dashboard.templating.list.find((v) => v.name === 'DS_PROMETHEUS')).toMatchObject({
      type: 'datasource',
      query: 'prometheus',
    });
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    for (const panel of panels) {
      expect(panel.datasource, panel.title).toEqual({
        type: 'prometheus',
        uid: '${DS_PROMETHEUS}',
      });
      for (const target of panel.targets)
        expect(target.datasource, panel.title).toEqual({
          type: 'prometheus',
          uid: '${DS_PROMETHEUS}',
        });
    }
    const titles = panels.map((p) => p.title).join('\n');
    for (const needed of [
      'Remotes up',
      'Remotes down',
      'Nodes by state',
      'VMs by state',
      'RPC rate',
      'RPC error rate',
      'RPC latency p95',
      'Authentication failures',
      'Authorization denials',
      'Rate-limit hits',
      'Tasks',
      'Migrations',
      'Certificates',
      'Ceph',
    ]) {
      expect(titles).toContain(needed);
    }
  });

  it('has an example Prometheus configuration that passes promtool check config', async () => {
    // Its files live under /etc/prometheus/debvisor/; here they are a temporary copy.
    const dir = tempDir('debvisor-prometheus-');
    const config = readFileSync(PROMETHEUS_CONFIG, 'utf8').replaceAll(
      '/etc/prometheus/debvisor/',
      `${dir}/`,
    );
    mkdirSync(dir, { recursive: true });
    for (const file of new Set(
      [...config.matchAll(new RegExp(`${dir}/([A-Za-z][A-Za-z0-9._-]*[A-Za-z])`, 'g'))].map(
        (match) => match[1],
      ),
    )) {
      if (file === 'prometheus-rules.yml') copyFileSync(RULES, join(dir, file));
      else writeFileSync(join(dir, file), file.endsWith('.key') ? 'key' : cluster.caPem);
    }
    writeFileSync(join(dir, 'prometheus.yml'), config);
    const checked = await run(promtool(), ['check', 'config', join(dir, 'prometheus.yml')]);
    expect(checked.code, checked.output).toBe(0);
  });
});

interface Rule {
  alert: string;
  expr: string;
  for: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

interface Dashboard {
  uid: string;
  templating: { list: { name: string; type: string; query: unknown }[] };
  panels: {
    id: number;
    type: string;
    title: string;
    datasource?: unknown;
    targets: { expr: string; datasource: unknown }[];
  }[];
}

function rules(): Rule[] {
  const document = parseYaml(readFileSync(RULES, 'utf8')) as { groups: { rules: Rule[] }[] };
  return document.groups.flatMap((group) => group.rules);
}

function dashboardQueries(): [string, string][] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
  const queries: [string, string][] = [];
  for (const panel of dashboard.panels)
    for (const target of panel.targets ?? []) queries.push([`panel ${panel.title}`, target.expr]);
  for (const variable of dashboard.templating.list) {
    const query = (variable.query as { query?: string } | string | undefined) ?? '';
    const text = typeof query === 'string' ? query : (query.query ?? '');
    const match = /^label_values\((\w+),/.exec(text);
    if (variable.type === 'query' && match) queries.push([`variable ${variable.name}`, match[1]]);
  }
  return queries;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
