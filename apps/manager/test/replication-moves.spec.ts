import {
  cleanupTempDirs,
  createManagerIdentity,
  startCluster,
  type TestCluster,
} from '@debvisor/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  sqlQuery,
  startTestDatabases,
  startTestManager,
  stateDirWithClientIdentity,
  type Json,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

/**
 * A mirrored VM that moves outside the DR actions, against the real agents of two simulated
 * clusters and a real PostgreSQL: a cross-remote live migration through POST …/migrate carries the
 * DR roles with it, and a planned switchover that a manager restart interrupts is settled by the
 * next start.
 */
let dbs: TestDatabases;
let identity: Awaited<ReturnType<typeof createManagerIdentity>>;
let east: TestCluster;
let west: TestCluster;
let eastKey: string;
let westKey: string;
let m: TestManager;
let vms: Json[];
/** The bootstrap admin token (printed at the first start only; later starts of the manager reuse it). */
let token: string;

const FINAL = ['succeeded', 'failed', 'cancelled'];

beforeAll(async () => {
  identity = await createManagerIdentity('replication-moves-spec');
  const agentConfig = (seedVms: number) => () => ({
    sim: {
      timeScale: 0.02,
      seedVms,
      diskWriteIntervalMs: 500,
      mirror: { replayIntervalMs: 200, peerTimeoutMs: 1_000 },
    },
  });
  [dbs, east, west] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: 'mv-east',
      nodes: 2,
      vmsPerNode: 2,
      trustedClientCaPem: identity.ca.certPem,
      agentConfig: agentConfig(2),
    }),
    startCluster({
      clusterId: 'mv-west',
      nodes: 1,
      vmsPerNode: 0,
      trustedClientCaPem: identity.ca.certPem,
      agentConfig: agentConfig(0),
    }),
  ]);
  [eastKey, westKey] = await Promise.all([
    east.createApiKey(['*'], { principal: 'manager' }),
    west.createApiKey(['*'], { principal: 'manager' }),
  ]);
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    stateDir: stateDirWithClientIdentity(identity),
  });
  token = m.token!;
  for (const [cluster, key] of [
    [east, eastKey],
    [west, westKey],
  ] as const) {
    const added = await m.api('POST', '/api/v1/remotes', {
      id: cluster.clusterId,
      endpoints: cluster.agents.map((a) => a.endpoint),
      caCertPem: cluster.caPem,
      credentials: [{ name: 'admin', key }],
    });
    expect(added.status, added.text).toBe(201);
  }
  await succeeded(
    await m.api('POST', '/api/v1/replication/pairs', {
      remoteA: 'mv-east',
      poolA: 'rbd',
      remoteB: 'mv-west',
      poolB: 'rbd',
    }),
  );
  await m.api('GET', '/api/v1/resources/refresh?remote=mv-east');
  vms = [...((await m.api('GET', '/api/v1/remotes/mv-east/vms')).body.items as Json[])].sort(
    (a, b) => a.memoryBytes - b.memoryBytes,
  );
  expect(vms.length).toBeGreaterThanOrEqual(3);
}, 180_000);

afterAll(async () => {
  await m?.stop();
  await Promise.all([east?.stop(), west?.stop()]);
  await dbs?.stop();
  cleanupTempDirs();
});

async function taskOutcome(taskId: string, manager = m, timeoutMs = 90_000): Promise<Json> {
  return eventually(
    async () => {
      const task = await manager.api('GET', `/api/v1/tasks/${taskId}`);
      return FINAL.includes(task.body.state) ? task.body : undefined;
    },
    timeoutMs,
    `task ${taskId} finished`,
  );
}

async function succeeded(
  answer: { status: number; body: Json; text: string },
  manager = m,
): Promise<Json> {
  expect(answer.status, answer.text).toBe(202);
  const task = await taskOutcome(answer.body.taskId, manager);
  expect(task.state, `${task.error}\n${task.log.map((l: Json) => l.message).join('\n')}`).toBe(
    'succeeded',
  );
  return task;
}

const replication = (remote: string, vm: Json) =>
  `/api/v1/remotes/${remote}/vms/${vm.id}/replication`;

/** The VM's state at each remote as the agents answer now (undefined: not defined there). */
async function whereIs(
  vm: Json,
  manager = m,
): Promise<{ east: string | undefined; west: string | undefined }> {
  const state = async (remote: string) => {
    await manager.api('GET', `/api/v1/resources/refresh?remote=${remote}`);
    return ((await manager.api('GET', `/api/v1/remotes/${remote}/vms`)).body.items as Json[]).find(
      (v) => v.id === vm.id,
    )?.status as string | undefined;
  };
  return { east: await state('mv-east'), west: await state('mv-west') };
}

/** Mirroring of a running VM of mv-east to mv-west, replaying every disk. */
async function mirrored(vm: Json): Promise<void> {
  if (vm.status !== 'running')
    await succeeded(await m.api('POST', `/api/v1/remotes/mv-east/vms/${vm.id}/start`));
  await succeeded(
    await m.api('POST', replication('mv-east', vm), {
      targetRemote: 'mv-west',
      scheduleInterval: '1m',
      rpoTargetSeconds: 600,
    }),
  );
  await eventually(
    async () => {
      const body = (await m.api('GET', replication('mv-east', vm))).body;
      return body.images?.length > 0 &&
        body.images.every(
          (image: Json) => image.sites[1].state === 'up+replaying' && image.lastMirroredSnapshotAt,
        )
        ? true
        : undefined;
    },
    20_000,
    'the target replaying every disk',
  );
}

describe('a live migration of a mirrored VM to its other site', () => {
  it('carries the DR roles with it: the new remote primary, the old one secondary and replaying; a switchover back works', async () => {
    const vm = vms[0];
    await mirrored(vm);
    const task = await succeeded(
      await m.api('POST', `/api/v1/remotes/mv-east/vms/${vm.id}/migrate`, {
        targetRemote: 'mv-west',
        targetNode: 'node-1',
      }),
    );
    expect(task.log.map((l: Json) => l.message)).toContain(
      '[completed] replication: DR state mv-west primary, mv-east secondary (the mirrored disks changed sides with the VM)',
    );
    expect(await whereIs(vm)).toEqual({ east: undefined, west: 'running' });

    const status = await eventually(
      async () => {
        const body = (await m.api('GET', replication('mv-west', vm))).body;
        // The old site's images replay from the new primary.
        return body.images.every(
          (image: Json) =>
            image.sites[0].primary === false &&
            image.sites[0].state === 'up+replaying' &&
            image.sites[1].primary === true,
        )
          ? body
          : undefined;
      },
      30_000,
      'mv-east replaying from mv-west',
    );
    expect(status).toMatchObject({
      primaryRemote: 'mv-west',
      state: 'secondary',
      source: { remote: 'mv-east', role: 'secondary' },
      target: { remote: 'mv-west', role: 'primary' },
      splitBrain: false,
    });
    expect(status.lastChange).toBe(`live migration to mv-west (task ${task.id})`);

    const back = await succeeded(
      await m.api('POST', replication('mv-west', vm) + '/switchover', {}),
    );
    expect(back.log.map((l: Json) => l.message)).toContain(
      '[done] DR state: mv-east primary, mv-west secondary',
    );
    expect(await whereIs(vm)).toEqual({ east: 'running', west: undefined });
    expect((await m.api('GET', replication('mv-east', vm))).body).toMatchObject({
      primaryRemote: 'mv-east',
      source: { role: 'primary' },
      target: { role: 'secondary' },
    });
  }, 150_000);
});

/**
 * Stops the manager once the switchover's journal has a line starting with `marker`, starts it
 * again on the same database, and answers the task as it ended (it was left running).
 */
async function restartDuring(taskId: string, marker: string): Promise<Json> {
  await eventually(
    async () =>
      ((await m.api('GET', `/api/v1/tasks/${taskId}`)).body.log as Json[]).some((line) =>
        line.message.startsWith(marker),
      ) || undefined,
    60_000,
    `the journal line ${marker}`,
  );
  const first = m;
  await first.stop();
  const [left] = await sqlQuery(first.databaseUrl!, 'SELECT state FROM tasks WHERE id = $1', [
    taskId,
  ]);
  expect(left.state).toBe('running');
  m = await startTestManager({ databaseUrl: first.databaseUrl, stateDir: first.stateDir, token });
  return taskOutcome(taskId).catch(async (error: Error) => {
    // Unsettled: the journal so far says where it stands.
    const task = (await m.api('GET', `/api/v1/tasks/${taskId}`)).body;
    throw new Error(
      `${error.message}\n${(task.log as Json[]).map((line) => line.message).join('\n')}`,
    );
  });
}

describe('a manager restart during a planned switchover', () => {
  // While the final snapshots are mirrored (nothing changed yet but the VM stopped), and while its definition moves.
  for (const [index, marker] of [
    [1, '[snapshot]'],
    [2, '[prepare] asking'],
  ] as const) {
    it(`is settled by the next start from what both sites say (stopped after ${marker}): the task ends succeeded with the VM running at the target`, async () => {
      const vm = vms[index];
      await mirrored(vm);
      const accepted = await m.api('POST', replication('mv-east', vm) + '/switchover', {});
      expect(accepted.status, accepted.text).toBe(202);
      const task = await restartDuring(accepted.body.taskId, marker);
      const lines = (task.log as Json[]).map((line) => line.message);
      expect(task.state, lines.join('\n')).toBe('succeeded');
      expect(
        lines.some((line) => line.startsWith('[check] the manager restarted')),
        lines.join('\n'),
      ).toBe(true);
      expect(lines).toContain('[done] DR state: mv-west primary, mv-east secondary');
      expect(await whereIs(vm)).toEqual({ east: undefined, west: 'running' });
      expect((await m.api('GET', replication('mv-west', vm))).body).toMatchObject({
        primaryRemote: 'mv-west',
        source: { role: 'secondary' },
        target: { role: 'primary' },
        pending: null,
      });
    }, 180_000);
  }
});
