import { ALL_PRIVILEGES, isReadPrivilege, type Privilege } from '@debvisor/permissions';
import {
  cleanupTempDirs,
  createManagerIdentity,
  startCluster,
  type TestCluster,
} from '@debvisor/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
 * The resource search, paging, sorting, VM detail and privilege fields through HTTP, against a real
 * simulated cluster (two nodes, three VMs each).
 */
let dbs: TestDatabases;
let cluster: TestCluster;
let m: TestManager;
/** Every node and VM of the remote in the default order, as the admin sees them. */
let all: Json[];

const get = (path: string, token?: string) => m.api('GET', path, undefined, token ? { token } : {});
const list = async (params: Record<string, string>, token?: string) => {
  const answer = await get(`/api/v1/resources?${new URLSearchParams(params)}`, token);
  expect(answer.status, answer.text).toBe(200);
  return answer.body;
};
const keys = (items: Json[]) => items.map((item: Json) => `${item.type}/${item.name}`);

beforeAll(async () => {
  const identity = await createManagerIdentity('resources-spec');
  [dbs, cluster] = await Promise.all([
    startTestDatabases(),
    startCluster({
      clusterId: 'dc-r',
      nodes: 2,
      vmsPerNode: 3,
      trustedClientCaPem: identity.ca.certPem,
    }),
  ]);
  const key = await cluster.createApiKey(['*'], { principal: 'manager' });
  m = await startTestManager({
    databaseUrl: await dbs.fresh(),
    stateDir: stateDirWithClientIdentity(identity),
  });
  const created = await m.api('POST', '/api/v1/remotes', {
    id: 'dc-r',
    description: 'resources',
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key }],
  });
  expect(created.status, created.text).toBe(201);
  all = await eventually(async () => {
    await get('/api/v1/resources/refresh?remote=dc-r');
    const answer = await get('/api/v1/resources');
    return answer.body.total === 8 ? (answer.body.items as Json[]) : undefined;
  });
}, 180_000);

afterAll(async () => {
  await m?.stop();
  await cluster?.stop();
  await dbs?.stop();
  cleanupTempDirs();
});

describe('GET /api/v1/resources', () => {
  it('lists nodes before VMs, each by name, and answers total, limit and offset', async () => {
    const body = await list({});
    expect(body).toMatchObject({ total: 8, limit: 1000, offset: 0 });
    expect(body.items.slice(0, 2).map((i: Json) => i.id)).toEqual(['node-1', 'node-2']);
    const vmNames = body.items.slice(2).map((i: Json) => i.name);
    expect(vmNames).toEqual([...vmNames].sort());
    expect(body.remotes).toEqual([
      expect.objectContaining({
        remote: 'dc-r',
        status: 'online',
        nodes: { total: 2, alive: 2 },
        vms: expect.objectContaining({ total: 6 }),
      }),
    ]);
  });

  it('filters with q: quoted names, bare words, repeated keys as OR, labels, nodes and ids', async () => {
    const vms = all.filter((i) => i.type === 'vm');
    const [first] = vms;
    expect(keys((await list({ q: `name:"${first.name}"` })).items)).toEqual([`vm/${first.name}`]);
    expect(keys((await list({ q: first.name.toUpperCase() })).items)).toEqual([`vm/${first.name}`]);
    expect(
      (await list({ q: `id:${first.id.toUpperCase()}` })).items.map((i: Json) => i.id),
    ).toEqual([first.id]);

    const running = vms.filter((vm) => vm.status === 'running');
    const stopped = vms.filter((vm) => vm.status === 'stopped');
    expect(running.length + stopped.length).toBe(6);
    expect(keys((await list({ q: 'status:running type:vm' })).items)).toEqual(keys(running));
    expect(keys((await list({ q: 'status:running status:stopped type:vm' })).items)).toEqual(
      keys(vms),
    );

    const env = first.labels.env as string;
    expect(keys((await list({ q: `label:env=${env}` })).items)).toEqual(
      keys(vms.filter((vm) => vm.labels.env === env)),
    );
    expect((await list({ q: 'label:env' })).total).toBe(6);
    expect((await list({ q: 'label:no-such-label' })).total).toBe(0);

    const onNode = (await list({ q: 'node:node-2' })).items;
    expect(keys(onNode)).toEqual(
      keys(all.filter((i) => i.id === 'node-2' || (i.type === 'vm' && i.node === 'node-2'))),
    );
    expect(onNode.filter((i: Json) => i.type === 'vm')).toHaveLength(3);

    // The older parameters still work, and together with q all must match.
    expect(keys((await list({ type: 'node' })).items)).toEqual(['node/node-1', 'node/node-2']);
    expect(
      (await list({ q: 'remote:dc-r', remote: 'dc-r', type: 'vm', name: first.name })).items.map(
        (i: Json) => i.id,
      ),
    ).toEqual([first.id]);
    expect(await list({ q: 'remote:dc-other' })).toMatchObject({
      items: [],
      total: 0,
      remotes: [],
    });
  });

  it('refuses an unknown search key with 400 validation_failed naming the key and the keys allowed', async () => {
    const answer = await get(`/api/v1/resources?q=${encodeURIComponent('web colour:blue')}`);
    expect(answer.status).toBe(400);
    expect(Object.keys(answer.body)).toEqual(['error']);
    expect(answer.body.error.code).toBe('validation_failed');
    expect(answer.body.error.message).toContain('"colour"');
    expect(answer.body.error.message).toContain(
      'remote, node, status, name, tenant, type, id, label',
    );
    expect(answer.body.error.traceId).toMatch(/^[0-9a-f]{32}$/);
    for (const [query, mentions] of [
      [`q=${'x'.repeat(513)}`, 'q'],
      ['q=name:%22open', 'unterminated quote'],
      ['limit=0', 'limit'],
      ['limit=5001', 'limit'],
      ['offset=-1', 'offset'],
      ['sort=size', 'sort'],
    ]) {
      const refused = await get(`/api/v1/resources?${query}`);
      expect(refused.status, query).toBe(400);
      expect(refused.body.error.code).toBe('validation_failed');
      expect(refused.body.error.message).toContain(mentions);
    }
  });

  it('pages and sorts: total counts every match, the page is the slice of the order asked for', async () => {
    const page = await list({ type: 'vm', limit: '2', offset: '1' });
    expect(page).toMatchObject({ total: 6, limit: 2, offset: 1 });
    expect(keys(page.items)).toEqual(keys(all.filter((i) => i.type === 'vm').slice(1, 3)));

    const byNameDescending = await list({ sort: '-name', type: 'vm' });
    expect(byNameDescending.items.map((i: Json) => i.name)).toEqual(
      all
        .filter((i) => i.type === 'vm')
        .map((i) => i.name)
        .reverse(),
    );
    const byMemory = (await list({ sort: '-memory' })).items.map((i: Json) => i.memoryUsedBytes);
    expect(byMemory).toEqual([...byMemory].sort((a, b) => b - a));
    const byNode = (await list({ sort: 'node', type: 'vm' })).items.map((i: Json) => i.node);
    expect(byNode).toEqual([...byNode].sort());
    expect((await list({ offset: '8' })).items).toEqual([]);
  });
});

describe('privileges and the VM detail', () => {
  it('answers the VM detail with its CPU baseline, disks, NICs and the caller’s privileges; list items stay small', async () => {
    const vm = all.find((i) => i.type === 'vm')!;
    expect(vm).not.toHaveProperty('disks');
    expect((await get('/api/v1/remotes/dc-r/vms')).body.items[0]).not.toHaveProperty('nics');
    const detail = await get(`/api/v1/remotes/dc-r/vms/${vm.id}`);
    expect(detail.status, detail.text).toBe(200);
    expect(detail.body).toMatchObject({
      id: vm.id,
      name: vm.name,
      remote: 'dc-r',
      type: 'vm',
      hugepages: expect.any(Boolean),
    });
    expect(detail.body.cpuModel).toMatch(/^(x86-64-v[23]|host-model)$/);
    // The sim cluster seeds RBD disks in pool rbd named after the VM, and NICs on bridges.
    expect(detail.body.disks[0]).toEqual({
      pool: 'rbd',
      image: `${vm.name}-disk0`,
      sizeBytes: expect.any(Number),
      bus: 'virtio',
    });
    expect(detail.body.disks[0].sizeBytes).toBeGreaterThan(0);
    expect(detail.body.nics).toHaveLength(1);
    const [nic] = detail.body.nics;
    expect(Object.keys(nic).sort()).toEqual(['bridge', 'mac', 'model', 'vlan']);
    expect(nic).toMatchObject({
      mac: expect.stringMatching(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/),
      model: 'virtio',
    });
    expect(nic.bridge).toMatch(/^\S+$/);
    expect(nic.vlan === null || nic.vlan > 0).toBe(true);
    expect(detail.body.privileges).toEqual(ALL_PRIVILEGES);
  });

  it('gives an Audit-only user no write privilege anywhere, and a VM operator the VM’s actions on that VM only', async () => {
    const auditor = await grantToken(m.databaseUrl!, 'auditor@local', 'Audit', '/');
    const vm = all.find((i) => i.type === 'vm')!;
    const statuses = [
      ...(await list({}, auditor)).remotes,
      ...(await get('/api/v1/resources/refresh', auditor)).body.remotes,
      (await get('/api/v1/remotes/dc-r/nodes', auditor)).body.remote,
      (await get('/api/v1/remotes/dc-r/vms', auditor)).body.remote,
    ];
    expect(statuses).toHaveLength(4);
    for (const status of statuses) {
      expect(status.privileges).toContain('vm.audit');
      expect(status.privileges.filter((p: Privilege) => !isReadPrivilege(p))).toEqual([]);
    }
    const detail = (await get(`/api/v1/remotes/dc-r/vms/${vm.id}`, auditor)).body;
    expect(detail.privileges).toContain('vm.audit');
    expect(detail.privileges.filter((p: Privilege) => !isReadPrivilege(p))).toEqual([]);

    const operator = await grantToken(
      m.databaseUrl!,
      'olga@local',
      'Manage',
      `/remotes/dc-r/vms/${vm.id}`,
    );
    expect((await get(`/api/v1/remotes/dc-r/vms/${vm.id}`, operator)).body.privileges).toEqual(
      expect.arrayContaining(['vm.power', 'vm.migrate', 'vm.snapshot', 'task.cancel']),
    );
    const other = all.find((i) => i.type === 'vm' && i.id !== vm.id)!;
    expect((await get(`/api/v1/remotes/dc-r/vms/${other.id}`, operator)).status).toBe(404);
    // Only the one VM in lists; the remote is not visible to it as a remote (no remote.audit there).
    expect(
      (await get('/api/v1/remotes/dc-r/vms', operator)).body.items.map((i: Json) => i.id),
    ).toEqual([vm.id]);
  });

  it('names the VM detail and the list schemas in the OpenAPI document', async () => {
    const doc = (await get('/api/v1/openapi.json')).body;
    // nestjs-zod names response schemas <id>_Output.
    for (const id of ['VmDetail', 'VmDisk', 'VmNic', 'VmResource', 'ResourceList', 'RemoteStatus'])
      expect(doc.components.schemas, id).toHaveProperty(`${id}_Output`);
    const detail =
      doc.paths['/api/v1/remotes/{remote}/vms/{vmid}'].get.responses['200'].content[
        'application/json'
      ].schema;
    expect(detail).toEqual({ $ref: '#/components/schemas/VmDetail_Output' });
    expect(Object.keys(doc.components.schemas.VmDetail_Output.properties)).toEqual(
      expect.arrayContaining(['cpuModel', 'hugepages', 'disks', 'nics', 'privileges']),
    );
    expect(doc.components.schemas.VmResource_Output.properties).not.toHaveProperty('disks');
    const parameters = doc.paths['/api/v1/resources'].get.parameters.map((p: Json) => p.name);
    expect(parameters).toEqual(
      expect.arrayContaining([
        'q',
        'limit',
        'offset',
        'sort',
        'remote',
        'type',
        'status',
        'name',
        'tenant',
      ]),
    );
  });
});
