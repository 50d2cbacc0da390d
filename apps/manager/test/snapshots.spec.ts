import {
  cleanupTempDirs,
  createManagerIdentity,
  startCluster,
  type TestCluster,
} from '@debvisor/testing';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  grantToken,
  sqlQuery,
  startTestDatabases,
  startTestManager,
  stateDirWithClientIdentity,
  type Json,
  type TestDatabases,
  type TestManager,
} from './manager-harness';

/**
 * VM snapshots and schedules through the manager against real agents of a simulated cluster (real
 * etcd, real agent processes, the sim storage driver) and a real PostgreSQL: tasks, consistency,
 * rollback rules, quota, retention, the scheduler, privileges and tenants.
 */
let dbs: TestDatabases;
let cluster: TestCluster;
let m: TestManager;
let vms: Json[];

const REMOTE = 'snap-east';
const QUOTA = 3;
const FINAL = ['succeeded', 'failed', 'cancelled'];
/** Slow enough to act on a migration under way (a sim guest of a few GiB takes seconds). */
const SLOW = 20_000_000;

beforeAll(async () => {
  const identity = await createManagerIdentity('snapshots-spec');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: REMOTE,
      nodes: 2,
      vmsPerNode: 8,
      trustedClientCaPem: identity.ca.certPem,
      agentConfig: () => ({ migration: { progressIntervalMs: 100 } }),
    }),
  ]);
  const [key, readerKey] = await Promise.all([
    cluster.createApiKey(['*'], { principal: 'manager' }),
    cluster.createApiKey(['node:registry:read', 'vm:instance:read', 'storage:rbd:read'], {
      principal: 'reader',
    }),
  ]);
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    stateDir: stateDirWithClientIdentity(identity),
    env: {
      DEBVISOR_SNAPSHOT_QUOTA_PER_VM: String(QUOTA),
      DEBVISOR_SNAPSHOT_SCHEDULE_TICK_SECONDS: '1',
    },
  });
  const added = await m.api('POST', '/api/v1/remotes', {
    id: REMOTE,
    description: 'snapshots',
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [
      { name: 'admin', key },
      { name: 'reader', key: readerKey },
    ],
  });
  expect(added.status, added.text).toBe(201);
  vms = await eventually(
    async () => {
      const answer = await m.api('GET', `/api/v1/remotes/${REMOTE}/vms`);
      return answer.status === 200 && answer.body.items.length === 16
        ? (answer.body.items as Json[])
        : undefined;
    },
    30_000,
    'the remote’s 16 VMs',
  );
}, 180_000);

afterAll(async () => {
  await m?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

const used = new Set<string>();
/** A VM no test has used yet, matching `test`. */
function pickVm(test: (vm: Json) => boolean): Json {
  const vm = vms.find((v) => !used.has(v.id) && test(v));
  if (!vm) throw new Error('no unused VM of that kind');
  used.add(vm.id);
  return vm;
}
const running = (vm: Json) => vm.status === 'running' && vm.labels['sim-hung-guest'] === undefined;
const path = (vm: Json, rest = '') => `/api/v1/remotes/${REMOTE}/vms/${vm.id}/snapshots${rest}`;

async function taskOutcome(taskId: string, timeoutMs = 30_000): Promise<Json> {
  return eventually(
    async () => {
      const task = await m.api('GET', `/api/v1/tasks/${taskId}`);
      return FINAL.includes(task.body.state) ? task.body : undefined;
    },
    timeoutMs,
    `task ${taskId} finished`,
  );
}

async function succeeded(accepted: Json): Promise<Json> {
  expect(accepted.status, accepted.text).toBe(202);
  const task = await taskOutcome(accepted.body.taskId);
  expect(task.state, JSON.stringify(task.log)).toBe('succeeded');
  return task;
}

async function snapshotsOf(vm: Json, token?: string): Promise<Json> {
  const answer = await m.api('GET', path(vm), undefined, { token });
  expect(answer.status, answer.text).toBe(200);
  return answer.body;
}

describe('snapshots of a VM', () => {
  it('takes a group snapshot of a two-disk VM as a task, states its consistency in the log and the list, and audits the request with the task id', async () => {
    const vm = pickVm((v) => v.labels.role === 'db');
    // The sim guests have no QEMU guest agent: the snapshot is crash-consistent, and says why.
    const reason =
      vm.status === 'running'
        ? 'no QEMU guest agent answered within 10000 ms'
        : `the VM was ${vm.status}: no guest to freeze`;
    const accepted = await m.api(
      'POST',
      path(vm),
      { name: 'before-upgrade', description: 'before the 2.0 upgrade' },
      { headers: { 'x-trace-id': 'snapshot-create-0001' } },
    );
    expect(accepted.body.snapshot).toBe('before-upgrade');
    const task = await succeeded(accepted);
    expect(task).toMatchObject({
      type: 'vm.snapshot.create',
      target: { remote: REMOTE, vm: vm.id },
    });
    const messages = task.log.map((line: Json) => line.message) as string[];
    expect(messages).toContain(`crash-consistent: ${reason}`);
    expect(messages).toContain(
      `one RBD group snapshot of 2 disks: rbd/${vm.name}-disk0, rbd/${vm.name}-disk1`,
    );

    const list = await snapshotsOf(vm);
    expect(list.quota).toEqual({ limit: QUOTA, used: 1 });
    expect(list.items).toEqual([
      {
        name: 'before-upgrade',
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        consistency: 'crash',
        consistencyReason: reason,
        group: true,
        disks: [
          { pool: 'rbd', image: `${vm.name}-disk0`, sizeBytes: 60 * 2 ** 30 },
          { pool: 'rbd', image: `${vm.name}-disk1`, sizeBytes: 500 * 2 ** 30 },
        ],
        createdBy: 'admin@local',
        scheduleId: null,
        description: 'before the 2.0 upgrade',
      },
    ]);
    const audit = await sqlQuery(
      m.databaseUrl!,
      "SELECT action, outcome, target, details FROM audit_log WHERE trace_id = 'snapshot-create-0001' AND action = 'vm.snapshot.create' ORDER BY seq",
    );
    expect(audit.map((e) => e.outcome)).toEqual(['attempt', 'success']);
    expect(audit[1]).toMatchObject({
      target: `/remotes/${REMOTE}/vms/${vm.id}`,
      details: { taskId: accepted.body.taskId, snapshot: 'before-upgrade', freeze: true },
    });
  });

  it('deletes a snapshot as a task; an unknown snapshot answers 404', async () => {
    const vm = pickVm((v) => v.labels.role !== 'db');
    await succeeded(await m.api('POST', path(vm), { name: 'short-lived', freeze: false }));
    const deleted = await succeeded(await m.api('DELETE', path(vm, '/short-lived')));
    expect(deleted.log.map((line: Json) => line.message)).toContain('snapshot short-lived deleted');
    expect((await snapshotsOf(vm)).items).toEqual([]);
    const again = await m.api('DELETE', path(vm, '/short-lived'));
    expect(again.status).toBe(404);
    expect(again.body.error).toMatchObject({
      code: 'not_found',
      message: `snapshot short-lived of VM ${vm.id} not found`,
    });
  });

  it('refuses to roll back a running VM, and with stopFirst stops it, then rolls it back', async () => {
    const vm = pickVm(running);
    await succeeded(await m.api('POST', path(vm), { name: 'known-good' }));
    const refused = await m.api('POST', path(vm, '/known-good/rollback'), {});
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toBe(
      `VM ${vm.id} is running: a rollback needs it stopped (its disks are rewritten); stop it first, or ask for {"stopFirst": true}`,
    );

    const task = await succeeded(
      await m.api('POST', path(vm, '/known-good/rollback'), { stopFirst: true }),
    );
    expect(task.type).toBe('vm.snapshot.rollback');
    const messages = task.log.map((line: Json) => line.message) as string[];
    const stopping = messages.indexOf('VM is running: stopping it first (stopFirst)');
    const rolling = messages.indexOf(
      `rolling every disk of VM ${vm.id} back to snapshot known-good`,
    );
    expect(stopping).toBeGreaterThan(0);
    expect(rolling).toBeGreaterThan(stopping);
    expect(messages.some((line) => line.startsWith('rolled back to known-good taken at '))).toBe(
      true,
    );
    const detail = await m.api('GET', `/api/v1/remotes/${REMOTE}/vms/${vm.id}`);
    expect(detail.body.status).toBe('stopped');
    // Stopped now: a rollback without stopFirst goes ahead.
    await succeeded(await m.api('POST', path(vm, '/known-good/rollback'), {}));
  });

  it('refuses snapshots and rollbacks while the VM is being migrated (409 naming the migration task)', async () => {
    const vm = pickVm((v) => running(v) && v.node === 'node-1');
    await succeeded(await m.api('POST', path(vm), { name: 'pre-move' }));
    const migration = await m.api('POST', `/api/v1/remotes/${REMOTE}/vms/${vm.id}/migrate`, {
      targetNode: 'node-2',
      bandwidthLimitBytes: SLOW,
    });
    expect(migration.status, migration.text).toBe(202);
    try {
      for (const [method, route, body] of [
        ['POST', path(vm, '/pre-move/rollback'), { stopFirst: true }],
        ['POST', path(vm), { name: 'during-move' }],
        ['DELETE', path(vm, '/pre-move'), undefined],
      ] as const) {
        const refused = await m.api(method, route, body);
        expect(refused.status, `${method} ${route}`).toBe(409);
        expect(refused.body.error.message).toContain(
          `is busy with task ${migration.body.taskId} (vm.migrate`,
        );
      }
      // The refused create left no record behind (it would hold quota).
      expect((await snapshotsOf(vm)).quota.used).toBe(1);
    } finally {
      await m.api('POST', `/api/v1/tasks/${migration.body.taskId}/cancel`);
      await taskOutcome(migration.body.taskId, 60_000);
    }
  });

  it('answers 409 over the per-principal quota, naming the limit and how to make room; a deleted snapshot gives its place back', async () => {
    const vm = pickVm((v) => v.labels.role !== 'db');
    for (const name of ['q1', 'q2', 'q3'])
      await succeeded(await m.api('POST', path(vm), { name, freeze: false }));
    const over = await m.api('POST', path(vm), { name: 'q4' });
    expect(over.status).toBe(409);
    expect(over.body.error.code).toBe('conflict');
    expect(over.body.error.message).toContain(
      `snapshot quota reached: admin@local holds 3 snapshots of VM ${vm.id} and the limit is 3 per VM and principal`,
    );
    expect(over.body.error.message).toContain('delete some of them');
    // Another principal has its own quota on the same VM.
    const operator = await grantToken(m.databaseUrl!, 'operator@local', 'Manage', '/');
    await succeeded(await m.api('POST', path(vm), { name: 'op1' }, { token: operator }));
    expect((await snapshotsOf(vm, operator)).quota).toEqual({ limit: QUOTA, used: 1 });
    await succeeded(await m.api('DELETE', path(vm, '/q1')));
    await succeeded(await m.api('POST', path(vm), { name: 'q4' }));
  });

  it('answers bad bodies and names with 400 and the JSON error shape, and queues nothing', async () => {
    const vm = vms[0];
    const before = await sqlQuery(m.databaseUrl!, 'SELECT count(*)::int AS n FROM tasks');
    for (const [method, route, body] of [
      ['POST', path(vm), { freeze: 'yes' }],
      ['POST', path(vm), { name: '-rf' }],
      ['POST', path(vm), { name: 'a/b' }],
      ['POST', path(vm), { name: 'ok', extra: true }],
      ['POST', path(vm), { description: 'x'.repeat(201) }],
      ['POST', path(vm, '/ok/rollback'), { stopFirst: 'please' }],
      ['POST', `/api/v1/remotes/${REMOTE}/vms/not-a-uuid/snapshots`, {}],
      [
        'POST',
        '/api/v1/snapshot-schedules',
        { name: 'x', target: { type: 'vm', remote: REMOTE, vm: vm.id }, interval: '1x', keep: 1 },
      ],
      [
        'POST',
        '/api/v1/snapshot-schedules',
        {
          name: 'x',
          target: { type: 'vm', remote: REMOTE, vm: vm.id },
          interval: '1h',
          cron: '0 * * * *',
          keep: 1,
        },
      ],
      [
        'POST',
        '/api/v1/snapshot-schedules',
        { name: 'x', target: { type: 'vm', remote: REMOTE, vm: vm.id }, interval: '1m', keep: 1 },
      ],
      [
        'POST',
        '/api/v1/snapshot-schedules',
        {
          name: 'x',
          target: { type: 'pool', remote: REMOTE, pool: 'rbd' },
          cron: '0 0 3 * * *',
          keep: 1,
        },
      ],
      [
        'POST',
        '/api/v1/snapshot-schedules',
        { name: 'x', target: { type: 'tag', remote: REMOTE }, interval: '1h', keep: 1 },
      ],
      [
        'POST',
        '/api/v1/snapshot-schedules',
        { name: 'x', target: { type: 'vm', remote: REMOTE, vm: vm.id }, interval: '1h', keep: 0 },
      ],
    ] as const) {
      const answer = await m.api(method, route, body);
      expect(answer.status, `${route} ${JSON.stringify(body)}: ${answer.text}`).toBe(400);
      expect(answer.body.error).toMatchObject({
        code: 'validation_failed',
        message: expect.any(String),
        traceId: expect.stringMatching(/^[0-9a-f]{32}$/),
      });
      expect(answer.text).not.toMatch(/at \S+\.ts:\d+/);
    }
    const over = await m.api('POST', '/api/v1/snapshot-schedules', {
      name: 'x',
      target: { type: 'vm', remote: REMOTE, vm: vm.id },
      interval: '1h',
      keep: QUOTA + 1,
    });
    expect(over.status).toBe(400);
    expect(over.body.error.message).toContain(
      `keep ${QUOTA + 1} is over the snapshot quota of ${QUOTA}`,
    );
    expect(await sqlQuery(m.databaseUrl!, 'SELECT count(*)::int AS n FROM tasks')).toEqual(before);
  });
});

describe('privileges and tenants', () => {
  it('lets an Audit-only user list snapshots and schedules but refuses every change with 403', async () => {
    const vm = pickVm((v) => v.labels.role !== 'db');
    await succeeded(await m.api('POST', path(vm), { name: 'before-upgrade' }));
    const auditor = await grantToken(m.databaseUrl!, 'auditor@local', 'Audit', '/');
    expect((await snapshotsOf(vm, auditor)).items.length).toBeGreaterThan(0);
    expect(
      (await m.api('GET', '/api/v1/snapshot-schedules', undefined, { token: auditor })).status,
    ).toBe(200);
    for (const [method, route, body] of [
      ['POST', path(vm), { name: 'nope' }],
      ['DELETE', path(vm, '/before-upgrade'), undefined],
      ['POST', path(vm, '/before-upgrade/rollback'), { stopFirst: true }],
      [
        'POST',
        '/api/v1/snapshot-schedules',
        { name: 'x', target: { type: 'vm', remote: REMOTE, vm: vm.id }, interval: '1h', keep: 1 },
      ],
    ] as const) {
      const refused = await m.api(method, route, body, { token: auditor });
      expect(refused.status, `${method} ${route}`).toBe(403);
      expect(refused.body.error.code).toBe('forbidden');
    }
  });

  it('shows a tenant the snapshots and schedules of its own VMs only; another VM answers 404 like a missing one', async () => {
    const url = m.databaseUrl!;
    const own = pickVm((v) => v.labels.role !== 'db');
    const foreign = pickVm((v) => v.labels.role !== 'db');
    await sqlQuery(
      url,
      "INSERT INTO groups (id, tenant, created_at) VALUES ('tenant-snap', true, now())",
    );
    const tenant = await grantToken(
      url,
      'tina@local',
      'Manage',
      `/remotes/${REMOTE}/vms/00000000-0000-4000-8000-000000000000`,
    );
    await sqlQuery(
      url,
      "INSERT INTO group_members (group_id, user_id, source) VALUES ('tenant-snap', 'tina@local', 'local')",
    );
    await sqlQuery(
      url,
      "INSERT INTO acl_entries (id, path, principal_type, principal, role, created_at) VALUES ($1, '/', 'group', 'tenant-snap', 'Manage', now())",
      [randomUUID()],
    );
    await sqlQuery(
      url,
      "INSERT INTO vm_ownership (vm_uuid, tenant_group, created_at) VALUES ($1, 'tenant-snap', now())",
      [own.id],
    );
    await succeeded(await m.api('POST', path(foreign), { name: 'admins' }));

    await succeeded(await m.api('POST', path(own), { name: 'mine' }, { token: tenant }));
    expect((await snapshotsOf(own, tenant)).items.map((s: Json) => [s.name, s.createdBy])).toEqual([
      ['mine', 'tina@local'],
    ]);
    const missing = await m.api(
      'GET',
      `/api/v1/remotes/${REMOTE}/vms/${randomUUID()}/snapshots`,
      undefined,
      { token: tenant },
    );
    for (const [method, route, body] of [
      ['GET', path(foreign), undefined],
      ['POST', path(foreign), { name: 'theirs' }],
      ['POST', path(foreign, '/admins/rollback'), { stopFirst: true }],
      ['DELETE', path(foreign, '/admins'), undefined],
    ] as const) {
      const hidden = await m.api(method, route, body, { token: tenant });
      expect(hidden.status, `${method} ${route}`).toBe(404);
      expect(hidden.body.error.message).toBe(missing.body.error.message);
    }
    const mine = await m.api(
      'POST',
      '/api/v1/snapshot-schedules',
      {
        name: 'tina-daily',
        target: { type: 'vm', remote: REMOTE, vm: own.id },
        cron: '0 3 * * *',
        keep: 2,
      },
      { token: tenant },
    );
    expect(mine.status, mine.text).toBe(201);
    const theirs = await m.api(
      'POST',
      '/api/v1/snapshot-schedules',
      {
        name: 'x',
        target: { type: 'vm', remote: REMOTE, vm: foreign.id },
        interval: '1h',
        keep: 1,
      },
      { token: tenant },
    );
    expect(theirs.status).toBe(404);
    const pool = await m.api(
      'POST',
      '/api/v1/snapshot-schedules',
      { name: 'x', target: { type: 'pool', remote: REMOTE, pool: 'rbd' }, interval: '1h', keep: 1 },
      { token: tenant },
    );
    expect(pool.status).toBe(403);
    const admins = await m.api('POST', '/api/v1/snapshot-schedules', {
      name: 'admins',
      target: { type: 'vm', remote: REMOTE, vm: foreign.id },
      interval: '1h',
      keep: 1,
      enabled: false,
    });
    expect(admins.status, admins.text).toBe(201);
    expect(
      (
        await m.api('GET', '/api/v1/snapshot-schedules', undefined, { token: tenant })
      ).body.items.map((s: Json) => s.id),
    ).toEqual([mine.body.id]);
    expect(
      (
        await m.api('GET', `/api/v1/snapshot-schedules/${admins.body.id}`, undefined, {
          token: tenant,
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await m.api('DELETE', `/api/v1/snapshot-schedules/${admins.body.id}`, undefined, {
          token: tenant,
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await m.api('DELETE', `/api/v1/snapshot-schedules/${mine.body.id}`, undefined, {
          token: tenant,
        })
      ).status,
    ).toBe(204);
    expect((await m.api('DELETE', `/api/v1/snapshot-schedules/${admins.body.id}`)).status).toBe(
      204,
    );
  });
});

describe('remote groups', () => {
  async function remoteGroup(id: string, credential: string): Promise<string> {
    const url = m.databaseUrl!;
    const [row] = await sqlQuery<{ id: string }>(
      url,
      'SELECT id FROM remote_credentials WHERE remote_id = $1 AND name = $2',
      [REMOTE, credential],
    );
    await sqlQuery(url, 'INSERT INTO remote_groups (id, created_at) VALUES ($1, now())', [id]);
    await sqlQuery(
      url,
      'INSERT INTO remote_group_entries (group_id, remote_id, credential_id) VALUES ($1, $2, $3)',
      [id, REMOTE, row.id],
    );
    return row.id;
  }

  it("acts with the group's credential: lists with storage:rbd:read, and is refused a snapshot the credential may not take", async () => {
    const vm = pickVm((v) => v.labels.role !== 'db');
    const adminCredential = await remoteGroup('snap-ops', 'admin');
    await remoteGroup('snap-readers', 'reader');
    const operator = await grantToken(m.databaseUrl!, 'sam@local', 'Manage', '/groups/snap-ops');
    const limited = await grantToken(m.databaseUrl!, 'rob@local', 'Manage', '/groups/snap-readers');

    expect((await snapshotsOf(vm, limited)).items).toEqual([]);
    const refused = await m.api('POST', path(vm), { name: 'not-allowed' }, { token: limited });
    expect(refused.status).toBe(403);
    expect(refused.body.error.message).toContain(
      `credential reader of remote ${REMOTE} may not do this on the cluster (needs storage:rbd:snapshot`,
    );

    const accepted = await m.api('POST', path(vm), { name: 'through-group' }, { token: operator });
    await succeeded(accepted);
    const [task] = await sqlQuery(m.databaseUrl!, 'SELECT credential_id FROM tasks WHERE id = $1', [
      accepted.body.taskId,
    ]);
    expect(task.credential_id).toBe(adminCredential);
    expect((await snapshotsOf(vm, limited)).items.map((s: Json) => [s.name, s.createdBy])).toEqual([
      ['through-group', 'sam@local'],
    ]);
  });
});

describe('schedules', () => {
  it('keeps the newest `keep` snapshots of the schedule on each labelled VM and never touches manual ones', async () => {
    const vm = pickVm((v) => v.labels.role === 'dns' || v.labels.role === 'mail');
    const manual = await m.api('POST', path(vm), { name: 'manual-keep', freeze: false });
    await succeeded(manual);
    const created = await m.api('POST', '/api/v1/snapshot-schedules', {
      name: 'hourly',
      target: {
        type: 'labels',
        remote: REMOTE,
        labels: { role: vm.labels.role, env: vm.labels.env },
      },
      interval: '1h',
      keep: 2,
      freeze: false,
    });
    expect(created.status, created.text).toBe(201);
    expect(created.body).toMatchObject({
      interval: '1h',
      cron: null,
      keep: 2,
      enabled: true,
      owner: 'admin@local!bootstrap',
      lastRunAt: null,
    });
    const covered = vms.filter(
      (v) => v.labels.role === vm.labels.role && v.labels.env === vm.labels.env,
    );
    const names: string[] = [];
    for (let run = 0; run < 3; run += 1) {
      const task = await succeeded(
        await m.api('POST', `/api/v1/snapshot-schedules/${created.body.id}/run`),
      );
      expect(task.type).toBe('vm.snapshot.schedule');
      expect(task.log[1].message).toBe(
        `schedule hourly (VMs of ${REMOTE} labelled env=${vm.labels.env}, role=${vm.labels.role}): ${covered.length} VM(s), keep 2 each`,
      );
      const list = (await snapshotsOf(vm)).items as Json[];
      names.push(list.filter((s) => s.scheduleId === created.body.id).at(-1).name);
      // Names carry the time to the second: the next run must not share it.
      await eventually(
        async () =>
          new Date().toISOString().slice(0, 19) !== task.finishedAt.slice(0, 19) ? true : undefined,
        5000,
        'the next second',
      );
    }
    const list = (await snapshotsOf(vm)).items as Json[];
    expect(list.map((s) => s.name)).toEqual(['manual-keep', names[1], names[2]]);
    expect(
      list
        .filter((s) => s.scheduleId === created.body.id)
        .every((s) => s.createdBy === 'admin@local'),
    ).toBe(true);
    for (const other of covered)
      expect(
        (await snapshotsOf(other)).items.filter((s: Json) => s.scheduleId === created.body.id),
      ).toHaveLength(2);
  });

  it('runs a schedule that is due from the manager’s scheduler once, however many runs a downtime missed, and plans the next after now', async () => {
    const vm = pickVm((v) => v.labels.role !== 'db');
    const created = await m.api('POST', '/api/v1/snapshot-schedules', {
      name: 'every15',
      target: { type: 'vm', remote: REMOTE, vm: vm.id },
      interval: '15m',
      keep: 3,
      freeze: false,
    });
    expect(created.status, created.text).toBe(201);
    // As if the manager had been down for ten hours: forty runs missed.
    await sqlQuery(
      m.databaseUrl!,
      "UPDATE snapshot_schedules SET created_at = now() - interval '10 hours 5 minutes', next_run_at = now() - interval '10 hours' WHERE id = $1",
      [created.body.id],
    );
    const ran = await eventually(
      async () => {
        const schedule = (await m.api('GET', `/api/v1/snapshot-schedules/${created.body.id}`)).body;
        return schedule.lastTaskId ? schedule : undefined;
      },
      20_000,
      'the scheduler starting the run',
    );
    const task = await taskOutcome(ran.lastTaskId);
    expect(task, JSON.stringify(task.log)).toMatchObject({
      state: 'succeeded',
      type: 'vm.snapshot.schedule',
      owner: 'admin@local!bootstrap',
      target: { remote: REMOTE, vm: vm.id },
    });
    expect(new Date(ran.nextRunAt).getTime()).toBeGreaterThan(Date.now());
    expect(new Date(ran.nextRunAt).getTime()).toBeLessThanOrEqual(Date.now() + 15 * 60_000);
    const runs = await sqlQuery(
      m.databaseUrl!,
      'SELECT count(*)::int AS n FROM tasks t JOIN vm_snapshot_tasks p ON p.task_id = t.id WHERE p.schedule_id = $1',
      [created.body.id],
    );
    expect(runs).toEqual([{ n: 1 }]);
    expect((await snapshotsOf(vm)).items.map((s: Json) => s.scheduleId)).toEqual([created.body.id]);
  });
});
