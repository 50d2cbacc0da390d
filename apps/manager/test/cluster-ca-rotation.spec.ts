import { fingerprintSha256, splitPemBundle } from '@debvisor/pki';
import {
  cleanupTempDirs,
  createManagerIdentity,
  startCallLoad,
  startCluster,
  type TestCluster,
} from '@debvisor/testing';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClientRepository } from '../src/agents/agent-client.repository';
import { RemotesService } from '../src/remotes/remotes.service';
import {
  eventually,
  grantToken,
  startTestDatabases,
  startTestManager,
  stateDirWithClientIdentity,
  type Json,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

/**
 * A remote cluster's CA rotation driven from the manager, against real agents: only node-2 holds
 * the CA key (node-1, the first endpoint, answers that it holds none), the manager updates its own
 * trust for the remote between begin and finish, and calls keep succeeding throughout.
 */
let dbs: TestDatabases;
let cluster: TestCluster;
let manager: TestManager;
let databaseUrl: string;

beforeAll(async () => {
  const identity = await createManagerIdentity('ca-rotation');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: 'dc-ca',
      nodes: 2,
      vmsPerNode: 1,
      issuerNodes: ['node-2'],
      trustedClientCaPem: identity.ca.certPem,
    }),
  ]);
  databaseUrl = await dbs.fresh();
  manager = await startTestManager({
    databaseUrl,
    stateDir: stateDirWithClientIdentity(identity),
    // Deadlines are not what this tests: a busy test machine must not fail calls on them.
    env: { DEBVISOR_REMOTE_TIMEOUT_MS: '15000' },
  });
  const key = await cluster.createApiKey(['*'], { principal: 'manager' });
  const created = await manager.api('POST', '/api/v1/remotes', {
    id: 'dc-ca',
    endpoints: cluster.agents.map((agent) => agent.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key }],
  });
  expect(created.status, created.text).toBe(201);
}, 240_000);

afterAll(async () => {
  await manager?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

async function settled(taskId: string): Promise<Json> {
  return eventually(
    async () => {
      const task = await manager.api<Json>('GET', `/api/v1/tasks/${taskId}`);
      return ['succeeded', 'failed', 'cancelled'].includes(task.body.state) ? task.body : undefined;
    },
    120_000,
    `task ${taskId} ending`,
  );
}

describe("a remote's CA rotation from the manager", () => {
  it('refuses a bad request, and an auditor', async () => {
    const bad = await manager.api<Json>('POST', '/api/v1/remotes/dc-ca/ca-rotation', {
      action: 'spin',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBeTruthy();
    const unknown = await manager.api<Json>('POST', '/api/v1/remotes/nowhere/ca-rotation', {
      action: 'begin',
    });
    expect(unknown.status).toBe(404);
    const auditor = await grantToken(databaseUrl, 'ca-auditor', 'Audit', '/');
    const denied = await manager.api<Json>(
      'POST',
      '/api/v1/remotes/dc-ca/ca-rotation',
      { action: 'begin' },
      { token: auditor },
    );
    expect(denied.status).toBe(403);
    const read = await manager.api<Json>('GET', '/api/v1/remotes/dc-ca/ca-rotation', undefined, {
      token: auditor,
    });
    expect(read.status).toBe(200);
    expect(read.body.rotating).toBe(false);
    const finish = await manager.api<Json>('POST', '/api/v1/remotes/dc-ca/ca-rotation', {
      action: 'finish',
    });
    expect(finish.status).toBe(202);
    const failed = await settled(finish.body.taskId);
    expect(failed.state).toBe('failed');
    expect(JSON.stringify(failed)).toContain('no CA rotation of remote dc-ca is under way');
  }, 60_000);

  it('rotates the CA while calls go on: none fails, and the manager ends trusting the new CA alone', async () => {
    const agents = manager.manager.app.get(AgentClientRepository);
    const remotes = manager.manager.app.get(RemotesService);
    const oldFingerprint = fingerprintSha256(cluster.caPem);
    // A call as the manager makes them: the remote's stored trust, read from the database at each
    // call (20 a second: each is a database read too, on a shared test machine).
    const load = startCallLoad(
      [async () => agents.getClusterInfo(await remotes.connectionFor('dc-ca'))],
      20,
    );
    const accepted = await manager.api<Json>('POST', '/api/v1/remotes/dc-ca/ca-rotation', {
      action: 'rotate',
    });
    expect(accepted.status, accepted.text).toBe(202);
    const task = await settled(accepted.body.taskId);
    const result = await load.stop();
    expect(task.state, JSON.stringify(task.log)).toBe('succeeded');
    expect(result.errors).toEqual([]);
    expect(result.failed).toBe(0);
    expect(result.ok).toBeGreaterThan(10);
    const log = JSON.stringify(task.log);
    expect(log).toContain('the cluster trusts both CAs');
    expect(log).toContain('2 of 2 live nodes renewed with the new CA');
    expect(log).toContain('CA rotation finished');

    const status = await manager.api<Json>('GET', '/api/v1/remotes/dc-ca/ca-rotation');
    expect(status.body.rotating).toBe(false);
    expect(status.body.clusterCas).toHaveLength(1);
    const newFingerprint = status.body.clusterCas[0].fingerprintSha256;
    expect(newFingerprint).not.toBe(oldFingerprint);
    expect(status.body.remoteCaFingerprints).toEqual([newFingerprint]);
    expect(status.body.nodes.map((n: Json) => n.onIssuingCa)).toEqual([true, true]);
    const remote = await manager.api<Json>('GET', '/api/v1/remotes/dc-ca');
    expect(remote.body.trust.caFingerprint).toBe(newFingerprint);
    // Each agent's certificate now comes from the new CA.
    const newCa = new X509Certificate(status.body.clusterCas[0].pem);
    for (const agent of cluster.agents) {
      const config = JSON.parse(readFileSync(agent.configFile, 'utf8'));
      const leaf = new X509Certificate(splitPemBundle(readFileSync(config.tls.cert, 'utf8'))[0]);
      expect(leaf.verify(newCa.publicKey)).toBe(true);
    }
    // Recorded in the audit log.
    const audit = await manager.api<Json>('GET', '/api/v1/audit?action=remote.ca-rotation');
    expect(audit.status).toBe(200);
    expect(JSON.stringify(audit.body)).toContain('remote.ca-rotation');
  }, 180_000);
});
