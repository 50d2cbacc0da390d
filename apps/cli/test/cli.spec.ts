import {
  cleanupTempDirs,
  createManagerIdentity,
  requireBinary,
  startCluster,
  tempDir,
  type TestCluster,
} from '@debvisor/testing';
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  grantToken,
  startTestDatabases,
  startTestManager,
  stateDirWithClientIdentity,
  type Json,
  type TestDatabases,
  type TestManager,
} from '../../manager/test/manager-harness';
import { CliRuntime } from '../src/cli-runtime';
import { completionWords } from '../src/commands/completion.command';
import type { CliEnv } from '../src/config/cli-config';
import { EXIT } from '../src/exit-codes';
import { buildProgram } from '../src/program';
import { debvisor, show, type CliResult } from './cli-harness';

/**
 * `debvisor` against one real manager (embedded PostgreSQL) and a simulated cluster of real agents:
 * every command's happy path and failure paths (bad token, 403, 404, network down), and a
 * migration followed to its end.
 */
let dbs: TestDatabases;
let identity: Awaited<ReturnType<typeof createManagerIdentity>>;
let cluster: TestCluster;
let agentKey: string;
let m: TestManager;
let databaseUrl: string;
let caFile: string;
let caFingerprint: string;
/** The environment of the bootstrap admin: server, CA file and token from the environment. */
let admin: CliEnv;
/** A token holding Audit on /remotes only: may read remotes, nothing else. */
let reader: CliEnv;

const REMOTE = 'cli-east';

beforeAll(async () => {
  identity = await createManagerIdentity('cli-spec');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: REMOTE,
      nodes: 2,
      vmsPerNode: 2,
      trustedClientCaPem: identity.ca.certPem,
      agentConfig: () => ({ migration: { progressIntervalMs: 100 } }),
    }),
  ]);
  agentKey = await cluster.createApiKey(['*'], { principal: 'manager' });
  databaseUrl = await dbs.fresh();
  m = await startTestManager({ databaseUrl, stateDir: stateDirWithClientIdentity(identity) });
  caFile = join(m.stateDir, 'pki/server-ca.crt');
  caFingerprint = new X509Certificate(readFileSync(caFile)).fingerprint256;
  admin = { DEBVISOR_SERVER: m.url, DEBVISOR_CA_FILE: caFile, DEBVISOR_TOKEN: m.token };
  reader = {
    ...admin,
    DEBVISOR_TOKEN: await grantToken(databaseUrl, 'reader@local', 'Audit', '/remotes'),
  };
}, 180_000);

afterAll(async () => {
  await m?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

function ok(result: CliResult): CliResult {
  expect(result.code, show(result)).toBe(EXIT.ok);
  return result;
}

function failed(result: CliResult, code: number): CliResult {
  expect(result.code, show(result)).toBe(code);
  expect(result.stderr).toMatch(/^debvisor: /m);
  expect(result.stderr).not.toMatch(/\n\s+at /); // never a stack trace
  return result;
}

/** A failure answered by the manager: its message and its trace id are printed. */
function refused(result: CliResult, code: number, status: number): CliResult {
  failed(result, code);
  expect(result.stderr).toContain(`HTTP ${status}`);
  expect(result.stderr).toMatch(/trace id [0-9a-f]{16,}/);
  return result;
}

const badToken: () => CliEnv = () => ({
  ...admin,
  DEBVISOR_TOKEN: 'dvdm_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function addRemote(id = REMOTE, extra: string[] = []): Promise<CliResult> {
  return debvisor(
    ['remotes', 'add', id, ...cluster.agents.flatMap((a) => ['--endpoint', a.endpoint]), ...extra],
    { env: { ...admin, DEBVISOR_AGENT_KEY: agentKey } },
  );
}

async function vms(): Promise<Json[]> {
  const result = ok(
    await debvisor(['-o', 'json', 'resources', 'type:vm', `remote:${REMOTE}`], { env: admin }),
  );
  return JSON.parse(result.stdout).items;
}

describe('help', () => {
  it('answers --help with examples on every command', async () => {
    const paths = [...completionWords(buildProgram(new CliRuntime({} as never))).keys()];
    expect(paths.length).toBeGreaterThan(30);
    for (const path of paths) {
      const result = await debvisor([...path.split(' ').filter(Boolean), '--help']);
      expect(result.code, `${path} --help: ${show(result)}`).toBe(EXIT.ok);
      expect(result.stdout, `${path} --help`).toMatch(/Usage: debvisor/);
      expect(result.stdout, `${path} --help has examples`).toMatch(/Examples?:/);
      expect(result.stdout, `${path} --help shows no token`).not.toMatch(/dvdm_[0-9a-f]{16}_/);
    }
  });

  it('answers an unknown command or option with usage exit code 2', async () => {
    failed(await debvisor(['frobnicate']), EXIT.usage);
    expect((await debvisor(['remotes', 'list', '--bogus'])).code).toBe(EXIT.usage);
    // a command group without its command shows its help, as a usage error
    const bare = await debvisor(['vm']);
    expect(bare.code).toBe(EXIT.usage);
    expect(bare.stderr).toMatch(/Usage: debvisor vm/);
    expect((await debvisor(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

/** The built command in a process of its own (asynchronously: the manager runs in this process). */
function spawnCli(args: string[], env: CliEnv): Promise<CliResult> {
  const bin = join(__dirname, '../bin/debvisor.mjs');
  if (!existsSync(join(__dirname, '../dist/main.js')))
    throw new Error('apps/cli is not built: run npx tsc -b apps/cli (npm run build) first');
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...env },
        timeout: 30_000,
      },
      (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('the installed command', () => {
  it('runs as node_modules/.bin/debvisor does, with its exit codes', async () => {
    const list = ok(await spawnCli(['remotes', 'list'], admin));
    expect(list.stdout).toMatch(/^ID\s+ENDPOINTS/);
    const bad = refused(await spawnCli(['remotes', 'list'], badToken()), EXIT.unauthenticated, 401);
    expect(bad.stderr).toMatch(/^debvisor: /);
  });
});

describe('config and authentication', () => {
  it('keeps contexts in a 0600 file, reads the token from stdin only, and talks through a pinned CA fingerprint', async () => {
    const config = join(tempDir('debvisor-cli-'), 'config.yaml');
    const env = { DEBVISOR_CONFIG: config };
    ok(
      await debvisor(
        [
          'config',
          'set-context',
          'lab',
          '--server',
          m.url,
          '--ca-fingerprint',
          caFingerprint,
          '--token-stdin',
        ],
        { env, stdin: `${m.token}\n` },
      ),
    );
    expect(statSync(config).mode & 0o777).toBe(0o600);
    expect(parse(readFileSync(config, 'utf8'))).toMatchObject({
      'current-context': 'lab',
      contexts: [{ name: 'lab', server: m.url, 'ca-fingerprint': caFingerprint, token: m.token }],
    });
    const listed = ok(await debvisor(['config', 'get-contexts'], { env }));
    expect(listed.stdout).toMatch(/\*\s+lab\s+https:\/\/127\.0\.0\.1:\d+\s+pinned/);
    expect(listed.stdout).not.toContain(m.token);
    ok(await debvisor(['remotes', 'list'], { env }));

    // DEBVISOR_TOKEN wins over the context's token
    refused(
      await debvisor(['remotes', 'list'], {
        env: { ...env, DEBVISOR_TOKEN: badToken().DEBVISOR_TOKEN },
      }),
      EXIT.unauthenticated,
      401,
    );

    chmodSync(config, 0o644);
    const open = failed(await debvisor(['remotes', 'list'], { env }), EXIT.usage);
    expect(open.stderr).toContain(`refusing ${config}`);
    expect(open.stderr).toContain(`chmod 600 ${config}`);
  });

  it('refuses a manager whose chain does not hold the pinned fingerprint (exit 7), and names a missing context', async () => {
    const config = join(tempDir('debvisor-cli-'), 'config.yaml');
    const env = { DEBVISOR_CONFIG: config };
    ok(
      await debvisor(
        [
          'config',
          'set-context',
          'wrong',
          '--server',
          m.url,
          '--ca-fingerprint',
          'AB'.repeat(32),
          '--token-stdin',
        ],
        { env, stdin: m.token },
      ),
    );
    const pinned = failed(await debvisor(['remotes', 'list'], { env }), EXIT.unreachable);
    expect(pinned.stderr).toContain('pinned fingerprint');
    ok(
      await debvisor(
        ['config', 'set-context', 'filed', '--server', m.url, '--ca-file', caFile, '--use'],
        { env },
      ),
    );
    // no token in this context and none in the environment
    failed(await debvisor(['remotes', 'list'], { env }), EXIT.unauthenticated);
    ok(await debvisor(['remotes', 'list'], { env: { ...env, DEBVISOR_TOKEN: m.token } }));
    const missing = failed(
      await debvisor(['--context', 'nope', 'remotes', 'list'], { env }),
      EXIT.usage,
    );
    expect(missing.stderr).toContain('no context named "nope"');
  });

  it('prints the chain a manager presents, for pinning', async () => {
    const result = ok(await debvisor(['-o', 'json', 'config', 'fingerprint', m.url]));
    const chain = JSON.parse(result.stdout) as Json[];
    expect(chain.map((c) => c.fingerprintSha256)).toContain(caFingerprint);
  });

  it('exits 7 with the reason when the manager cannot be reached', async () => {
    const down = { ...admin, DEBVISOR_SERVER: `https://127.0.0.1:${await closedPort()}` };
    const result = failed(await debvisor(['remotes', 'list'], { env: down }), EXIT.unreachable);
    expect(result.stderr).toMatch(
      /cannot reach the manager at https:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/,
    );
  });

  it('exits 3 without a token and with a token the manager does not accept', async () => {
    failed(
      await debvisor(['remotes', 'list'], { env: { ...admin, DEBVISOR_TOKEN: undefined } }),
      EXIT.unauthenticated,
    );
    refused(await debvisor(['remotes', 'list'], { env: badToken() }), EXIT.unauthenticated, 401);
  });
});

describe('remotes', () => {
  it('does not add a remote without confirming the presented CA (no terminal, no --yes)', async () => {
    const result = failed(await addRemote('cli-unconfirmed'), EXIT.declined);
    expect(result.stderr).toContain(cluster.agents[0].endpoint);
    expect(result.stderr).toContain(new X509Certificate(cluster.caPem).fingerprint256);
    const listed = JSON.parse(
      ok(await debvisor(['-o', 'json', 'remotes', 'list'], { env: admin })).stdout,
    );
    expect(listed.map((r: Json) => r.id)).not.toContain('cli-unconfirmed');
  });

  it('refuses an expected fingerprint the endpoint does not present', async () => {
    const result = failed(
      await addRemote('cli-mismatch', ['--ca-fingerprint', 'CD'.repeat(32)]),
      EXIT.declined,
    );
    expect(result.stderr).toContain('presents no certificate with the fingerprint');
  });

  it('adds a remote after showing its CA fingerprint, lists, tests and removes remotes', async () => {
    const added = ok(await addRemote(REMOTE, ['--yes', '--description', 'sim east']));
    const fingerprint = new X509Certificate(cluster.caPem).fingerprint256;
    expect(added.stderr).toContain(`SHA-256 ${fingerprint}`);
    expect(added.stdout).toMatch(/connection:\s+ok/);
    expect(added.stdout).toMatch(new RegExp(`ca fingerprint:\\s+${fingerprint}`));

    // the expected fingerprint given up front: no question
    ok(await addRemote('cli-second', ['--ca-fingerprint', fingerprint]));
    const list = ok(await debvisor(['remotes', 'list'], { env: admin }));
    expect(list.stdout).toMatch(/^ID\s+ENDPOINTS\s+CA FINGERPRINT/);
    expect(list.stdout).toMatch(new RegExp(`^${REMOTE}\\s`, 'm'));

    const test = ok(await debvisor(['remotes', 'test', REMOTE], { env: admin }));
    expect(test.stdout).toMatch(/status:\s+online/);
    expect(test.stdout).toMatch(/nodes:\s+2\/2 alive/);

    failed(await debvisor(['remotes', 'remove', 'cli-second'], { env: admin }), EXIT.declined);
    ok(await debvisor(['remotes', 'remove', 'cli-second', '--yes'], { env: admin }));
    const json = JSON.parse(
      ok(await debvisor(['remotes', 'list', '--output', 'json'], { env: admin })).stdout,
    );
    expect(json.map((r: Json) => r.id)).toEqual([REMOTE]);
  });

  it('answers 404, 403, 401 and invalid input with their exit codes and the trace id', async () => {
    refused(
      await debvisor(['remotes', 'test', 'no-such-remote'], { env: admin }),
      EXIT.notFound,
      404,
    );
    refused(
      await debvisor(['remotes', 'remove', 'no-such-remote', '--yes'], { env: admin }),
      EXIT.notFound,
      404,
    );
    ok(await debvisor(['remotes', 'list'], { env: reader }));
    refused(
      await debvisor(
        ['remotes', 'add', 'cli-x', '--endpoint', cluster.agents[0].endpoint, '--yes'],
        {
          env: { ...reader, DEBVISOR_AGENT_KEY: agentKey },
        },
      ),
      EXIT.forbidden,
      403,
    );
    refused(
      await debvisor(['remotes', 'test', REMOTE], { env: badToken() }),
      EXIT.unauthenticated,
      401,
    );
    const invalid = refused(
      await debvisor(
        ['remotes', 'add', 'Bad_Id!', '--endpoint', cluster.agents[0].endpoint, '--yes'],
        {
          env: { ...admin, DEBVISOR_AGENT_KEY: agentKey },
        },
      ),
      EXIT.usage,
      400,
    );
    expect(invalid.stderr).toMatch(/code \w+/);
    failed(
      await debvisor(['remotes', 'add', 'cli-y', '--endpoint', 'x:1'], { env: admin }),
      EXIT.usage,
    ); // no key
  });
});

/** The remote the VM tests use: added by the remotes tests, or here when those did not run. */
async function ensureRemote(): Promise<void> {
  if ((await m.api('GET', `/api/v1/remotes/${REMOTE}`)).status !== 200) {
    const added = await m.api('POST', '/api/v1/remotes', {
      id: REMOTE,
      endpoints: cluster.agents.map((a) => a.endpoint),
      caCertPem: cluster.caPem,
      credentials: [{ name: 'admin', key: agentKey }],
    });
    expect(added.status, added.text).toBe(201);
  }
  await m.api('GET', `/api/v1/resources/refresh?remote=${REMOTE}`);
}

describe('resources and VMs', () => {
  beforeAll(ensureRemote);

  it("searches nodes and VMs with the UI's syntax, as a table or JSON", async () => {
    const table = ok(
      await debvisor(['resources', `remote:${REMOTE}`, 'type:node'], { env: admin }),
    );
    expect(table.stdout).toMatch(/^TYPE\s+REMOTE\s+NAME\s+STATUS/);
    expect(table.stdout).toMatch(/^node\s+cli-east\s+node-1\s+online/m);
    expect(table.stdout).toContain('2 of 2');
    const items = await vms();
    expect(items).toHaveLength(4);
    const yaml = ok(
      await debvisor(['-o', 'yaml', 'resources', `name:"${items[0].name}"`], { env: admin }),
    );
    expect(parse(yaml.stdout).items.map((r: Json) => r.id)).toContain(items[0].id);
    refused(await debvisor(['resources', 'bogus:key'], { env: admin }), EXIT.usage, 400);
    refused(await debvisor(['resources'], { env: badToken() }), EXIT.unauthenticated, 401);
  });

  it('shows a VM by name or uuid, and answers 404 for one that is not there', async () => {
    const vm = (await vms())[0];
    const byName = ok(await debvisor(['vm', 'status', REMOTE, vm.name], { env: admin }));
    expect(byName.stdout).toMatch(new RegExp(`id:\\s+${vm.id}`));
    const byId = JSON.parse(
      ok(await debvisor(['-o', 'json', 'vm', 'status', REMOTE, vm.id], { env: admin })).stdout,
    );
    expect(byId).toMatchObject({ id: vm.id, name: vm.name, node: vm.node });
    refused(
      await debvisor(['vm', 'status', REMOTE, '00000000-0000-4000-8000-000000000000'], {
        env: admin,
      }),
      EXIT.notFound,
      404,
    );
    failed(await debvisor(['vm', 'status', REMOTE, 'no-such-vm'], { env: admin }), EXIT.notFound);
  });

  it('stops and starts a VM, following each task to its end', async () => {
    const vm = (await vms()).find((v) => v.status === 'running')!;
    const stop = ok(await debvisor(['vm', 'stop', REMOTE, vm.id], { env: admin }));
    expect(stop.stdout).toMatch(/task \S+ vm\.stop succeeded/);
    expect(stop.stderr).toContain('100%');
    const stopped = JSON.parse(
      ok(await debvisor(['-o', 'json', 'vm', 'status', REMOTE, vm.id], { env: admin })).stdout,
    );
    expect(stopped.status).toBe('stopped');
    const start = JSON.parse(
      ok(await debvisor(['-o', 'json', 'vm', 'start', REMOTE, vm.id], { env: admin })).stdout,
    );
    expect(start).toMatchObject({ type: 'vm.start', state: 'succeeded' });
    // --no-wait answers the task id at once
    const reboot = JSON.parse(
      ok(await debvisor(['-o', 'json', 'vm', 'reboot', REMOTE, vm.id, '--no-wait'], { env: admin }))
        .stdout,
    );
    ok(await debvisor(['tasks', 'follow', reboot.taskId], { env: admin }));
    const shutdown = ok(await debvisor(['vm', 'shutdown', REMOTE, vm.id], { env: admin }));
    expect(shutdown.stdout).toMatch(/vm\.shutdown succeeded/);
    ok(await debvisor(['vm', 'start', REMOTE, vm.id], { env: admin }));
    refused(await debvisor(['vm', 'stop', REMOTE, vm.id], { env: reader }), EXIT.forbidden, 403);
  });

  it('migrates a VM: the pre-flight table, a live progress bar with ETA, followed to the end', async () => {
    const vm = (await vms()).find((v) => v.status === 'running' && v.node === 'node-1')!;
    const only = ok(
      await debvisor(
        ['vm', 'migrate', REMOTE, vm.name, '--target-node', 'node-2', '--preflight-only'],
        { env: admin },
      ),
    );
    expect(only.stdout).toMatch(/cli-east\/node-1 → cli-east\/node-2 \(direct\)/);
    expect(only.stdout).toMatch(/^SIDE\s+CHECK\s+RESULT\s+REASON/m);
    expect(only.stdout).toMatch(/^source\s+\S+\s+PASS/m);

    const result = ok(
      await debvisor(
        [
          'vm',
          'migrate',
          REMOTE,
          vm.id,
          '--target-node',
          'node-2',
          '--bandwidth-limit',
          '400000000',
        ],
        { env: admin },
      ),
    );
    expect(result.stderr).toMatch(/^target\s+\S+\s+PASS/m);
    expect(result.stderr).toMatch(/migration task [0-9a-f-]{36}/);
    expect(result.stderr).toMatch(/\| ETA \S+ \| running/);
    expect(result.stderr).toMatch(/100% \| ETA 0s \| succeeded completed/);
    expect(result.stdout).toMatch(/vm\.migrate succeeded/);
    const moved = JSON.parse(
      ok(await debvisor(['-o', 'json', 'vm', 'status', REMOTE, vm.id], { env: admin })).stdout,
    );
    expect(moved).toMatchObject({ node: 'node-2', status: 'running' });

    const tasks = JSON.parse(
      ok(
        await debvisor(['-o', 'json', 'tasks', 'list', '--type', 'vm.migrate', '--vm', vm.id], {
          env: admin,
        }),
      ).stdout,
    );
    expect(tasks.items[0]).toMatchObject({ type: 'vm.migrate', state: 'succeeded', progress: 1 });
    // cancelling a finished task is a conflict
    refused(
      await debvisor(['tasks', 'cancel', tasks.items[0].id], { env: admin }),
      EXIT.conflict,
      409,
    );
  });

  it('cancels a running migration; following it then ends with exit code 8', async () => {
    const vm = (await vms()).find((v) => v.status === 'running' && v.node === 'node-1')!;
    const started = JSON.parse(
      ok(
        await debvisor(
          [
            '-o',
            'json',
            'vm',
            'migrate',
            REMOTE,
            vm.id,
            '--target-node',
            'node-2',
            '--bandwidth-limit',
            '20000000',
            '--no-wait',
          ],
          { env: admin },
        ),
      ).stdout,
    );
    expect(started.taskId).toMatch(/^[0-9a-f-]{36}$/);
    refused(
      await debvisor(['tasks', 'cancel', started.taskId], { env: reader }),
      EXIT.forbidden,
      403,
    );
    const cancel = ok(await debvisor(['tasks', 'cancel', started.taskId], { env: admin }));
    expect(cancel.stdout).toContain('cancel requested');
    const followed = failed(
      await debvisor(['tasks', 'follow', started.taskId], { env: admin }),
      EXIT.taskFailed,
    );
    expect(followed.stderr).toMatch(/ended cancelled/);
  });

  it('stops at a failing pre-flight with exit code 8, and answers 404 for an unknown target remote', async () => {
    const vm = (await vms())[0];
    const result = await debvisor(['vm', 'migrate', REMOTE, vm.id, '--target-node', vm.node], {
      env: admin,
    });
    expect(result.code, show(result)).toBe(EXIT.taskFailed);
    expect(result.stdout).toMatch(/^manager\s+target-node\s+FAIL\s+the VM already runs on node/m);
    expect(result.stderr).toContain('pre-flight failed: not migrating');
    refused(
      await debvisor(
        ['vm', 'migrate', REMOTE, vm.id, '--target-remote', 'nowhere', '--target-node', 'node-1'],
        { env: admin },
      ),
      EXIT.notFound,
      404,
    );
  });

  it('takes, lists, rolls back and deletes snapshots', async () => {
    const vm = (await vms()).find((v) => v.status === 'running')!;
    const created = ok(
      await debvisor(
        [
          'vm',
          'snapshot',
          'create',
          REMOTE,
          vm.id,
          '--name',
          'cli-snap',
          '--description',
          'from the cli',
        ],
        { env: admin },
      ),
    );
    expect(created.stdout).toMatch(/vm\.snapshot\.create succeeded/);
    const list = ok(await debvisor(['vm', 'snapshot', 'list', REMOTE, vm.id], { env: admin }));
    expect(list.stdout).toMatch(/^cli-snap\s/m);
    // a running VM is not rolled back without --stop-first
    refused(
      await debvisor(['vm', 'snapshot', 'rollback', REMOTE, vm.id, 'cli-snap'], { env: admin }),
      EXIT.conflict,
      409,
    );
    ok(
      await debvisor(['vm', 'snapshot', 'rollback', REMOTE, vm.id, 'cli-snap', '--stop-first'], {
        env: admin,
      }),
    );
    ok(await debvisor(['vm', 'snapshot', 'delete', REMOTE, vm.id, 'cli-snap'], { env: admin }));
    const after = JSON.parse(
      ok(await debvisor(['-o', 'json', 'vm', 'snapshot', 'list', REMOTE, vm.id], { env: admin }))
        .stdout,
    );
    expect(after.map((s: Json) => s.name)).not.toContain('cli-snap');
    refused(
      await debvisor(['vm', 'snapshot', 'delete', REMOTE, vm.id, 'never-taken'], { env: admin }),
      EXIT.notFound,
      404,
    );
  });
});

describe('tasks', () => {
  beforeAll(ensureRemote);

  it('lists tasks, follows one and answers 404, 403 and a network failure', async () => {
    const list = ok(await debvisor(['tasks', 'list', '--limit', '5'], { env: admin }));
    expect(list.stdout).toMatch(/^ID\s+TYPE\s+STATE\s+PROGRESS/);
    const page = JSON.parse(
      ok(await debvisor(['-o', 'json', 'tasks', 'list', '--state', 'succeeded'], { env: admin }))
        .stdout,
    );
    expect(page.items.length).toBeGreaterThan(0);
    const followed = ok(await debvisor(['tasks', 'follow', page.items[0].id], { env: admin }));
    expect(followed.stdout).toContain('succeeded');
    const missing = '00000000-0000-4000-8000-000000000000';
    refused(await debvisor(['tasks', 'follow', missing], { env: admin }), EXIT.notFound, 404);
    refused(await debvisor(['tasks', 'cancel', missing], { env: admin }), EXIT.notFound, 404);
    refused(await debvisor(['tasks', 'list', '--state', 'bogus'], { env: admin }), EXIT.usage, 400);
    const down = { ...admin, DEBVISOR_SERVER: `https://127.0.0.1:${await closedPort()}` };
    failed(await debvisor(['tasks', 'list'], { env: down }), EXIT.unreachable);
  });
});

describe('audit', () => {
  beforeAll(ensureRemote);

  it('queries, exports and verifies the audit log; a changed entry is found (exit 9)', async () => {
    const query = ok(
      await debvisor(['audit', 'query', '--action', 'remote.create'], { env: admin }),
    );
    expect(query.stdout).toMatch(/^SEQ\s+TIME\s+PRINCIPAL\s+ACTION/);
    expect(query.stdout).toMatch(/remote\.create\s+\/remotes\/cli-east\s+success/);

    const dir = tempDir('debvisor-cli-audit-');
    const file = join(dir, 'audit.jsonl');
    ok(await debvisor(['audit', 'export', '--file', file], { env: admin }));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(5);
    failed(await debvisor(['audit', 'export', '--file', file], { env: admin }), EXIT.usage); // no overwrite

    const intact = ok(await debvisor(['audit', 'verify', '--file', file], { env: admin }));
    expect(intact.stdout).toMatch(/audit log intact .*: \d+ entries/);
    const whole = ok(await debvisor(['-o', 'json', 'audit', 'verify'], { env: admin }));
    expect(JSON.parse(whole.stdout)).toMatchObject({ ok: true, firstSeq: 1 });

    const edited = join(dir, 'edited.jsonl');
    const entry = JSON.parse(lines[2]);
    entry.principal = 'somebody-else@local';
    writeFileSync(
      edited,
      [...lines.slice(0, 2), JSON.stringify(entry), ...lines.slice(3)].join('\n') + '\n',
    );
    const broken = await debvisor(['audit', 'verify', '--file', edited], { env: admin });
    expect(broken.code, show(broken)).toBe(EXIT.chainBroken);
    expect(broken.stdout).toMatch(/audit log BROKEN .*seq 3 \(.*edited\.jsonl, line 3\)/);

    refused(await debvisor(['audit', 'query'], { env: reader }), EXIT.forbidden, 403);
    refused(
      await debvisor(['audit', 'export', '--file', join(dir, 'x.jsonl')], { env: reader }),
      EXIT.forbidden,
      403,
    );
    expect(existsSync(join(dir, 'x.jsonl'))).toBe(false);
    refused(
      await debvisor(['audit', 'query', '--action', 'Not An Action'], { env: admin }),
      EXIT.usage,
      400,
    );
    failed(await debvisor(['audit', 'verify', '--file', join(dir, 'missing.jsonl')]), EXIT.usage);
  });
});

describe('access', () => {
  beforeAll(ensureRemote);

  it('lists users and groups, sets and removes ACL entries, creates and revokes tokens', async () => {
    const users = ok(await debvisor(['access', 'users'], { env: admin }));
    expect(users.stdout).toMatch(/^admin@local\s+local/m);
    ok(await debvisor(['access', 'groups'], { env: admin }));

    ok(
      await debvisor(['access', 'acl', 'set', `/remotes/${REMOTE}`, 'reader@local', 'Manage'], {
        env: admin,
      }),
    );
    const acl = JSON.parse(
      ok(await debvisor(['-o', 'json', 'access', 'acl', 'list'], { env: admin })).stdout,
    );
    expect(acl).toContainEqual(
      expect.objectContaining({
        path: `/remotes/${REMOTE}`,
        principal: 'reader@local',
        role: 'Manage',
      }),
    );
    ok(
      await debvisor(['access', 'acl', 'remove', `/remotes/${REMOTE}`, 'reader@local'], {
        env: admin,
      }),
    );
    const after = JSON.parse(
      ok(await debvisor(['-o', 'json', 'access', 'acl', 'list'], { env: admin })).stdout,
    );
    expect(after).not.toContainEqual(
      expect.objectContaining({ path: `/remotes/${REMOTE}`, principal: 'reader@local' }),
    );
    failed(
      await debvisor(['access', 'acl', 'set', '/', 'x@local', 'Owner'], { env: admin }),
      EXIT.usage,
    );
    refused(
      await debvisor(['access', 'acl', 'set', '/nowhere', 'reader@local', 'Audit'], { env: admin }),
      EXIT.usage,
      400,
    );

    const created = JSON.parse(
      ok(
        await debvisor(
          ['-o', 'json', 'access', 'tokens', 'create', 'cli-made', '--owner', 'reader@local'],
          { env: admin },
        ),
      ).stdout,
    );
    expect(created.token).toMatch(/^dvdm_/);
    // the new token works from the environment
    ok(await debvisor(['remotes', 'list'], { env: { ...admin, DEBVISOR_TOKEN: created.token } }));
    const tokens = ok(await debvisor(['access', 'tokens', 'list'], { env: admin }));
    expect(tokens.stdout).toContain('cli-made');
    expect(tokens.stdout).not.toContain(created.token);
    ok(await debvisor(['access', 'tokens', 'revoke', created.id], { env: admin }));
    refused(
      await debvisor(['remotes', 'list'], { env: { ...admin, DEBVISOR_TOKEN: created.token } }),
      EXIT.unauthenticated,
      401,
    );
    refused(
      await debvisor(['access', 'tokens', 'revoke', 'ffffffffffffffff'], { env: admin }),
      EXIT.notFound,
      404,
    );

    for (const args of [
      ['access', 'users'],
      ['access', 'groups'],
      ['access', 'acl', 'list'],
      ['access', 'tokens', 'list'],
    ])
      refused(await debvisor(args, { env: reader }), EXIT.forbidden, 403);
    refused(await debvisor(['access', 'users'], { env: badToken() }), EXIT.unauthenticated, 401);
  });
});

describe('access: users and groups', () => {
  it('creates a local user with a password from stdin, changes, groups and deletes it', async () => {
    const password = 'cli-made-Passw0rd-long';
    const created = JSON.parse(
      ok(
        await debvisor(
          ['-o', 'json', 'access', 'users', 'create', 'carol@local', '--display-name', 'Carol'],
          { env: admin, stdin: `${password}\n` },
        ),
      ).stdout,
    );
    // without --password-stdin nothing is read: the user has no password
    expect(created).toMatchObject({ id: 'carol@local', displayName: 'Carol', hasPassword: false });
    ok(
      await debvisor(['access', 'users', 'password', 'carol@local'], {
        env: admin,
        stdin: `${password}\n`,
      }),
    );
    const changed = JSON.parse(
      ok(
        await debvisor(
          ['-o', 'json', 'access', 'users', 'set', 'carol@local', '--disable', '--email', 'c@x.io'],
          { env: admin },
        ),
      ).stdout,
    );
    expect(changed).toMatchObject({ enabled: false, email: 'c@x.io', hasPassword: true });

    ok(
      await debvisor(['access', 'groups', 'create', 'cli-ops', '--comment', 'on call'], {
        env: admin,
      }),
    );
    ok(await debvisor(['access', 'groups', 'members', 'cli-ops', 'carol@local'], { env: admin }));
    const listed = JSON.parse(
      ok(await debvisor(['-o', 'json', 'access', 'users', 'list'], { env: admin })).stdout,
    );
    expect(listed.find((u: Json) => u.id === 'carol@local').groups).toEqual([
      { id: 'cli-ops', source: 'local' },
    ]);
    const groups = ok(await debvisor(['access', 'groups'], { env: admin }));
    expect(groups.stdout).toMatch(/^cli-ops\s+1\s/m);
    ok(await debvisor(['access', 'groups', 'set', 'cli-ops', '--require-tfa'], { env: admin }));

    // a weak password is the manager's 400, nothing is changed
    refused(
      await debvisor(['access', 'users', 'password', 'carol@local'], { env: admin, stdin: 'x' }),
      EXIT.usage,
      400,
    );
    failed(await debvisor(['access', 'users', 'create', 'no-realm'], { env: admin }), EXIT.usage);
    failed(await debvisor(['access', 'users', 'set', 'carol@local'], { env: admin }), EXIT.usage);
    // no terminal and no --yes: the question is answered no
    failed(
      await debvisor(['access', 'users', 'delete', 'carol@local'], { env: admin }),
      EXIT.declined,
    );
    refused(
      await debvisor(['access', 'groups', 'members', 'cli-ops', 'nobody@local'], { env: admin }),
      EXIT.notFound,
      404,
    );
    refused(
      await debvisor(['access', 'users', 'create', 'dave@local'], { env: reader }),
      EXIT.forbidden,
      403,
    );

    ok(await debvisor(['access', 'users', 'delete', 'carol@local', '--yes'], { env: admin }));
    ok(await debvisor(['access', 'groups', 'delete', 'cli-ops', '--yes'], { env: admin }));
    refused(
      await debvisor(['access', 'groups', 'delete', 'cli-ops', '--yes'], { env: admin }),
      EXIT.notFound,
      404,
    );
    const after = ok(await debvisor(['access', 'users'], { env: admin }));
    expect(after.stdout).not.toContain('carol@local');
  });
});

describe('shell completion', () => {
  it('completes commands and options in bash', async () => {
    const script = join(tempDir('debvisor-cli-'), 'debvisor.bash');
    writeFileSync(script, ok(await debvisor(['completion', 'bash'])).stdout);
    const complete = (line: string) =>
      execFileSync(
        'bash',
        [
          '-c',
          'source "$1"; read -ra COMP_WORDS <<< "$2"; [[ "$2" == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _debvisor; printf "%s\\n" "${COMPREPLY[@]}"',
          '--',
          script,
          line,
        ],
        { encoding: 'utf8', timeout: 10_000 },
      )
        .trim()
        .split('\n');
    expect(complete('debvisor re')).toEqual(['remotes', 'resources']);
    expect(complete('debvisor vm mi')).toEqual(['migrate']);
    expect(complete('debvisor vm snapshot ')).toEqual(
      expect.arrayContaining(['list', 'create', 'delete', 'rollback']),
    );
    expect(complete('debvisor vm migrate --target-')).toEqual(['--target-node', '--target-remote']);
    expect(complete('debvisor --output json tasks f')).toEqual(['follow']);
  });

  it('gives zsh a completion function over the same tree', async () => {
    const script = join(tempDir('debvisor-cli-'), '_debvisor');
    writeFileSync(script, ok(await debvisor(['completion', 'zsh'])).stdout);
    const zsh = requireBinary('zsh', 'zsh');
    execFileSync(zsh, ['-n', script], { timeout: 10_000 });
    const words = execFileSync(
      zsh,
      ['-c', 'compdef() { :; }; source "$1"; _debvisor_words "access tokens"', '--', script],
      { encoding: 'utf8', timeout: 10_000 },
    );
    expect(words.trim().split(' ')).toEqual(
      expect.arrayContaining(['list', 'create', 'revoke', '--help']),
    );
    failed(await debvisor(['completion', 'fish']), EXIT.usage);
  });
});
