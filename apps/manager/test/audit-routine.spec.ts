import { verifyChain, type AuditEntry } from '@debvisor/audit';
import {
  cleanupTempDirs,
  createManagerIdentity,
  startCluster,
  type TestCluster,
} from '@debvisor/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  startTestDatabases,
  startTestManager,
  stateDirWithClientIdentity,
  type Json,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

/**
 * The audit log is the operators' record, not the poller's: with a real cluster polled every
 * second, the manager's own reads are summed up per remote (agent.call.summary, written at the
 * latest when the manager stops), the page hides them unless asked, and the chain stays verifiable.
 */
const REMOTE = 'dc-poll';
let dbs: TestDatabases;
let cluster: TestCluster;
let m: TestManager;
let databaseUrl: string;
let stateDir: string;

const entries = async (query: string): Promise<AuditEntry[]> => {
  const page = await m.api('GET', `/api/v1/audit?limit=1000${query}`);
  expect(page.status, page.text).toBe(200);
  return page.body.items;
};

beforeAll(async () => {
  const identity = await createManagerIdentity('audit-routine-spec');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: REMOTE,
      nodes: 1,
      vmsPerNode: 1,
      trustedClientCaPem: identity.ca.certPem,
      logLevel: 'warn',
    }),
  ]);
  const key = await cluster.createApiKey(['*'], { principal: 'manager' });
  databaseUrl = await dbs.fresh();
  stateDir = stateDirWithClientIdentity(identity);
  m = await startTestManager({
    databaseUrl,
    stateDir,
    env: { DEBVISOR_POLL_INTERVAL_SECONDS: '1' },
  });
  const created = await m.api('POST', '/api/v1/remotes', {
    id: REMOTE,
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key }],
  });
  expect(created.status, created.text).toBe(201);
}, 120_000);

afterAll(async () => {
  await m?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

describe("the manager's routine reads in the audit log", () => {
  it('are summed up per remote instead of one entry per call, hidden from the page by default, and the chain stays verifiable', async () => {
    // Several polls (one a second) go by.
    const seen = new Set<string>();
    await eventually(
      async () => {
        const status = (await m.api('GET', `/api/v1/resources?remote=${REMOTE}&limit=1`)).body
          .remotes[0] as Json;
        if (status?.lastRefreshAt) seen.add(status.lastRefreshAt);
        return seen.size >= 4 ? true : undefined;
      },
      30_000,
      'four polls',
    );
    const perCall = (await entries('&system=all&action=agent.call')).filter(
      (e) => e.principal === 'debvisor-manager' && e.action === 'agent.call',
    );
    expect(perCall).toEqual([]);

    // Stopping writes what is not summed up yet.
    await m.stop();
    m = await startTestManager({ databaseUrl, stateDir, token: m.token! });
    const summaries = await entries('&system=all&action=agent.call.summary');
    expect(summaries.length).toBeGreaterThanOrEqual(1);
    const calls = summaries.map(
      (e) =>
        (e.details.calls as Record<string, { success: number }>)['NodeService.ListNodes']
          ?.success ?? 0,
    );
    // Four refreshes were seen; the first came from adding the remote (the operator's request, recorded as theirs).
    expect(calls.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(3);
    expect(summaries[0]).toMatchObject({
      principal: 'debvisor-manager',
      target: `/remotes/${REMOTE}`,
      outcome: 'success',
      details: { remote: REMOTE },
    });

    // The page hides the routine reads unless asked; `none` hides everything the manager did on its own.
    const page = await entries('');
    expect(page.length).toBeGreaterThan(0);
    expect(page.filter((e) => e.action === 'agent.call.summary')).toEqual([]);
    expect(page.some((e) => e.action === 'remote.create')).toBe(true);
    expect(
      (await entries('&system=none')).filter((e) => e.principal === 'debvisor-manager'),
    ).toEqual([]);
    expect((await m.api('GET', '/api/v1/audit?system=sometimes')).status).toBe(400);

    // The whole export (the default) holds them and verifies from the first entry; without them it has gaps.
    const whole = (await m.api('GET', '/api/v1/audit/export')).text
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as AuditEntry);
    expect(whole.filter((e) => e.action === 'agent.call.summary').length).toBe(summaries.length);
    await expect(verifyChain(whole, { fromGenesis: true })).resolves.toMatchObject({
      ok: true,
      entries: whole.length,
    });
    const quiet = (await m.api('GET', '/api/v1/audit/export?system=no-routine')).text
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as AuditEntry);
    expect(quiet.length).toBe(whole.length - summaries.length);
    await expect(verifyChain(quiet, { allowGaps: true })).resolves.toMatchObject({ ok: true });
  }, 120_000);
});
