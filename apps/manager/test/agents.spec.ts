import { createCa, fingerprintSha256 } from '@debvisor/pki';
import {
  cleanupTempDirs,
  createManagerIdentity,
  freePort,
  startCluster,
  type TestCluster,
} from '@debvisor/testing';
import { createServer, type Server, type Socket } from 'node:net';
import { Client } from 'pg';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  startTestDatabases,
  startTestManager,
  stateDirWithClientIdentity,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

/**
 * The manager against real agents: two simulated clusters started by the test harness (etcd and
 * agent processes), both trusting the manager's client CA.
 */
const REMOTE_TIMEOUT_MS = 3000;

let dbs: TestDatabases;
let identity: Awaited<ReturnType<typeof createManagerIdentity>>;
let east: TestCluster;
let west: TestCluster;
let eastKey: string;
let westKey: string;
let readOnlyKey: string;
const started: TestManager[] = [];

beforeAll(async () => {
  identity = await createManagerIdentity('agents-spec');
  [dbs, east, west] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: 'dc-east',
      nodes: 2,
      vmsPerNode: 2,
      trustedClientCaPem: identity.ca.certPem,
    }),
    startCluster({
      clusterId: 'dc-west',
      nodes: 1,
      vmsPerNode: 2,
      trustedClientCaPem: identity.ca.certPem,
    }),
  ]);
  [eastKey, westKey, readOnlyKey] = await Promise.all([
    east.createApiKey(['*'], { principal: 'manager' }),
    west.createApiKey(['*'], { principal: 'manager' }),
    east.createApiKey(['node:registry:read', 'vm:instance:read'], { principal: 'auditor' }),
  ]);
}, 180_000);

afterEach(async () => {
  await Promise.all(started.splice(0).map((m) => m.stop()));
});

afterAll(async () => {
  await Promise.all([east?.stop(), west?.stop()]);
  await dbs?.stop();
  cleanupTempDirs();
});

async function manager(options: Parameters<typeof startTestManager>[0] = {}): Promise<TestManager> {
  const m = await startTestManager({
    databaseUrl: options.databaseUrl ?? (await dbs.fresh()),
    stateDir: options.stateDir ?? stateDirWithClientIdentity(identity),
    ...options,
    env: { DEBVISOR_REMOTE_TIMEOUT_MS: String(REMOTE_TIMEOUT_MS), ...options.env },
  });
  started.push(m);
  return m;
}

function remoteBody(cluster: TestCluster, key: string, extra: Record<string, unknown> = {}) {
  return {
    id: cluster.clusterId,
    description: `simulated ${cluster.clusterId}`,
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key }],
    ...extra,
  };
}

/** A TCP server that accepts connections and never answers: a remote that hangs. */
async function blackhole(): Promise<{ endpoint: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    endpoint: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('adding remotes', () => {
  it('adds a remote after testing TLS, the key and the node count, and lists its nodes and VMs', async () => {
    const m = await manager();
    const added = await m.api('POST', '/api/v1/remotes', remoteBody(east, eastKey));
    expect(added.status, added.text).toBe(201);
    expect(added.body.connection).toMatchObject({ ok: true, clusterId: 'dc-east', nodeCount: 2 });
    expect(added.body.trust).toEqual({
      caFingerprint: fingerprintSha256(east.caPem),
      caCertPem: east.caPem,
      resolved: true,
    });

    await m.api('GET', '/api/v1/resources/refresh');
    const resources = await m.api('GET', '/api/v1/resources?remote=dc-east');
    expect(resources.body.remotes).toEqual([
      expect.objectContaining({
        remote: 'dc-east',
        status: 'online',
        nodes: { total: 2, alive: 2 },
        vms: expect.objectContaining({ total: 4 }),
        error: null,
      }),
    ]);
    expect(
      resources.body.items
        .filter((r: { type: string }) => r.type === 'node')
        .map((r: { id: string }) => r.id)
        .sort(),
    ).toEqual(['node-1', 'node-2']);
    const vms = resources.body.items.filter((r: { type: string }) => r.type === 'vm');
    expect(vms).toHaveLength(4);
    expect(
      (await m.api('GET', '/api/v1/resources?type=vm&remote=dc-east')).body.items,
    ).toHaveLength(4);
    expect(
      (
        await m.api('GET', `/api/v1/resources?name=${encodeURIComponent(vms[0].name)}`)
      ).body.items.map((r: { id: string }) => r.id),
    ).toContain(vms[0].id);
    const nodes = await m.api('GET', '/api/v1/remotes/dc-east/nodes');
    expect(nodes.body.items).toHaveLength(2);
    const one = await m.api('GET', `/api/v1/remotes/dc-east/vms/${vms[0].id}`);
    expect(one.body).toMatchObject({ id: vms[0].id, remote: 'dc-east', type: 'vm' });
    expect((await m.api('GET', '/api/v1/remotes/dc-east/vms')).body.items).toHaveLength(4);
    expect(
      (await m.api('GET', '/api/v1/remotes/dc-east/vms/7b0e5e8e-0000-4000-8000-000000000000'))
        .status,
    ).toBe(404);
  });

  it('pins only a fingerprint: keeps the presented CA whose fingerprint matches as the trust anchor', async () => {
    const m = await manager();
    const probe = await m.api('POST', '/api/v1/remotes/probe', {
      endpoint: east.agents[0].endpoint,
    });
    expect(probe.status, probe.text).toBe(200);
    const fingerprints = probe.body.certificates.map(
      (c: { fingerprintSha256: string }) => c.fingerprintSha256,
    );
    expect(fingerprints).toContain(fingerprintSha256(east.caPem));
    expect(probe.body.certificates[0].subject).toContain('agent:node-1');

    const pin = fingerprintSha256(east.caPem).replace(/:/g, '').toLowerCase();
    const added = await m.api(
      'POST',
      '/api/v1/remotes',
      remoteBody(east, eastKey, { caCertPem: undefined, caFingerprint: pin }),
    );
    expect(added.status, added.text).toBe(201);
    expect(added.body.trust).toMatchObject({
      caFingerprint: fingerprintSha256(east.caPem),
      resolved: true,
    });
    expect(fingerprintSha256(added.body.trust.caCertPem)).toBe(fingerprintSha256(east.caPem));
    expect(added.body.connection).toMatchObject({ ok: true, nodeCount: 2 });
  });

  it('refuses a wrong CA pin, naming the fingerprint mismatch', async () => {
    const m = await manager();
    const wrong = fingerprintSha256((await createCa('someone else')).certPem);
    const refused = await m.api(
      'POST',
      '/api/v1/remotes',
      remoteBody(east, eastKey, { caCertPem: undefined, caFingerprint: wrong }),
    );
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('remote_fingerprint_mismatch');
    expect(refused.body.error.message).toContain('fingerprint mismatch');
    expect(refused.body.error.message).toContain(wrong);
    expect((await m.api('GET', '/api/v1/remotes/dc-east')).status).toBe(404);
  });

  it('refuses a CA that did not sign the agents, and a key the cluster does not know', async () => {
    const m = await manager();
    const otherCa = (await createCa('another cluster')).certPem;
    const untrusted = await m.api(
      'POST',
      '/api/v1/remotes',
      remoteBody(east, eastKey, { caCertPem: otherCa }),
    );
    expect(untrusted.status).toBe(422);
    expect(untrusted.body.error.code).toBe('remote_tls_failed');

    const unknownKey = `dvk_${'1'.repeat(16)}_${'k'.repeat(43)}`;
    const rejected = await m.api('POST', '/api/v1/remotes', remoteBody(east, unknownKey));
    expect(rejected.status).toBe(422);
    expect(rejected.body.error.code).toBe('remote_credential_rejected');
    expect(rejected.body.error.message).toContain('credential admin');
    expect((await m.api('GET', '/api/v1/remotes')).body.items).toEqual([]);
  });

  it('tests every credential: adds an accepted one, refuses a rejected one unless addAnyway', async () => {
    const m = await manager();
    expect((await m.api('POST', '/api/v1/remotes', remoteBody(east, eastKey))).status).toBe(201);
    const reader = await m.api('POST', '/api/v1/remotes/dc-east/credentials', {
      name: 'reader',
      key: readOnlyKey,
    });
    expect(reader.status, reader.text).toBe(201);
    expect(reader.body.connection).toMatchObject({ ok: true });
    const bogus = `dvk_${'2'.repeat(16)}_${'q'.repeat(43)}`;
    const refused = await m.api('POST', '/api/v1/remotes/dc-east/credentials', {
      name: 'bogus',
      key: bogus,
    });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('remote_credential_rejected');
    const forced = await m.api('POST', '/api/v1/remotes/dc-east/credentials', {
      name: 'bogus',
      key: bogus,
      addAnyway: true,
    });
    expect(forced.status).toBe(201);
    expect(forced.body.credentials.map((c: { name: string }) => c.name)).toEqual([
      'admin',
      'reader',
      'bogus',
    ]);
  });
});

describe('resources of several remotes', () => {
  it('shows an unreachable remote with its error and since while the other keeps answering at normal speed', async () => {
    const hung = await blackhole();
    try {
      const m = await manager();
      expect((await m.api('POST', '/api/v1/remotes', remoteBody(east, eastKey))).status).toBe(201);
      const dead = await m.api('POST', '/api/v1/remotes', {
        ...remoteBody(west, westKey),
        id: 'dc-hung',
        endpoints: [hung.endpoint],
        addAnyway: true,
      });
      expect(dead.status, dead.text).toBe(201);

      // An on-demand refresh of everything waits at most about the remote timeout.
      const before = performance.now();
      const refreshed = await m.api('GET', '/api/v1/resources/refresh');
      expect(performance.now() - before).toBeLessThan(REMOTE_TIMEOUT_MS + 2000);
      expect(
        refreshed.body.remotes.find((r: { remote: string }) => r.remote === 'dc-east').status,
      ).toBe('online');

      // While the hung remote is being refreshed again, answers about the healthy one do not wait for it.
      const pending = m.api('GET', '/api/v1/resources/refresh?remote=dc-hung');
      const timings: number[] = [];
      for (let i = 0; i < 5; i += 1) {
        const start = performance.now();
        const answer = await m.api('GET', '/api/v1/resources?remote=dc-east');
        timings.push(performance.now() - start);
        expect(answer.status).toBe(200);
        expect(answer.body.items.length).toBe(6);
      }
      expect(Math.max(...timings)).toBeLessThan(REMOTE_TIMEOUT_MS / 2);
      await pending;

      const all = await m.api('GET', '/api/v1/resources');
      const hungStatus = all.body.remotes.find((r: { remote: string }) => r.remote === 'dc-hung');
      expect(hungStatus).toMatchObject({
        status: 'unreachable',
        error: { code: 'remote_unreachable' },
      });
      expect(hungStatus.error.message).toContain(hung.endpoint);
      expect(Date.parse(hungStatus.since)).toBeLessThanOrEqual(Date.now());
      expect(
        all.body.remotes.find((r: { remote: string }) => r.remote === 'dc-east'),
      ).toMatchObject({ status: 'online' });
      expect(all.body.items.every((r: { remote: string }) => r.remote === 'dc-east')).toBe(true);

      // /metrics needs system.audit (issue 14 item 9): the admin token's.
      const metrics = await m.api('GET', '/metrics');
      expect(metrics.text).toContain('debvisor_remotes{status="online"} 1');
      expect(metrics.text).toContain('debvisor_remotes{status="unreachable"} 1');
    } finally {
      await hung.close();
    }
  });

  it('falls back to the next endpoint when the first agent is down', async () => {
    const m = await manager();
    const closedPort = await freePort();
    const body = remoteBody(west, westKey, {
      endpoints: [`127.0.0.1:${closedPort}`, west.agents[0].endpoint],
    });
    const added = await m.api('POST', '/api/v1/remotes', body);
    expect(added.status, added.text).toBe(201);
    const refreshed = await m.api('GET', '/api/v1/resources/refresh?remote=dc-west');
    expect(refreshed.body.remotes[0]).toMatchObject({
      remote: 'dc-west',
      status: 'online',
      nodes: { total: 1, alive: 1 },
    });
  });
});

describe('VM power actions as tasks', () => {
  async function taskOutcome(m: TestManager, taskId: string) {
    return eventually(
      async () => {
        const task = await m.api('GET', `/api/v1/tasks/${taskId}`);
        return ['succeeded', 'failed'].includes(task.body.state) ? task.body : undefined;
      },
      30_000,
      `task ${taskId} finished`,
    );
  }

  it('answers 202 with a task id; the task succeeds and the VM changed state in the agent and the cache', async () => {
    const m = await manager();
    expect((await m.api('POST', '/api/v1/remotes', remoteBody(west, westKey))).status).toBe(201);
    await m.api('GET', '/api/v1/resources/refresh?remote=dc-west');
    const vm = (await m.api('GET', '/api/v1/remotes/dc-west/vms')).body.items[0];
    const action = vm.status === 'running' ? 'stop' : 'start';
    const expected = action === 'stop' ? 'stopped' : 'running';

    const accepted = await m.api('POST', `/api/v1/remotes/dc-west/vms/${vm.id}/${action}`);
    expect(accepted.status, accepted.text).toBe(202);
    expect(accepted.body.taskId).toMatch(/^[0-9a-f-]{36}$/);

    const task = await taskOutcome(m, accepted.body.taskId);
    expect(task).toMatchObject({
      state: 'succeeded',
      type: `vm.${action}`,
      target: { remote: 'dc-west', vm: vm.id },
      owner: 'admin@local!bootstrap',
      progress: 1,
      error: null,
    });
    expect(task.log.map((l: { message: string }) => l.message).join('\n')).toContain(
      `now ${expected}`,
    );

    const client = west.connect(westKey);
    try {
      expect((await client.vm.getVm({ uuid: vm.id })).runtime?.state).toBe(expected);
    } finally {
      client.close();
    }
    expect((await m.api('GET', `/api/v1/remotes/dc-west/vms/${vm.id}`)).body.status).toBe(expected);

    const list = await m.api('GET', '/api/v1/tasks?remote=dc-west&limit=10');
    expect(list.body).toMatchObject({ total: 1, limit: 10, offset: 0 });
    expect(list.body.items[0].id).toBe(accepted.body.taskId);
  });

  it("fails the task with the agent's reason when the VM does not exist", async () => {
    const m = await manager();
    expect((await m.api('POST', '/api/v1/remotes', remoteBody(west, westKey))).status).toBe(201);
    const accepted = await m.api(
      'POST',
      '/api/v1/remotes/dc-west/vms/11111111-2222-4333-8444-555555555555/start',
    );
    expect(accepted.status).toBe(202);
    const task = await taskOutcome(m, accepted.body.taskId);
    expect(task.state).toBe('failed');
    expect(task.error).toContain('11111111-2222-4333-8444-555555555555');
  });

  it('answers 404 for a power action on an unknown remote', async () => {
    const m = await manager();
    const answer = await m.api(
      'POST',
      '/api/v1/remotes/nowhere/vms/11111111-2222-4333-8444-555555555555/start',
    );
    expect(answer.status).toBe(404);
  });

  it('fails a task left running by a stopped manager on the next start, saying the manager restarted', async () => {
    const first = await manager();
    expect((await first.api('POST', '/api/v1/remotes', remoteBody(west, westKey))).status).toBe(
      201,
    );
    await first.api('GET', '/api/v1/resources/refresh?remote=dc-west');
    const vm = (await first.api('GET', '/api/v1/remotes/dc-west/vms')).body.items[0];
    const done = await first.api(
      'POST',
      `/api/v1/remotes/dc-west/vms/${vm.id}/${vm.status === 'running' ? 'stop' : 'start'}`,
    );
    await taskOutcome(first, done.body.taskId);
    await first.stop();
    started.splice(started.indexOf(first), 1);

    // What a crash in the middle of a task leaves behind: a task still marked running (and one queued).
    const client = new Client({ connectionString: first.databaseUrl });
    await client.connect();
    const at = new Date(Date.now() - 5000);
    await client.query(
      `INSERT INTO tasks (id, type, state, remote_id, vm_id, owner, progress, log, created_at, started_at, updated_at)
       VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'vm.stop', 'running', 'dc-west', $1, 'admin@local!bootstrap', 0.5, $2, $3, $3, $3),
              ('aaaaaaaa-0000-4000-8000-000000000002', 'vm.start', 'queued', 'dc-west', $1, 'admin@local!bootstrap', 0, '[]', $3, NULL, $3)`,
      [
        vm.id,
        JSON.stringify([{ at: at.toISOString(), message: 'asking remote dc-west to stop' }]),
        at,
      ],
    );
    await client.end();

    const second = await manager({
      databaseUrl: first.databaseUrl,
      stateDir: first.stateDir,
      token: first.token,
    });
    const running = await second.api('GET', '/api/v1/tasks/aaaaaaaa-0000-4000-8000-000000000001');
    expect(running.body).toMatchObject({ state: 'failed', finishedAt: expect.any(String) });
    expect(running.body.error).toContain('manager restarted while this task was running');
    expect(running.body.log.at(-1).message).toContain('manager restarted');
    const queued = await second.api('GET', '/api/v1/tasks/aaaaaaaa-0000-4000-8000-000000000002');
    expect(queued.body).toMatchObject({ state: 'failed' });
    expect(queued.body.error).toContain('before this task started');
    // The finished task before the restart is untouched; the VM cache is refreshed after the restart.
    expect((await second.api('GET', `/api/v1/tasks/${done.body.taskId}`)).body.state).toBe(
      'succeeded',
    );
    const status = await eventually(async () => {
      const answer = await second.api('GET', '/api/v1/resources?remote=dc-west');
      return answer.body.remotes[0]?.status === 'online' ? answer.body : undefined;
    });
    expect(status.items.some((r: { id: string }) => r.id === vm.id)).toBe(true);
  });
});
