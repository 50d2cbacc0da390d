import {
  cleanupTempDirs,
  freePort,
  spawnManaged,
  startCluster,
  tempDir,
  type ManagedProcess,
  type TestCluster,
} from '@debvisor/testing';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestApi } from './browser-harness';

/**
 * The whole stack as an operator runs it: the built manager process with its embedded
 * PostgreSQL, and two clusters of real agent processes with their own etcd, driven only through
 * the manager's REST API.
 */
const MANAGER_MAIN = resolve(__dirname, '../apps/manager/dist/main.js');
const REMOTE_TIMEOUT_MS = 4000;

describe('a federation of two clusters behind one manager', () => {
  let manager: ManagedProcess;
  let base: string;
  let ca: string;
  let token: string;
  let east: TestCluster;
  let west: TestCluster;

  const api = (method: string, path: string, body?: unknown) =>
    requestApi({ base, caPem: ca }, token, method, path, body);

  async function register(cluster: TestCluster): Promise<void> {
    const key = await cluster.createApiKey(['*'], { principal: 'manager@e2e' });
    const answer = await api('POST', '/api/v1/remotes', {
      id: cluster.clusterId,
      endpoints: cluster.agents.map((a) => a.endpoint),
      caCertPem: cluster.caPem,
      credentials: [{ name: 'admin', key }],
    });
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
  }

  const statusOf = async (remote: string) =>
    (await api('GET', '/api/v1/resources?type=node')).body.remotes.find(
      (r: { remote: string }) => r.remote === remote,
    );

  beforeAll(async () => {
    if (!existsSync(MANAGER_MAIN))
      throw new Error(`${MANAGER_MAIN} is missing: run \`npm run build\` first`);
    const stateDir = join(tempDir('debvisor-e2e-'), 'manager');
    const port = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DEBVISOR_STATE_DIR: stateDir,
      DEBVISOR_LISTEN: `127.0.0.1:${port}`,
      DEBVISOR_POLL_INTERVAL_SECONDS: '3600',
      DEBVISOR_REMOTE_TIMEOUT_MS: String(REMOTE_TIMEOUT_MS),
    };
    delete env.DATABASE_URL;
    manager = spawnManaged('manager', process.execPath, [MANAGER_MAIN], { env });
    await manager.waitFor(/"msg":"manager listening"/, 120_000);
    token = /bootstrap admin token: (dvdm_[A-Za-z0-9_-]+)/.exec(manager.output())![1];
    ca = readFileSync(join(stateDir, 'pki/server-ca.crt'), 'utf8');
    base = `https://127.0.0.1:${port}`;
    const clientCa = readFileSync(join(stateDir, 'pki/client-ca.crt'), 'utf8');
    [east, west] = await Promise.all([
      startCluster({ clusterId: 'dc-east', nodes: 3, vmsPerNode: 4, trustedClientCaPem: clientCa }),
      startCluster({ clusterId: 'dc-west', nodes: 2, vmsPerNode: 3, trustedClientCaPem: clientCa }),
    ]);
    await register(east);
    await register(west);
  });

  afterAll(async () => {
    await Promise.all([east?.stop(), west?.stop()]);
    await manager?.stop();
    cleanupTempDirs();
  });

  it('shows every node and VM of both clusters, as the agents report them', async () => {
    await api('GET', '/api/v1/resources/refresh');
    const { body } = await api('GET', '/api/v1/resources');
    const byRemote = (remote: string, type: string) =>
      body.items.filter(
        (i: { remote: string; type: string }) => i.remote === remote && i.type === type,
      );
    expect(byRemote('dc-east', 'node')).toHaveLength(3);
    expect(byRemote('dc-west', 'node')).toHaveLength(2);

    const client = east.connect(await east.createApiKey(['vm:instance:read']));
    const agentVms = await client.vm.listVms({}).finally(() => client.close());
    expect(
      byRemote('dc-east', 'vm')
        .map((v: { id: string }) => v.id)
        .sort(),
    ).toEqual(agentVms.vms.map((v) => v.spec!.uuid).sort());
    expect(byRemote('dc-west', 'vm')).toHaveLength(6);
    expect(body.remotes.map((r: { status: string }) => r.status)).toEqual(['online', 'online']);
  });

  it('marks a cluster whose agents all died unreachable, while the other keeps answering without waiting', async () => {
    await Promise.all(west.agents.map((a) => a.kill()));
    const refreshing = api('GET', '/api/v1/resources/refresh');

    // While the refresh of the dead cluster is under way, questions about the live one answer at once.
    const started = performance.now();
    const eastOnly = await api('GET', '/api/v1/resources?remote=dc-east&type=vm');
    expect(performance.now() - started).toBeLessThan(REMOTE_TIMEOUT_MS / 2);
    expect(eastOnly.body.items).toHaveLength(12);
    await refreshing;

    const westStatus = await statusOf('dc-west');
    expect(westStatus.status).toBe('unreachable');
    expect(westStatus.error.message).toMatch(/\S/);
    expect(Date.parse(westStatus.since)).toBeLessThanOrEqual(Date.now());
    expect((await statusOf('dc-east')).status).toBe('online');

    const metrics = await api('GET', '/metrics');
    expect(metrics.body).toMatch(/debvisor_remotes\{status="unreachable"\} 1/);
  });

  it('sees the cluster again, with the same VMs, once its agents are back', async () => {
    const before = (await api('GET', '/api/v1/resources?remote=dc-west&type=vm')).body.items
      .map((v: { id: string }) => v.id)
      .sort();
    await Promise.all(west.agents.map((a) => a.restart()));
    let status = await statusOf('dc-west');
    for (let i = 0; i < 20 && status.status !== 'online'; i++) {
      await api('GET', '/api/v1/resources/refresh?remote=dc-west');
      status = await statusOf('dc-west');
      if (status.status !== 'online') await new Promise((r) => setTimeout(r, 500));
    }
    expect(status).toMatchObject({ status: 'online', error: null, nodes: { total: 2, alive: 2 } });
    const after = (await api('GET', '/api/v1/resources?remote=dc-west&type=vm')).body.items
      .map((v: { id: string }) => v.id)
      .sort();
    expect(after).toEqual(before);
  });

  it('carries out a power action as a task that ends with the VM in its new state on the agent', async () => {
    const vms = (await api('GET', '/api/v1/resources?remote=dc-east&type=vm&status=stopped')).body
      .items;
    const vm =
      vms[0] ??
      (await api('GET', '/api/v1/resources?remote=dc-east&type=vm&status=running')).body.items[0];
    const action = vm.status === 'stopped' ? 'start' : 'stop';
    const accepted = await api('POST', `/api/v1/remotes/dc-east/vms/${vm.id}/${action}`);
    expect(accepted.status).toBe(202);

    let task = (await api('GET', `/api/v1/tasks/${accepted.body.taskId}`)).body;
    for (let i = 0; i < 100 && !['succeeded', 'failed'].includes(task.state); i++) {
      await new Promise((r) => setTimeout(r, 100));
      task = (await api('GET', `/api/v1/tasks/${accepted.body.taskId}`)).body;
    }
    expect(task.state).toBe('succeeded');
    const client = east.connect(await east.createApiKey(['vm:instance:read']));
    const onAgent = await client.vm.getVm({ uuid: vm.id }).finally(() => client.close());
    expect(onAgent.runtime!.state).toBe(action === 'start' ? 'running' : 'stopped');
    const cached = (await api('GET', `/api/v1/remotes/dc-east/vms/${vm.id}`)).body;
    expect(cached.status).toBe(onAgent.runtime!.state);
  });
});
