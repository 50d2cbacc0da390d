import {
  cleanupTempDirs,
  createManagerIdentity,
  startCluster,
  type AgentClient,
  type TestCluster,
} from '@debvisor/testing';
import { Etcd3 } from 'etcd3';
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
 * Cross-cluster replication and DR through the manager, against the real agents of two simulated
 * clusters (real etcd, real agent processes, the sim storage driver's simulated rbd-mirror) and a
 * real PostgreSQL: pairing, mirroring a VM, the RPO, a planned switchover and back (checksums), an
 * unplanned failover with the source's agents stopped, the split brain when they return and its
 * resync — and the peer bootstrap token found nowhere the manager writes.
 */
let dbs: TestDatabases;
let identity: Awaited<ReturnType<typeof createManagerIdentity>>;
let east: TestCluster;
let west: TestCluster;
let m: TestManager;
let vm: Json;

const FINAL = ['succeeded', 'failed', 'cancelled'];

beforeAll(async () => {
  identity = await createManagerIdentity('replication-spec');
  // The harness's sim settings, with VMs that write to their disks every half second (mirrored content changes).
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
      clusterId: 'dr-east',
      nodes: 2,
      vmsPerNode: 2,
      trustedClientCaPem: identity.ca.certPem,
      agentConfig: agentConfig(2),
    }),
    startCluster({
      clusterId: 'dr-west',
      nodes: 1,
      vmsPerNode: 0,
      trustedClientCaPem: identity.ca.certPem,
      agentConfig: agentConfig(0),
    }),
  ]);
  const [eastKey, westKey] = await Promise.all([
    east.createApiKey(['*'], { principal: 'manager' }),
    west.createApiKey(['*'], { principal: 'manager' }),
  ]);
  // A short poll interval: the replication status poll publishes the mirroring metrics.
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    stateDir: stateDirWithClientIdentity(identity),
    env: { DEBVISOR_POLL_INTERVAL_SECONDS: '2' },
  });
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
  // The test VM: a running VM of dr-east (the sim seeds its disks' images in the simulated Ceph).
  await m.api('GET', '/api/v1/resources/refresh?remote=dr-east');
  const vms = (await m.api('GET', '/api/v1/remotes/dr-east/vms')).body.items as Json[];
  const smallest = [...vms].sort((a, b) => a.memoryBytes - b.memoryBytes)[0];
  vm = (await m.api('GET', `/api/v1/remotes/dr-east/vms/${smallest.id}`)).body;
  expect(vm.disks.length).toBeGreaterThan(0);
  if (vm.status !== 'running')
    await succeeded(await m.api('POST', `/api/v1/remotes/dr-east/vms/${vm.id}/start`));
}, 180_000);

afterAll(async () => {
  await m?.stop();
  await Promise.all([east?.stop(), west?.stop()]);
  await dbs?.stop();
  cleanupTempDirs();
});

async function taskOutcome(taskId: string, timeoutMs = 60_000): Promise<Json> {
  return eventually(
    async () => {
      const task = await m.api('GET', `/api/v1/tasks/${taskId}`);
      return FINAL.includes(task.body.state) ? task.body : undefined;
    },
    timeoutMs,
    `task ${taskId} finished`,
  );
}

async function succeeded(answer: { status: number; body: Json; text: string }): Promise<Json> {
  // On a refusal, the manager's log lines of the request say why.
  const trace = answer.body?.error?.traceId as string | undefined;
  expect(
    answer.status,
    `${answer.text}\n${
      trace
        ? m
            .logs()
            .split('\n')
            .filter((line) => line.includes(trace))
            .join('\n')
        : ''
    }`,
  ).toBe(202);
  const task = await taskOutcome(answer.body.taskId);
  expect(task.state, `${task.error}\n${task.log.map((l: Json) => l.message).join('\n')}`).toBe(
    'succeeded',
  );
  return task;
}

const replication = (remote: string) => `/api/v1/remotes/${remote}/vms/${vm.id}/replication`;

/** Where the VM is, as each remote's agents answer now. */
async function whereIs(): Promise<{ east: string | undefined; west: string | undefined }> {
  const state = async (remote: string) => {
    await m.api('GET', `/api/v1/resources/refresh?remote=${remote}`);
    const found = ((await m.api('GET', `/api/v1/remotes/${remote}/vms`)).body.items as Json[]).find(
      (v) => v.id === vm.id,
    );
    return found?.status as string | undefined;
  };
  return { east: await state('dr-east'), west: await state('dr-west') };
}

/** The content checksum of a disk in a sim cluster's storage (its etcd record). */
async function checksum(cluster: TestCluster, disk: Json): Promise<string> {
  const client = new Etcd3(cluster.etcd.clientOptions());
  try {
    const record = JSON.parse(
      (await client.get(`/debvisor/sim/rbd/${disk.pool}/${disk.image}`).string()) ?? '{}',
    );
    return `${record.content?.version}:${record.content?.checksum}`;
  } finally {
    client.close();
  }
}

describe('pairing', () => {
  it('pairs the two remotes’ pools through a task and shows both sides’ pool health', async () => {
    const answer = await m.api('POST', '/api/v1/replication/pairs', {
      remoteA: 'dr-east',
      poolA: 'rbd',
      remoteB: 'dr-west',
      poolB: 'rbd',
    });
    const task = await succeeded(answer);
    expect(task.log.map((l: Json) => l.message)).toContain(
      '[pair] remote dr-west imported it into pool rbd (rx-tx); the token was kept in memory only',
    );
    const pair = await m.api('GET', `/api/v1/replication/pairs/${answer.body.pairId}`);
    expect(pair.status, pair.text).toBe(200);
    expect(pair.body).toMatchObject({
      state: 'paired',
      remoteA: 'dr-east',
      remoteB: 'dr-west',
      vms: 0,
      health: { a: { reachable: true, mode: 'image' }, b: { reachable: true, mode: 'image' } },
    });
    expect(pair.body.health.a.peers.map((p: Json) => p.siteName)).toContain('dr-west');
    expect(pair.body.health.b.peers.map((p: Json) => p.siteName)).toContain('dr-east');
    const again = await m.api('POST', '/api/v1/replication/pairs', {
      remoteA: 'dr-west',
      poolA: 'rbd',
      remoteB: 'dr-east',
      poolB: 'rbd',
    });
    expect(again.status).toBe(409);
  });
});

describe('a mirrored VM', () => {
  it('enables mirroring of all its disks; the status shows them replaying at the target with an RPO the manager computes', async () => {
    await succeeded(
      await m.api('POST', replication('dr-east'), {
        targetRemote: 'dr-west',
        scheduleInterval: '1m',
        rpoTargetSeconds: 600,
      }),
    );
    const status = await eventually(
      async () => {
        const answer = await m.api('GET', replication('dr-east'));
        expect(answer.status, answer.text).toBe(200);
        const replaying = answer.body.images.every(
          (image: Json) => image.sites[1].state === 'up+replaying' && image.lastMirroredSnapshotAt,
        );
        return replaying ? answer.body : undefined;
      },
      20_000,
      'the target replaying every disk',
    );
    expect(status).toMatchObject({
      state: 'primary',
      primaryRemote: 'dr-east',
      source: { remote: 'dr-east', role: 'primary' },
      target: { remote: 'dr-west', role: 'secondary' },
      splitBrain: false,
      rpoTargetSeconds: 600,
      scheduleInterval: '1m',
    });
    expect(status.images).toHaveLength(vm.disks.length);
    expect(status.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(status.rpoSeconds).toBeLessThan(600);
    expect(status.rpoExceeded).toBe(false);
    const list = await m.api('GET', '/api/v1/replication/vms?remote=dr-west');
    expect(list.body.items.map((item: Json) => item.vm)).toEqual([vm.id]);
    const metrics = await eventually(
      async () => {
        const text = (await m.api('GET', '/metrics')).text;
        return text.includes(`debvisor_rbd_mirror_rpo_seconds{remote="dr-east",vm="${vm.id}"}`)
          ? text
          : undefined;
      },
      20_000,
      'the RPO metric',
    );
    expect(metrics).toContain(`debvisor_rbd_mirror_split_brain{remote="dr-east",vm="${vm.id}"} 0`);
    expect(metrics).toContain(
      `debvisor_rbd_mirror_vm_state{remote="dr-east",vm="${vm.id}",state="ok"} 1`,
    );
  });

  it('refuses changes to an auditor (403) and bad bodies (400), changing nothing', async () => {
    const auditor = await grantToken(m.databaseUrl!, 'dr-auditor@local', 'Audit', '/');
    const operator = await grantToken(m.databaseUrl!, 'dr-operator@local', 'Manage', '/');
    for (const [method, path, body] of [
      ['POST', replication('dr-east') + '/switchover', {}],
      ['POST', replication('dr-east') + '/failover', { confirmDataLoss: true }],
      ['POST', replication('dr-east') + '/resync', {}],
      ['DELETE', replication('dr-east'), undefined],
      [
        'POST',
        '/api/v1/replication/pairs',
        { remoteA: 'dr-east', poolA: 'ssd', remoteB: 'dr-west', poolB: 'ssd' },
      ],
    ] as const) {
      const answer = await m.api(method, path, body, { token: auditor });
      expect(answer.status, `${method} ${path}`).toBe(403);
    }
    expect((await m.api('GET', replication('dr-east'), undefined, { token: auditor })).status).toBe(
      200,
    );
    // Failover is Admin only: an operator may switch over but not fail over.
    expect(
      (
        await m.api(
          'POST',
          replication('dr-east') + '/failover',
          { confirmDataLoss: true },
          { token: operator },
        )
      ).status,
    ).toBe(403);
    for (const [path, body] of [
      [replication('dr-east') + '/failover', {}],
      [replication('dr-east') + '/failover', { confirmDataLoss: false }],
      [replication('dr-east') + '/failover', { confirmDataLoss: true, declareSourceDown: true }],
      [replication('dr-east') + '/switchover', { targetNode: '-x' }],
      [
        '/api/v1/replication/pairs',
        { remoteA: 'dr-east', poolA: '-rbd', remoteB: 'dr-west', poolB: 'rbd' },
      ],
      [
        '/api/v1/replication/pairs',
        { remoteA: 'dr-east', poolA: 'rbd', remoteB: 'dr-east', poolB: 'rbd' },
      ],
    ] as const) {
      const answer = await m.api('POST', path, body);
      expect(answer.status, `${path} ${JSON.stringify(body)}: ${answer.text}`).toBe(400);
      expect(answer.body.error.code).toBe('validation_failed');
    }
    const tasks = (await m.api('GET', `/api/v1/tasks?vm=${vm.id}`)).body.items as Json[];
    expect(tasks.map((t) => t.type).sort()).toEqual(['vm.replication.enable']);
  });

  it('switches the running VM over to the other remote: it runs there and the source is secondary', async () => {
    const task = await succeeded(await m.api('POST', replication('dr-east') + '/switchover', {}));
    const lines = task.log.map((l: Json) => l.message).join('\n');
    // The definition moves while the target's images are up-to-date mirrors, then the images change roles.
    expect(lines).toMatch(
      /\[stop\] the VM is stopped at dr-east[\s\S]*\[snapshot\][\s\S]*\[sync\][\s\S]*\[move\][\s\S]*\[demote\][\s\S]*\[promote\][\s\S]*\[start\] the VM is running/,
    );
    expect(await whereIs()).toEqual({ east: undefined, west: 'running' });
    const status = (await m.api('GET', replication('dr-west'))).body;
    expect(status).toMatchObject({
      state: 'secondary',
      primaryRemote: 'dr-west',
      source: { role: 'secondary' },
      target: { role: 'primary' },
    });
  });

  it('switches a stopped VM back with nothing lost: every disk holds at the new primary what the old one held', async () => {
    // The VM has written at dr-west since it moved there (its content is not what dr-east last held).
    const atEast = await Promise.all((vm.disks as Json[]).map((disk) => checksum(east, disk)));
    await eventually(
      async () =>
        (await Promise.all((vm.disks as Json[]).map((disk) => checksum(west, disk)))).every(
          (sum, i) => sum !== atEast[i],
        )
          ? true
          : undefined,
      20_000,
      'writes at dr-west',
    );
    await succeeded(await m.api('POST', `/api/v1/remotes/dr-west/vms/${vm.id}/stop`));
    await succeeded(await m.api('POST', replication('dr-west') + '/switchover', {}));
    for (const disk of vm.disks as Json[])
      expect(await checksum(east, disk), disk.image).toBe(await checksum(west, disk));
    expect(await whereIs()).toEqual({ east: 'stopped', west: undefined });
    expect((await m.api('GET', replication('dr-east'))).body).toMatchObject({
      state: 'primary',
      primaryRemote: 'dr-east',
    });
    await succeeded(await m.api('POST', `/api/v1/remotes/dr-east/vms/${vm.id}/start`));
  });
});

describe('unplanned failover, split brain and resync', () => {
  it('with the source’s agents stopped: shows the data at risk, refuses without a fence or declaration, then fails over on the declaration', async () => {
    // Let the running VM write and a mirror snapshot replay, so that the RPO is a known, small figure.
    await eventually(
      async () =>
        (await m.api('GET', replication('dr-east'))).body.health === 'ok' ? true : undefined,
      20_000,
      'mirroring healthy',
    );
    await Promise.all(east.agents.map((agent) => agent.stop()));

    const preview = await m.api('GET', replication('dr-west') + '/failover');
    expect(preview.status, preview.text).toBe(200);
    expect(preview.body).toMatchObject({
      from: 'dr-east',
      to: 'dr-west',
      sourceReachable: false,
      requires: { confirmDataLoss: true, declareSourceDown: true },
    });
    expect(preview.body.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(preview.body.dataAtRisk).toMatch(/dr-east does not answer and cannot be fenced/);

    const refused = await taskOutcome(
      (await m.api('POST', replication('dr-west') + '/failover', { confirmDataLoss: true })).body
        .taskId,
    );
    expect(refused.state).toBe('failed');
    expect(refused.error).toMatch(/cannot be fenced .* nothing was promoted/);
    expect((await m.api('GET', replication('dr-west'))).body).toMatchObject({
      primaryRemote: 'dr-east',
    });

    const task = await succeeded(
      await m.api('POST', replication('dr-west') + '/failover', {
        confirmDataLoss: true,
        declareSourceDown: true,
        reason: 'test: dr-east powered off',
      }),
    );
    expect(task.log.map((l: Json) => l.message)).toContain(
      `[fence] not fenced: ${task.owner} declared remote dr-east down (test: dr-east powered off); recorded in the audit log`,
    );
    const audit = await m.api('GET', '/api/v1/audit?action=vm.replication.failover');
    const declared = (audit.body.items as Json[]).find(
      (entry) => entry.outcome === 'success' && entry.details.declareSourceDown === true,
    );
    expect(declared?.details).toMatchObject({
      confirmDataLoss: true,
      declaredDown: 'dr-east',
      reason: 'test: dr-east powered off',
    });
    await m.api('GET', '/api/v1/resources/refresh?remote=dr-west');
    const there = ((await m.api('GET', '/api/v1/remotes/dr-west/vms')).body.items as Json[]).find(
      (v) => v.id === vm.id,
    );
    expect(there?.status).toBe('running');
    expect((await m.api('GET', replication('dr-west'))).body).toMatchObject({
      primaryRemote: 'dr-west',
      source: { role: 'secondary' },
      target: { role: 'primary' },
    });
  });

  it('shows the split brain when the old site returns, and resyncs it: the VM runs only at the survivor, the old site secondary again', async () => {
    await Promise.all(east.agents.map((agent) => agent.restart()));
    const split = await eventually(
      async () => {
        const body = (await m.api('GET', replication('dr-west'))).body;
        // Both sites answering (the manager's channels to the returned agents reconnect with a backoff).
        return body.splitBrain &&
          body.images.every((image: Json) => image.sites.every((site: Json) => site.reachable))
          ? body
          : undefined;
      },
      30_000,
      'split brain shown by both sites',
    );
    expect(split.health).toBe('split-brain');
    expect(
      split.images.some((image: Json) => image.sites.every((site: Json) => site.primary === true)),
      JSON.stringify(split.images),
    ).toBe(true);
    await eventually(
      async () => {
        const text = (await m.api('GET', '/metrics')).text;
        return text.includes(`debvisor_rbd_mirror_split_brain{remote="dr-west",vm="${vm.id}"} 1`)
          ? true
          : undefined;
      },
      20_000,
      'the split brain metric',
    );

    const task = await succeeded(await m.api('POST', replication('dr-west') + '/resync', {}));
    expect(task.log.map((l: Json) => l.message).join('\n')).toMatch(
      /removed the stale definition of the VM at dr-east[\s\S]*\[demote\][\s\S]*\[resync\]/,
    );
    const healed = await eventually(
      async () => {
        const body = (await m.api('GET', replication('dr-west'))).body;
        return body.source.role === 'secondary' && !body.splitBrain && body.health === 'ok'
          ? body
          : undefined;
      },
      30_000,
      'the old site secondary and replaying',
    );
    expect(healed).toMatchObject({ state: 'secondary', primaryRemote: 'dr-west' });
    expect(await whereIs()).toEqual({ east: undefined, west: 'running' });
  });
});

describe('the peer bootstrap token', () => {
  it('is found nowhere: not in the manager’s log, any table (audit log included) or any API answer', async () => {
    // A token of the same pool and site, asked of the agent directly: everything but its key is the same
    // as the one the manager handed over, so its base64 prefix is what a stored copy would start with.
    const storage: AgentClient = east.connect(
      await east.createApiKey(['storage:*'], { principal: 'token-probe' }),
    );
    const { token } = await storage.storage.createPeerBootstrap({
      pool: 'rbd',
      siteName: 'dr-east',
    });
    storage.close();
    const decoded = Buffer.from(token, 'base64').toString('utf8');
    const beforeKey = decoded.slice(0, decoded.indexOf('"key"'));
    const prefix = Buffer.from(
      beforeKey.slice(0, beforeKey.length - (beforeKey.length % 3)),
    ).toString('base64');
    expect(prefix.length).toBeGreaterThan(40);
    expect(token.startsWith(prefix)).toBe(true);
    const key = JSON.parse(decoded).key as string;

    const haystacks: Record<string, string> = { log: m.logs() };
    const tables = await sqlQuery<{ table_name: string }>(
      m.databaseUrl!,
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    );
    expect(tables.map((t) => t.table_name)).toEqual(
      expect.arrayContaining(['audit_log', 'tasks', 'replication_pairs', 'vm_replications']),
    );
    for (const { table_name: table } of tables)
      haystacks[table] = JSON.stringify(await sqlQuery(m.databaseUrl!, `SELECT * FROM "${table}"`));
    haystacks.pairs = (await m.api('GET', '/api/v1/replication/pairs?health=true')).text;
    haystacks.tasks = (await m.api('GET', '/api/v1/tasks?limit=500')).text;
    expect(haystacks.audit_log).toContain('StorageService.CreatePeerBootstrap');
    for (const [where, text] of Object.entries(haystacks)) {
      expect(text.includes(prefix), `${where} holds a bootstrap token`).toBe(false);
      expect(
        text.includes('debvisor-sim-rbd-peer'),
        `${where} holds a decoded bootstrap token`,
      ).toBe(false);
      expect(text.includes(key), `${where} holds a bootstrap key`).toBe(false);
    }
  });
});
