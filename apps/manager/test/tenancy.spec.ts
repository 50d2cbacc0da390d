import { createCa } from '@debvisor/pki';
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
 * Tenants and remote groups against a real simulated cluster: tenant members see and act on only
 * the VMs their tenant group owns (another tenant's VM answers exactly like one that does not
 * exist), and a right that comes from a remote group acts with that group's credential, never
 * beyond what the credential may do on the cluster.
 */
let dbs: TestDatabases;
let cluster: TestCluster;
let m: TestManager;
let vms: { id: string; name: string }[];
let alice: string;
let bob: string;
let adminKey: string;
let readerKey: string;

beforeAll(async () => {
  const identity = await createManagerIdentity('tenancy-spec');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: 'dc-t',
      nodes: 1,
      vmsPerNode: 3,
      trustedClientCaPem: identity.ca.certPem,
    }),
  ]);
  [adminKey, readerKey] = await Promise.all([
    cluster.createApiKey(['*'], { principal: 'manager' }),
    cluster.createApiKey(['node:registry:read', 'vm:instance:read'], { principal: 'reader' }),
  ]);
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    stateDir: stateDirWithClientIdentity(identity),
  });
  const created = await m.api('POST', '/api/v1/remotes', {
    id: 'dc-t',
    description: 'tenancy',
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [
      { name: 'admin', key: adminKey },
      { name: 'reader', key: readerKey },
    ],
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  vms = await eventually(async () => {
    const answer = await m.api('GET', '/api/v1/remotes/dc-t/vms');
    return answer.status === 200 && answer.body.items.length === 3
      ? (answer.body.items as { id: string; name: string }[])
      : undefined;
  });
  const url = m.databaseUrl!;
  await sqlQuery(
    url,
    "INSERT INTO groups (id, tenant, created_at) VALUES ('tenant-a', true, now()), ('tenant-b', true, now())",
  );
  alice = await grantToken(
    url,
    'alice@local',
    'Manage',
    '/remotes/dc-t/vms/00000000-0000-4000-8000-000000000000',
  );
  bob = await grantToken(
    url,
    'bob@local',
    'Manage',
    '/remotes/dc-t/vms/00000000-0000-4000-8000-000000000000',
  );
  await sqlQuery(
    url,
    "INSERT INTO group_members (group_id, user_id, source) VALUES ('tenant-a', 'alice@local', 'local'), ('tenant-b', 'bob@local', 'local')",
  );
  await sqlQuery(
    url,
    "INSERT INTO acl_entries (id, path, principal_type, principal, role, created_at) VALUES ($1, '/', 'group', 'tenant-a', 'Manage', now()), ($2, '/', 'group', 'tenant-b', 'Manage', now())",
    [randomUUID(), randomUUID()],
  );
  await sqlQuery(
    url,
    "INSERT INTO vm_ownership (vm_uuid, tenant_group, created_at) VALUES ($1, 'tenant-a', now()), ($2, 'tenant-b', now())",
    [vms[0].id, vms[1].id],
  );
}, 180_000);

afterAll(async () => {
  await m?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

describe('tenant isolation', () => {
  it('lists only the VMs of the caller’s tenant group, in every collection', async () => {
    const own = await m.api('GET', '/api/v1/remotes/dc-t/vms', undefined, { token: alice });
    expect(own.status).toBe(200);
    expect(own.body.items.map((vm: Json) => vm.id)).toEqual([vms[0].id]);
    const resources = await m.api('GET', '/api/v1/resources?type=vm', undefined, { token: alice });
    expect(resources.body.items.map((r: Json) => r.id)).toEqual([vms[0].id]);
    const other = await m.api('GET', '/api/v1/remotes/dc-t/vms', undefined, { token: bob });
    expect(other.body.items.map((vm: Json) => vm.id)).toEqual([vms[1].id]);
  });

  it('answers another tenant’s VM exactly like a VM that does not exist: 404, not 403', async () => {
    const foreign = await m.api('GET', `/api/v1/remotes/dc-t/vms/${vms[1].id}`, undefined, {
      token: alice,
    });
    const missing = await m.api('GET', `/api/v1/remotes/dc-t/vms/${randomUUID()}`, undefined, {
      token: alice,
    });
    expect(foreign.status).toBe(404);
    expect(missing.status).toBe(404);
    expect(foreign.body.error.code).toBe(missing.body.error.code);
    expect(foreign.body.error.message).toBe(missing.body.error.message);
    for (const action of ['start', 'stop', 'reboot', 'shutdown']) {
      const refused = await m.api(
        'POST',
        `/api/v1/remotes/dc-t/vms/${vms[1].id}/${action}`,
        {},
        { token: alice },
      );
      expect(refused.status, action).toBe(404);
      expect(refused.body.error.message).toBe(missing.body.error.message);
    }
    // The unowned third VM is nobody's tenant VM either.
    expect(
      (await m.api('POST', `/api/v1/remotes/dc-t/vms/${vms[2].id}/stop`, {}, { token: alice }))
        .status,
    ).toBe(404);
    const tasks = await sqlQuery(
      m.databaseUrl!,
      "SELECT count(*)::int AS n FROM tasks WHERE owner LIKE 'alice@local%'",
    );
    expect(tasks[0].n).toBe(0);
  });

  it('lets a tenant act on its own VM and follow the task, but not read the audit log or change remotes', async () => {
    const started = await m.api(
      'POST',
      `/api/v1/remotes/dc-t/vms/${vms[0].id}/stop`,
      {},
      { token: alice },
    );
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const task = await eventually(
      async () => {
        const answer = await m.api('GET', `/api/v1/tasks/${started.body.taskId}`, undefined, {
          token: alice,
        });
        if (answer.body.state === 'failed')
          throw new Error(`task failed: ${JSON.stringify(answer.body)}`);
        return answer.body.state === 'succeeded' ? answer.body : undefined;
      },
      20_000,
      `task ${started.body.taskId} succeeded`,
    );
    expect(task.target).toEqual({ remote: 'dc-t', vm: vms[0].id });
    expect(
      (await m.api('GET', `/api/v1/tasks/${started.body.taskId}`, undefined, { token: bob }))
        .status,
    ).toBe(404);
    // The task list shows a tenant the tasks of its own VMs, and nobody else's.
    expect(
      (await m.api('GET', '/api/v1/tasks', undefined, { token: alice })).body.items.map(
        (t: Json) => t.id,
      ),
    ).toEqual([started.body.taskId]);
    expect((await m.api('GET', '/api/v1/tasks', undefined, { token: bob })).body.items).toEqual([]);
    expect((await m.api('GET', '/api/v1/audit', undefined, { token: alice })).status).toBe(403);
    expect(
      (await m.api('DELETE', '/api/v1/remotes/dc-t', undefined, { token: alice })).status,
    ).toBe(403);
  });
});

describe('what a tenant may read (issue 14, items 6 and 16)', () => {
  /** A member of tenant-a whose only grant is the tenant group's: the web UI's tenant. */
  async function tenantOnly(user: string): Promise<string> {
    const token = await grantToken(m.databaseUrl!, user, 'Audit', '/system');
    await sqlQuery(m.databaseUrl!, 'DELETE FROM acl_entries WHERE principal = $1', [user]);
    await sqlQuery(
      m.databaseUrl!,
      "INSERT INTO group_members (group_id, user_id, source) VALUES ('tenant-a', $1, 'local')",
      [user],
    );
    return token;
  }

  it('follows its own tasks in the list and one by one; another’s task answers like a missing one', async () => {
    const carol = await tenantOnly('carol@local');
    const own = await m.api('POST', `/api/v1/remotes/dc-t/vms/${vms[0].id}/reboot`, {});
    const foreign = await m.api('POST', `/api/v1/remotes/dc-t/vms/${vms[1].id}/reboot`, {});
    expect([own.status, foreign.status]).toEqual([202, 202]);
    const list = await m.api('GET', '/api/v1/tasks', undefined, { token: carol });
    expect(list.status, JSON.stringify(list.body)).toBe(200);
    const ids = list.body.items.map((t: Json) => t.id);
    expect(ids).toContain(own.body.taskId);
    expect(ids).not.toContain(foreign.body.taskId);
    expect(list.body.items.every((t: Json) => t.target?.vm === vms[0].id)).toBe(true);
    const mine = await m.api('GET', `/api/v1/tasks/${own.body.taskId}`, undefined, {
      token: carol,
    });
    expect(mine.status).toBe(200);
    const other = await m.api('GET', `/api/v1/tasks/${foreign.body.taskId}`, undefined, {
      token: carol,
    });
    const missing = await m.api('GET', `/api/v1/tasks/${randomUUID()}`, undefined, {
      token: carol,
    });
    expect([other.status, missing.status]).toEqual([404, 404]);
    // It may cancel its own tasks (Manage), and another's answers like a missing one.
    const cancelOwn = await m.api('POST', `/api/v1/tasks/${own.body.taskId}/cancel`, undefined, {
      token: carol,
    });
    expect([200, 409], JSON.stringify(cancelOwn.body)).toContain(cancelOwn.status);
    const cancelOther = await m.api(
      'POST',
      `/api/v1/tasks/${foreign.body.taskId}/cancel`,
      undefined,
      { token: carol },
    );
    expect(cancelOther.status).toBe(404);
    expect(other.body.error.message.replace(foreign.body.taskId, 'X')).toBe(
      missing.body.error.message.replace(/[0-9a-f-]{36}/, 'X'),
    );
  });

  it('reads no remote’s endpoints, CA, credentials or nodes, only its own VMs', async () => {
    const dave = await tenantOnly('dave@local');
    const get = (path: string) => m.api('GET', path, undefined, { token: dave });
    expect((await get('/api/v1/remotes/dc-t')).status).toBe(403);
    expect((await get('/api/v1/remotes/dc-t/nodes')).status).toBe(403);
    expect((await get('/api/v1/remote-groups')).status).toBe(403);
    expect((await get('/api/v1/replication/pairs')).status).toBe(403);
    const remotes = await get('/api/v1/remotes');
    expect(remotes.status).toBe(200);
    expect(JSON.stringify(remotes.body)).not.toContain('BEGIN CERTIFICATE');
    expect(remotes.body.items).toEqual([]);
    const nodes = await get('/api/v1/resources?type=node');
    expect(nodes.status).toBe(200);
    expect(nodes.body.items).toEqual([]);
    const own = await get('/api/v1/resources?type=vm');
    expect(own.body.items.map((r: Json) => r.id)).toEqual([vms[0].id]);
  });
});

describe('changing where a remote is and whom it trusts (issue 14, item 1)', () => {
  async function remoteGroupAdmin(user: string): Promise<string> {
    const url = m.databaseUrl!;
    const [row] = await sqlQuery<{ id: string }>(
      url,
      "SELECT id FROM remote_credentials WHERE remote_id = 'dc-t' AND name = 'admin'",
    );
    await sqlQuery(
      url,
      'INSERT INTO remote_groups (id, created_at) VALUES ($1, now()) ON CONFLICT DO NOTHING',
      ['owners'],
    );
    await sqlQuery(
      url,
      "INSERT INTO remote_group_entries (group_id, remote_id, credential_id) VALUES ('owners', 'dc-t', $1) ON CONFLICT DO NOTHING",
      [row.id],
    );
    return grantToken(url, user, 'Admin', '/groups/owners');
  }

  it('refuses new endpoints or a new CA from an Admin of one remote or of a remote group', async () => {
    const scoped = await grantToken(m.databaseUrl!, 'rhea@local', 'Admin', '/remotes/dc-t');
    const grouped = await remoteGroupAdmin('gus@local');
    const before = (await m.api('GET', '/api/v1/remotes/dc-t')).body;
    const attacker = await createCa('attacker CA');
    for (const token of [scoped, grouped]) {
      for (const body of [
        { endpoints: ['127.0.0.1:1'] },
        { caCertPem: attacker.certPem },
        { caFingerprint: 'AA:'.repeat(31) + 'AA' },
      ]) {
        const refused = await m.api('PATCH', '/api/v1/remotes/dc-t', body, { token });
        expect(refused.status, JSON.stringify(refused.body)).toBe(403);
        expect(refused.body.error.message).toContain('remote.modify on /remotes');
      }
      const described = await m.api(
        'PATCH',
        '/api/v1/remotes/dc-t',
        { description: 'tenancy' },
        { token },
      );
      expect(described.status, JSON.stringify(described.body)).toBe(200);
    }
    const after = (await m.api('GET', '/api/v1/remotes/dc-t')).body;
    expect(after.endpoints).toEqual(before.endpoints);
    expect(after.trust).toEqual(before.trust);
  });

  it('never sends the stored keys to a new CA: they must be entered again and are tested first', async () => {
    const before = (await m.api('GET', '/api/v1/remotes/dc-t')).body;
    const attacker = await createCa('attacker CA');
    const bare = await m.api('PATCH', '/api/v1/remotes/dc-t', { caCertPem: attacker.certPem });
    expect(bare.status).toBe(400);
    expect(bare.body.error.message).toContain('credentials');
    const wrongCa = await m.api('PATCH', '/api/v1/remotes/dc-t', {
      caCertPem: attacker.certPem,
      credentials: [
        { name: 'admin', key: adminKey },
        { name: 'reader', key: readerKey },
      ],
    });
    expect(wrongCa.status).toBeGreaterThanOrEqual(400);
    expect((await m.api('GET', '/api/v1/remotes/dc-t')).body.trust).toEqual(before.trust);
    const missingOne = await m.api('PATCH', '/api/v1/remotes/dc-t', {
      caCertPem: cluster.caPem,
      credentials: [{ name: 'admin', key: adminKey }],
    });
    expect(missingOne.status).toBe(400);
    expect(missingOne.body.error.message).toContain('reader');
    const rotated = await m.api('PATCH', '/api/v1/remotes/dc-t', {
      caCertPem: cluster.caPem,
      credentials: [
        { name: 'admin', key: adminKey },
        { name: 'reader', key: readerKey },
      ],
    });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    expect(rotated.body.credentials.map((c: Json) => c.name)).toEqual(['admin', 'reader']);
    expect((await m.api('GET', '/api/v1/remotes/dc-t/nodes')).status).toBe(200);
  });
});

describe('remote groups', () => {
  async function remoteGroup(id: string, credential: string): Promise<string> {
    const url = m.databaseUrl!;
    const [row] = await sqlQuery<{ id: string }>(
      url,
      "SELECT id FROM remote_credentials WHERE remote_id = 'dc-t' AND name = $1",
      [credential],
    );
    await sqlQuery(url, 'INSERT INTO remote_groups (id, created_at) VALUES ($1, now())', [id]);
    await sqlQuery(
      url,
      "INSERT INTO remote_group_entries (group_id, remote_id, credential_id) VALUES ($1, 'dc-t', $2)",
      [id, row.id],
    );
    return row.id;
  }

  it('records what each credential may do on the cluster when the remote is added', async () => {
    const rows = await sqlQuery(
      m.databaseUrl!,
      "SELECT name, permissions FROM remote_credentials WHERE remote_id = 'dc-t' ORDER BY position",
    );
    expect(rows).toEqual([
      { name: 'admin', permissions: ['*'] },
      { name: 'reader', permissions: ['node:registry:read', 'vm:instance:read'] },
    ]);
  });

  it('acts through the group’s credential, within what that credential may do on the cluster', async () => {
    const operatorCredential = await remoteGroup('ops', 'admin');
    await remoteGroup('readers', 'reader');
    const operator = await grantToken(m.databaseUrl!, 'olga@local', 'Manage', '/groups/ops');
    const limited = await grantToken(m.databaseUrl!, 'rita@local', 'Manage', '/groups/readers');

    expect(
      (await m.api('GET', '/api/v1/remotes/dc-t/vms', undefined, { token: limited })).body.items,
    ).toHaveLength(3);
    const refused = await m.api(
      'POST',
      `/api/v1/remotes/dc-t/vms/${vms[2].id}/start`,
      {},
      { token: limited },
    );
    expect(refused.status).toBe(403);
    expect(refused.body.error.message).toContain(
      'credential reader of remote dc-t may not do this on the cluster (needs vm:instance:power',
    );

    const current = await m.api('GET', `/api/v1/remotes/dc-t/vms/${vms[2].id}`, undefined, {
      token: operator,
    });
    const action = current.body.status === 'running' ? 'stop' : 'start';
    const accepted = await m.api(
      'POST',
      `/api/v1/remotes/dc-t/vms/${vms[2].id}/${action}`,
      {},
      { token: operator },
    );
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(202);
    const [task] = await sqlQuery(m.databaseUrl!, 'SELECT credential_id FROM tasks WHERE id = $1', [
      accepted.body.taskId,
    ]);
    expect(task.credential_id).toBe(operatorCredential);
    const done = await eventually(async () => {
      const answer = await m.api('GET', `/api/v1/tasks/${accepted.body.taskId}`, undefined, {
        token: operator,
      });
      return ['succeeded', 'failed'].includes(answer.body.state) ? answer.body : undefined;
    });
    expect(done.state, JSON.stringify(done)).toBe('succeeded');
    // A group grant covers only the group's remotes.
    expect(
      (await m.api('GET', '/api/v1/remotes/other/nodes', undefined, { token: operator })).status,
    ).toBe(403);
  });
});
