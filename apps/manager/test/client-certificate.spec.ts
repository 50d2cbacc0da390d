import { fingerprintSha256, splitPemBundle } from '@debvisor/pki';
import {
  cleanupTempDirs,
  createManagerIdentity,
  startCallLoad,
  startCluster,
  type TestCluster,
} from '@debvisor/testing';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClientRepository } from '../src/agents/agent-client.repository';
import type { AgentConnection } from '../src/agents/agent-connection';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../src/pki/state-dir.repository';
import { SchedulerService } from '../src/scheduler/scheduler.service';
import {
  eventually,
  startTestDatabases,
  startTestManager,
  stateDirWithClientIdentity,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

/**
 * The manager's client certificate for the agents is short-lived and renews itself while the
 * manager keeps calling real agents: no call fails, and every new connection presents a current
 * certificate (an agent that restarts after the first certificates expired is reached again).
 */
const LIFETIME_SECONDS = 6;

let dbs: TestDatabases;
let cluster: TestCluster;
let identity: Awaited<ReturnType<typeof createManagerIdentity>>;
let manager: TestManager;
let apiKey: string;

beforeAll(async () => {
  identity = await createManagerIdentity('client-rotation');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: 'dc-rotate',
      nodes: 2,
      vmsPerNode: 1,
      trustedClientCaPem: identity.ca.certPem,
    }),
  ]);
  apiKey = await cluster.createApiKey(['node:registry:read'], { principal: 'manager' });
  manager = await startTestManager({
    databaseUrl: await dbs.fresh(),
    stateDir: stateDirWithClientIdentity(identity),
    env: {
      DEBVISOR_CLIENT_CERTIFICATE_LIFETIME_SECONDS: String(LIFETIME_SECONDS),
      // Deadlines are not what this tests: while one agent restarts, a busy test machine must not
      // fail the calls the other one answers.
      DEBVISOR_REMOTE_TIMEOUT_MS: '15000',
    },
  });
}, 180_000);

afterAll(async () => {
  await manager?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

describe("the manager's client certificate", () => {
  it('replaces a long-lived certificate at start with a short-lived one of the same subject, stored in the state directory', () => {
    const stored = readFileSync(`${manager.stateDir}/pki/client.crt`, 'utf8');
    const leaf = new X509Certificate(splitPemBundle(stored)[0]);
    const original = new X509Certificate(splitPemBundle(identity.client.certPem)[0]);
    expect(leaf.serialNumber).not.toBe(original.serialNumber);
    expect(leaf.subject).toBe(original.subject);
    expect(leaf.checkIssued(new X509Certificate(identity.ca.certPem))).toBe(true);
    const lifetimeMs = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
    expect(lifetimeMs).toBeLessThanOrEqual(LIFETIME_SECONDS * 1000 + 1000);
    // The key on disk is the certificate's (the pair is written together).
    const key = readFileSync(`${manager.stateDir}/pki/client.key`, 'utf8');
    expect(leaf.checkPrivateKey(createPrivateKey(key))).toBe(true);
  });

  it('renews while calls run continuously, none fails, and a restarted agent is reached again after the first certificates expired', async () => {
    const agents = manager.manager.app.get(AgentClientRepository);
    const live = manager.manager.app.get<symbol, ManagerIdentity>(MANAGER_IDENTITY).client;
    const connection: AgentConnection = {
      remoteId: 'dc-rotate',
      endpoints: cluster.agents.map((agent) => agent.endpoint),
      caCertPem: cluster.caPem,
      apiKey,
    };
    const seen = new Set<string>();
    const answeredBy: { nodeId: string; at: number }[] = [];
    const load = startCallLoad(
      [
        async () => {
          seen.add(fingerprintSha256(live.certPem));
          const info = await agents.getClusterInfo(connection);
          answeredBy.push({ nodeId: info.nodeId, at: Date.now() });
        },
      ],
      50,
    );
    // Two lifetimes: every certificate presented when the load began has expired.
    const firstExpiry = Date.parse(new X509Certificate(splitPemBundle(live.certPem)[0]).validTo);
    await eventually(
      async () => (Date.now() > firstExpiry + 500 && seen.size >= 3 ? true : undefined),
      4 * LIFETIME_SECONDS * 1000,
      'two renewals and the first certificate expired',
    );
    // The first endpoint's agent restarts: its channel must reconnect, with a current certificate.
    await cluster.agents[0].restart();
    const restartedAt = Date.now();
    await eventually(
      async () =>
        answeredBy.some((a) => a.nodeId === cluster.agents[0].nodeId && a.at > restartedAt)
          ? true
          : undefined,
      30_000,
      'the restarted agent answering the manager again',
    );
    const result = await load.stop();
    expect(result.errors).toEqual([]);
    expect(result.failed).toBe(0);
    expect(result.ok).toBeGreaterThan(100);
    expect(seen.size).toBeGreaterThanOrEqual(3);
    // Renewal keeps going on its own.
    const before = fingerprintSha256(live.certPem);
    await eventually(
      async () => (fingerprintSha256(live.certPem) !== before ? true : undefined),
      2 * LIFETIME_SECONDS * 1000,
      'the next renewal',
    );
  }, 120_000);

  it('is no longer accepted by an agent once it expired: what renewal prevents', async () => {
    await manager.manager.app.get(SchedulerService).unregister('pki.client-certificate.renew');
    const live = manager.manager.app.get<symbol, ManagerIdentity>(MANAGER_IDENTITY).client;
    const agents = manager.manager.app.get(AgentClientRepository);
    const expiry = Date.parse(new X509Certificate(splitPemBundle(live.certPem)[0]).validTo);
    await eventually(
      async () => (Date.now() > expiry + 500 ? true : undefined),
      2 * LIFETIME_SECONDS * 1000,
      'the certificate expiring',
    );
    // A new channel group: a new connection, with the expired certificate.
    await expect(
      agents.getClusterInfo({
        remoteId: 'dc-rotate',
        channelGroup: 'expired-check',
        endpoints: [cluster.agents[1].endpoint],
        caCertPem: cluster.caPem,
        apiKey,
      }),
    ).rejects.toThrow();
    agents.invalidate('expired-check');
  }, 60_000);
});
