import type {
  ListNodesResponse__Output,
  ListVmsResponse__Output,
  NodeEntry__Output,
  Vm__Output,
} from '@debvisor/proto';
import type { PinoLogger } from 'nestjs-pino';
import { ALL_PRIVILEGES } from '@debvisor/permissions';
import { performance } from 'node:perf_hooks';
import { describe, expect, it, vi } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { AgentError } from '../agents/agent-error';
import { AccessPolicy } from '../authz/access-policy.service';
import { testCaller } from '../../test/test-caller';
import type { Caller } from '../authz/caller';
import type { ClockRepository } from '../common/clock.repository';
import { ErrorCode } from '../common/error-code';
import type { ManagerConfig } from '../config/manager-config';
import type { MetricsService } from '../health/metrics.service';
import { RemoteEvents } from '../remotes/remote-events';
import type { RemotesService } from '../remotes/remotes.service';
import type { SchedulerService } from '../scheduler/scheduler.service';
import { DomainError } from '../common/domain-error';
import { HISTORY_SAMPLES, ResourcesService } from './resources.service';
import type { KnownNode } from './known-nodes';
import type { KnownNodesRepository } from './known-nodes.repository';
import { resourceQuerySchema, type ResourceQuery } from './resources.dto';
import { currentTraceId, runWithTraceId } from '../common/trace-context';

const ADMIN: Caller = testCaller([{ path: '/', role: 'Admin' }]);

/** A query as the route's validation pipe hands it over (defaults applied). */
function query(input: Record<string, unknown> = {}): ResourceQuery {
  return resourceQuerySchema.parse(input);
}

function node(id: string, alive = true): NodeEntry__Output {
  return {
    info: {
      nodeId: id,
      hostname: id,
      fqdn: `${id}.example`,
      addresses: [],
      agentEndpoint: `${id}:9443`,
      cpuModel: 'x',
      cpuFlags: [],
      cpuCount: 8,
      memoryBytes: '17179869184',
      hugepages: null,
      versions: {},
      hypervisorDriver: 'sim',
      storageDriver: 'sim',
      bridges: [],
    },
    status: {
      heartbeatAt: '2026-05-01T12:00:00Z',
      cpuUsage: 0.25,
      memoryUsedBytes: '1073741824',
      memoryTotalBytes: '17179869184',
      vmCount: 1,
      vmsRunning: 1,
      drivers: [],
      health: 'ok',
    },
    alive,
    registeredAt: '2026-05-01T11:00:00Z',
  };
}

function vm(
  uuid: string,
  name: string,
  state: string,
  tenant = '',
  extra: {
    nodeId?: string;
    cpuUsage?: number;
    memoryUsedBytes?: string;
    labels?: Record<string, string>;
  } = {},
): Vm__Output {
  return {
    spec: {
      uuid,
      name,
      vcpus: 2,
      memoryBytes: '2147483648',
      disks: [
        { pool: 'rbd', image: `${name}-disk0`, sizeBytes: '21474836480', bus: 'virtio' },
        { pool: 'ssd', image: `${name}-data`, sizeBytes: '1073741824', bus: 'scsi' },
      ],
      nics: [
        { mac: '52:54:00:00:00:01', bridge: 'vmbr0', model: 'virtio', vlan: 0 },
        { mac: '52:54:00:00:00:02', bridge: 'vmbr1', model: 'e1000', vlan: 120 },
      ],
      cpuModel: 'x86-64-v2',
      hugepages: true,
      tenant,
      labels: extra.labels ?? { env: 'test' },
    },
    runtime: {
      state,
      nodeId: extra.nodeId ?? 'n1',
      cpuUsage: extra.cpuUsage ?? 0.1,
      memoryUsedBytes: extra.memoryUsedBytes ?? '1000',
      uptimeSeconds: '60',
      stateChangedAt: '2026-05-01T11:59:00Z',
      lockedBy: '',
    },
  };
}

interface Setup {
  remotes: string[];
  listNodes: (connection: AgentConnection) => Promise<ListNodesResponse__Output>;
  listVms: (connection: AgentConnection) => Promise<ListVmsResponse__Output>;
  getVm?: (connection: AgentConnection, uuid: string) => Promise<Vm__Output>;
  timeoutMs?: number;
  now?: () => Date;
  auth?: AccessPolicy;
  /** The known_nodes rows (a stand-in for the table), shared across setups to play a manager restart. */
  knownRows?: Map<string, KnownNode>;
}

/** The known_nodes table as a map keyed remote/node: what the repository would read and write. */
function knownNodesTable(rows: Map<string, KnownNode>): KnownNodesRepository {
  return strictMock<KnownNodesRepository>('KnownNodesRepository', {
    all: async () => structuredClone([...rows.values()]),
    save: async (nodes: readonly KnownNode[]) => {
      for (const n of nodes) rows.set(`${n.remote}/${n.nodeId}`, structuredClone(n));
    },
    forget: async (remote: string, nodeId: string) => rows.delete(`${remote}/${nodeId}`),
    forgetRemote: async (remote: string) => {
      for (const key of [...rows.keys()]) if (key.startsWith(`${remote}/`)) rows.delete(key);
    },
  });
}

function setup(s: Setup) {
  const events = new RemoteEvents();
  const remotes = strictMock<RemotesService>('RemotesService', {
    listIds: async () => s.remotes,
    get: async (id: string) => ({ id }) as never,
    connectionFor: async (id: string) => ({
      remoteId: id,
      endpoints: [`${id}:9443`],
      caCertPem: 'ca',
      apiKey: 'k',
    }),
  });
  const agents = strictMock<AgentClientRepository>('AgentClientRepository', {
    listNodes: s.listNodes,
    listVms: s.listVms,
    ...(s.getVm ? { getVm: s.getVm } : {}),
  });
  const metrics = strictMock<MetricsService>('MetricsService', {
    observeRefresh: () => undefined,
    publishRemotes: () => undefined,
  });
  const logger = strictMock<PinoLogger>('PinoLogger', {
    setContext: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: () => undefined,
  });
  const config = { remoteTimeoutMs: s.timeoutMs ?? 1000, pollIntervalSeconds: 60 } as ManagerConfig;
  const auth = s.auth ?? new AccessPolicy();
  const clock = strictMock<ClockRepository>('ClockRepository', {
    now: s.now ?? (() => new Date('2026-05-01T12:00:00Z')),
  });
  const knownRows = s.knownRows ?? new Map<string, KnownNode>();
  const service = new ResourcesService(
    config,
    remotes,
    agents,
    events,
    auth,
    clock,
    metrics,
    logger,
    knownNodesTable(knownRows),
    strictMock<SchedulerService>('SchedulerService', { register: () => undefined }),
  );
  service.onModuleInit();
  return { service, events, agents, metrics, knownRows };
}

const healthy = {
  listNodes: async () => ({ clusterId: 'c', nodes: [node('n1'), node('n2', false)] }),
  listVms: async () => ({
    vms: [
      vm('11111111-1111-4111-8111-111111111111', 'web-1', 'running', 'blue'),
      vm('22222222-2222-4222-8222-222222222222', 'db-1', 'stopped'),
    ],
    unreachableNodes: {},
  }),
};

describe('ResourcesService', () => {
  it('keeps answering about a healthy remote while another is unreachable, with the error and since', async () => {
    const { service } = setup({
      remotes: ['alpha', 'beta'],
      listNodes: async (c) => {
        if (c.remoteId === 'beta')
          throw new AgentError(
            ErrorCode.RemoteUnreachable,
            'beta:9443 is unreachable: connection refused',
            'beta:9443',
          );
        return healthy.listNodes();
      },
      listVms: healthy.listVms,
    });
    await service.refreshAll();
    const answer = service.list(ADMIN, query());
    expect(answer.remotes).toEqual([
      expect.objectContaining({
        remote: 'alpha',
        status: 'online',
        nodes: { total: 2, alive: 1 },
        vms: { total: 2, running: 1 },
        error: null,
        since: null,
      }),
      expect.objectContaining({
        remote: 'beta',
        status: 'unreachable',
        lastRefreshAt: null,
        since: '2026-05-01T12:00:00.000Z',
        error: {
          code: 'remote_unreachable',
          message: 'beta:9443 is unreachable: connection refused',
        },
      }),
    ]);
    expect(answer.items.map((i) => `${i.remote}/${i.type}/${i.name}`)).toEqual([
      'alpha/node/n1',
      'alpha/node/n2',
      'alpha/vm/db-1',
      'alpha/vm/web-1',
    ]);
    expect(answer.items.find((i) => i.name === 'n2')).toMatchObject({
      status: 'offline',
      alive: false,
    });
  });

  it("calls agents under the request's trace id, and under a new one per remote when the poller refreshes", async () => {
    const seen: string[] = [];
    const { service } = setup({
      remotes: ['alpha', 'beta'],
      listNodes: async (c) => (seen.push(`${c.remoteId} ${currentTraceId()}`), healthy.listNodes()),
      listVms: healthy.listVms,
    });
    await runWithTraceId('request-trace-0042', () => service.refreshRemote('alpha'));
    await service.refreshAll();
    expect(seen[0]).toBe('alpha request-trace-0042');
    const polled = seen.slice(1).map((line) => line.split(' '));
    expect(polled.map(([remote]) => remote).sort()).toEqual(['alpha', 'beta']);
    expect(polled.every(([, traceId]) => /^[0-9a-f]{32}$/.test(traceId))).toBe(true);
    expect(polled[0][1]).not.toBe(polled[1][1]);
  });

  it('publishes every remote with its node and VM states to the metrics after a refresh', async () => {
    const { service, metrics } = setup({ remotes: ['alpha'], ...healthy });
    await service.refreshAll();
    expect(metrics.publishRemotes).toHaveBeenLastCalledWith([
      {
        remote: 'alpha',
        status: 'online',
        nodeStates: ['ok', 'offline'],
        vmStates: ['stopped', 'running'],
      },
    ]);
  });

  it('never waits for a remote when answering: list() reads the cache synchronously', async () => {
    const { service } = setup({
      remotes: ['slow'],
      listNodes: () => new Promise(() => undefined),
      listVms: () => new Promise(() => undefined),
    });
    void service.refreshAll();
    const answer = service.list(ADMIN, query());
    expect(answer).not.toBeInstanceOf(Promise);
    await vi.waitFor(() =>
      expect(service.list(ADMIN, query()).remotes).toEqual([
        expect.objectContaining({ remote: 'slow', status: 'pending' }),
      ]),
    );
  });

  it('returns from an on-demand refresh after the remote timeout while the remote hangs', async () => {
    const { service } = setup({
      remotes: ['slow'],
      timeoutMs: 50,
      listNodes: () => new Promise(() => undefined),
      listVms: () => new Promise(() => undefined),
    });
    const started = Date.now();
    const answer = await service.refreshNow(ADMIN);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(answer.remotes).toEqual([
      expect.objectContaining({ remote: 'slow', status: 'pending' }),
    ]);
  });

  it('keeps the first failure time while a remote stays unreachable, and marks its last known items stale', async () => {
    let up = true;
    let now = new Date('2026-05-01T12:00:00Z');
    const { service } = setup({
      remotes: ['alpha'],
      now: () => now,
      listNodes: async () => {
        if (!up) throw new AgentError(ErrorCode.RemoteUnreachable, 'down', 'alpha:9443');
        return healthy.listNodes();
      },
      listVms: healthy.listVms,
    });
    await service.refreshAll();
    up = false;
    now = new Date('2026-05-01T12:01:00Z');
    await service.refreshAll();
    now = new Date('2026-05-01T12:02:00Z');
    await service.refreshAll();
    const answer = service.list(ADMIN, query());
    expect(answer.remotes[0]).toMatchObject({
      status: 'unreachable',
      since: '2026-05-01T12:01:00.000Z',
      lastRefreshAt: '2026-05-01T12:00:00.000Z',
    });
    expect(answer.items.every((i) => i.stale)).toBe(true);
    up = true;
    await service.refreshAll();
    expect(service.list(ADMIN, query()).remotes[0]).toMatchObject({
      status: 'online',
      since: null,
      error: null,
    });
  });

  it('shares one refresh between concurrent requests for the same remote', async () => {
    const listNodes = vi.fn(healthy.listNodes);
    const { service } = setup({ remotes: ['alpha'], listNodes, listVms: healthy.listVms });
    await Promise.all([
      service.refreshRemote('alpha'),
      service.refreshRemote('alpha'),
      service.refreshRemote('alpha'),
    ]);
    expect(listNodes).toHaveBeenCalledTimes(1);
  });

  it('filters by remote, type, status, name and tenant', async () => {
    const { service } = setup({ remotes: ['alpha', 'beta'], ...healthy });
    await service.refreshAll();
    const names = (input: Record<string, unknown>) =>
      service.list(ADMIN, query(input)).items.map((i) => `${i.remote}/${i.name}`);
    expect(names({ remote: 'beta', type: 'vm' })).toEqual(['beta/db-1', 'beta/web-1']);
    expect(names({ type: 'node', status: 'offline' })).toEqual(['alpha/n2', 'beta/n2']);
    expect(names({ name: 'WEB' })).toEqual(['alpha/web-1', 'beta/web-1']);
    expect(names({ tenant: 'blue', remote: 'alpha' })).toEqual(['alpha/web-1']);
    expect(service.list(ADMIN, query({ remote: 'gamma' })).remotes).toEqual([]);
  });

  it('shows a scoped caller only the remotes it may see', async () => {
    const { service } = setup({ remotes: ['alpha', 'beta'], ...healthy });
    await service.refreshAll();
    const scoped: Caller = testCaller([{ path: '/remotes/beta', role: 'Audit' }]);
    expect(service.list(scoped, query()).remotes.map((r) => r.remote)).toEqual(['beta']);
  });

  it('drops a removed remote from the cache at once', async () => {
    const { service, events } = setup({ remotes: ['alpha'], ...healthy });
    await service.refreshAll();
    events.emit({ type: 'removed', remoteId: 'alpha' });
    expect(service.list(ADMIN, query()).remotes).toEqual([]);
  });

  it('replaces one VM in the cache after an action', async () => {
    const { service } = setup({
      remotes: ['alpha'],
      ...healthy,
      getVm: async (_c, uuid) => vm(uuid, 'web-1', 'stopped', 'blue'),
    });
    await service.refreshAll();
    await service.refreshVm('alpha', '11111111-1111-4111-8111-111111111111');
    expect((await service.vm(ADMIN, 'alpha', '11111111-1111-4111-8111-111111111111')).status).toBe(
      'stopped',
    );
    expect(service.list(ADMIN, query()).remotes[0].vms).toEqual({ total: 2, running: 0 });
  });

  it('shows a migrated VM on its new node at once, and re-reads it there in the background', async () => {
    const id = '11111111-1111-4111-8111-111111111111';
    let reread!: () => void;
    const reading = new Promise<void>((resolve) => (reread = resolve));
    const { service } = setup({
      remotes: ['alpha'],
      ...healthy,
      getVm: async (_c, uuid) => {
        reread();
        return vm(uuid, 'web-1', 'running', 'blue', { nodeId: 'n2', cpuUsage: 0.5 });
      },
    });
    await service.refreshAll();
    service.vmMoved('alpha', id, 'n2', 'running');
    expect(service.cachedVm('alpha', id)).toMatchObject({ node: 'n2', status: 'running' });
    await reading;
    await vi.waitFor(() => expect(service.cachedVm('alpha', id)?.cpuUsage).toBe(0.5));
  });

  describe('search, sort and paging', () => {
    const uuid = (n: number) => `${String(n).padStart(8, '0')}-0000-4000-8000-000000000000`;
    const cluster = {
      listNodes: async () => ({ clusterId: 'c', nodes: [node('n2'), node('n1')] }),
      listVms: async () => ({
        vms: [
          vm(uuid(1), 'web-10', 'running', 'blue', {
            nodeId: 'n1',
            cpuUsage: 0.9,
            memoryUsedBytes: '300',
            labels: { env: 'prod' },
          }),
          vm(uuid(2), 'web-2', 'stopped', 'blue', {
            nodeId: 'n2',
            cpuUsage: 0,
            memoryUsedBytes: '0',
            labels: { env: 'dev' },
          }),
          vm(uuid(3), 'DB-1', 'crashed', 'red', {
            nodeId: 'n1',
            cpuUsage: 0.5,
            memoryUsedBytes: '900',
            labels: {},
          }),
        ],
        unreachableNodes: {},
      }),
    };

    async function refreshed() {
      const s = setup({ remotes: ['beta', 'alpha'], ...cluster });
      await s.service.refreshAll();
      return s.service;
    }

    it('orders by remote, nodes before VMs, then by name with numbers by value', async () => {
      const service = await refreshed();
      const answer = service.list(ADMIN, query());
      expect(answer.items.map((i) => `${i.remote}/${i.name}`)).toEqual([
        'alpha/n1',
        'alpha/n2',
        'alpha/DB-1',
        'alpha/web-2',
        'alpha/web-10',
        'beta/n1',
        'beta/n2',
        'beta/DB-1',
        'beta/web-2',
        'beta/web-10',
      ]);
      expect(answer).toMatchObject({ total: 10, limit: 1000, offset: 0 });
    });

    it('filters with q, together with the older parameters', async () => {
      const service = await refreshed();
      const names = (input: Record<string, unknown>) =>
        service.list(ADMIN, query(input)).items.map((i) => `${i.remote}/${i.name}`);
      expect(names({ q: 'web remote:alpha' })).toEqual(['alpha/web-2', 'alpha/web-10']);
      expect(names({ q: 'status:running status:crashed', remote: 'beta' })).toEqual([
        'beta/DB-1',
        'beta/web-10',
      ]);
      expect(names({ q: 'label:env=prod' })).toEqual(['alpha/web-10', 'beta/web-10']);
      expect(names({ q: 'node:n2 remote:alpha' })).toEqual(['alpha/n2', 'alpha/web-2']);
      expect(names({ q: `id:${uuid(3)} remote:beta` })).toEqual(['beta/DB-1']);
      expect(names({ q: 'tenant:blue', name: '10' })).toEqual(['alpha/web-10', 'beta/web-10']);
      expect(names({ q: 'type:node status:ok remote:beta' })).toEqual(['beta/n1', 'beta/n2']);
      // The remotes in scope follow the remote clauses too.
      expect(service.list(ADMIN, query({ q: 'remote:beta' })).remotes.map((r) => r.remote)).toEqual(
        ['beta'],
      );
    });

    it('answers a search it cannot read with a validation error naming q and the problem', async () => {
      const service = await refreshed();
      const refusal = (() => {
        try {
          service.list(ADMIN, query({ q: 'colour:blue' }));
        } catch (error) {
          return error;
        }
      })();
      expect(refusal).toBeInstanceOf(DomainError);
      expect(refusal).toMatchObject({
        code: ErrorCode.ValidationFailed,
        message: expect.stringMatching(/^q: unknown search key "colour": use one of remote, node/),
      });
      expect(resourceQuerySchema.safeParse({ q: 'x'.repeat(513) }).success).toBe(false);
      expect(resourceQuerySchema.safeParse({ limit: '5001' }).success).toBe(false);
      expect(resourceQuerySchema.safeParse({ limit: '0' }).success).toBe(false);
      expect(resourceQuerySchema.safeParse({ offset: '-1' }).success).toBe(false);
      expect(resourceQuerySchema.safeParse({ sort: 'size' }).success).toBe(false);
    });

    it('sorts by each key, descending with -, keeping the default order among equals', async () => {
      const service = await refreshed();
      const names = (sort: string) =>
        service.list(ADMIN, query({ sort, remote: 'alpha' })).items.map((i) => i.name);
      expect(names('name')).toEqual(['DB-1', 'n1', 'n2', 'web-2', 'web-10']);
      expect(names('-name')).toEqual(['web-10', 'web-2', 'n2', 'n1', 'DB-1']);
      expect(names('status')).toEqual(['DB-1', 'n1', 'n2', 'web-10', 'web-2']);
      expect(names('-status')).toEqual(['web-2', 'web-10', 'n1', 'n2', 'DB-1']);
      expect(names('node')).toEqual(['n1', 'DB-1', 'web-10', 'n2', 'web-2']);
      expect(names('cpu')).toEqual(['web-2', 'n1', 'n2', 'DB-1', 'web-10']);
      expect(names('-cpu')).toEqual(['web-10', 'DB-1', 'n1', 'n2', 'web-2']);
      expect(names('-memory')).toEqual(['n1', 'n2', 'DB-1', 'web-10', 'web-2']);
      expect(
        service
          .list(ADMIN, query({ sort: '-remote', type: 'node' }))
          .items.map((i) => `${i.remote}/${i.name}`),
      ).toEqual(['beta/n1', 'beta/n2', 'alpha/n1', 'alpha/n2']);
    });

    it('pages with limit and offset, counting every match in total', async () => {
      const service = await refreshed();
      const page = (input: Record<string, unknown>) => service.list(ADMIN, query(input));
      expect(page({ limit: '3', offset: '4' })).toMatchObject({ total: 10, limit: 3, offset: 4 });
      expect(page({ limit: 3, offset: 4 }).items.map((i) => `${i.remote}/${i.name}`)).toEqual([
        'alpha/web-10',
        'beta/n1',
        'beta/n2',
      ]);
      expect(
        page({ limit: 2, offset: 1, sort: '-name', type: 'vm' }).items.map(
          (i) => `${i.remote}/${i.name}`,
        ),
      ).toEqual(['beta/web-10', 'alpha/web-2']);
      expect(page({ offset: 50 })).toMatchObject({ items: [], total: 10 });
    });

    it('shows a tenant only its own VMs, counts only those, and tells what it may do on each remote', async () => {
      const service = await refreshed();
      const tenant = testCaller([{ path: '/', role: 'Manage', tenantGroup: 'tenant-a' }], {
        tenantVms: new Map([['tenant-a', new Set([uuid(2)])]]),
      });
      const answer = service.list(tenant, query({ type: 'vm' }));
      expect(answer.items.map((i) => `${i.remote}/${i.name}`)).toEqual([
        'alpha/web-2',
        'beta/web-2',
      ]);
      expect(answer.total).toBe(2);
      expect(answer.remotes.map((r) => r.vms)).toEqual([
        { total: 1, running: 0 },
        { total: 1, running: 0 },
      ]);
      // Above its VMs a tenant holds nothing outright (issue 14 item 6): no privilege on the remote.
      expect(answer.remotes[0].privileges).toEqual([]);
      expect(
        service
          .list(tenant, query({ sort: 'name' }))
          .items.filter((i) => i.type === 'vm')
          .map((i) => i.id),
      ).toEqual([uuid(2), uuid(2)]);
      expect(service.list(ADMIN, query()).remotes[0].privileges).toEqual(ALL_PRIVILEGES);
      const auditor = testCaller([{ path: '/remotes/alpha', role: 'Audit' }]);
      expect(service.statuses(auditor)).toEqual([
        expect.objectContaining({
          remote: 'alpha',
          privileges: [
            'system.audit',
            'remote.audit',
            'vm.audit',
            'task.audit',
            'access.audit',
            'audit.read',
          ],
        }),
      ]);
    });

    it('answers the VM detail with disks, NICs, CPU baseline and the privileges the caller holds on the VM', async () => {
      const service = await refreshed();
      const operator = testCaller([{ path: `/remotes/alpha/vms/${uuid(1)}`, role: 'Manage' }]);
      const detail = await service.vm(operator, 'alpha', uuid(1));
      expect(detail).toMatchObject({
        id: uuid(1),
        name: 'web-10',
        cpuModel: 'x86-64-v2',
        hugepages: true,
      });
      expect(detail.disks).toEqual([
        { pool: 'rbd', image: 'web-10-disk0', sizeBytes: 21474836480, bus: 'virtio' },
        { pool: 'ssd', image: 'web-10-data', sizeBytes: 1073741824, bus: 'scsi' },
      ]);
      expect(detail.nics).toEqual([
        { mac: '52:54:00:00:00:01', bridge: 'vmbr0', model: 'virtio', vlan: null },
        { mac: '52:54:00:00:00:02', bridge: 'vmbr1', model: 'e1000', vlan: 120 },
      ]);
      // Literally what the role grants on the VM's path (the Manage role), nothing of Admin's.
      expect(detail.privileges).toEqual([
        'system.audit',
        'remote.audit',
        'vm.audit',
        'vm.power',
        'vm.console',
        'vm.migrate',
        'vm.snapshot',
        'vm.replicate',
        'vm.ha',
        'node.maintenance',
        'task.audit',
        'task.cancel',
        'access.audit',
        'audit.read',
      ]);
      expect(
        (
          await service.vm(
            testCaller([{ path: '/remotes/alpha', role: 'Audit' }]),
            'alpha',
            uuid(1),
          )
        ).privileges,
      ).not.toContain('vm.power');
      // List items stay small.
      expect(service.list(ADMIN, query({ q: `id:${uuid(1)}` })).items[0]).not.toHaveProperty(
        'disks',
      );
      expect((await service.vmsOf(ADMIN, 'alpha')).items[0]).not.toHaveProperty('nics');
    });
  });

  describe('at scale', () => {
    const REMOTES = 100;
    const VMS = 1000;
    const vmsOf = (remote: number) =>
      Array.from({ length: VMS }, (_, i) =>
        vm(
          `${String(remote).padStart(4, '0')}${String(i).padStart(4, '0')}-0000-4000-8000-000000000000`,
          `vm-${i}`,
          i % 3 ? 'running' : 'stopped',
        ),
      );

    async function big(auth: AccessPolicy) {
      const remotes = Array.from({ length: REMOTES }, (_, r) => `dc-${String(r).padStart(3, '0')}`);
      const { service } = setup({
        remotes,
        auth,
        listNodes: healthy.listNodes,
        listVms: async (c) => ({ vms: vmsOf(remotes.indexOf(c.remoteId)), unreachableNodes: {} }),
      });
      await service.refreshAll();
      return service;
    }

    it('checks vm.audit once per remote, not per VM, for a caller holding it on whole remotes', async () => {
      const auth = new AccessPolicy();
      const service = await big(auth);
      const holds = vi.spyOn(auth, 'holds');
      const started = performance.now();
      const answer = service.list(ADMIN, query({ q: 'vm-1', sort: '-name' }));
      const elapsed = performance.now() - started;
      expect(answer.total).toBe(REMOTES * 111); // vm-1, vm-10…19, vm-100…199
      expect(answer.items).toHaveLength(1000);
      const vmChecks = holds.mock.calls.filter(
        ([, privilege, path]) => privilege === 'vm.audit' && path.includes('/vms/'),
      );
      expect(vmChecks.length).toBe(REMOTES); // one per remote, on a VM id no VM has
      // A generous bound: the point is no per-VM work beyond matching (it takes tens of milliseconds).
      expect(elapsed).toBeLessThan(2000);
    });

    it('falls back to per-VM checks only on the remote where the caller has VM-level grants', async () => {
      const auth = new AccessPolicy();
      const service = await big(auth);
      // dc-001 itself without propagation: the remote is visible, of its VMs only the one granted.
      const caller = testCaller([
        { path: '/remotes/dc-000', role: 'Audit' },
        { path: '/remotes/dc-001', role: 'Audit', propagate: false },
        { path: '/remotes/dc-001/vms/00010007-0000-4000-8000-000000000000', role: 'Audit' },
      ]);
      const holds = vi.spyOn(auth, 'holds');
      const answer = service.list(caller, query({ type: 'vm' }));
      expect(answer.total).toBe(VMS + 1);
      expect(answer.remotes.map((r) => [r.remote, r.vms.total])).toEqual([
        ['dc-000', VMS],
        ['dc-001', 1],
      ]);
      const perVm = holds.mock.calls.filter(
        ([, privilege, path]) =>
          privilege === 'vm.audit' && path.includes('/vms/') && !path.endsWith('/*'),
      );
      expect(perVm.length).toBe(VMS);
      expect(perVm.every(([, , path]) => path.startsWith('/remotes/dc-001/'))).toBe(true);
      expect(
        service.list(caller, query({ type: 'vm', offset: VMS })).items.map((i) => i.id),
      ).toEqual(['00010007-0000-4000-8000-000000000000']);
    });
  });

  describe('overview for the dashboard', () => {
    it('keeps node figures and one usage sample per successful refresh (the last 60), also while unreachable', async () => {
      let up = true;
      let minute = 0;
      const { service } = setup({
        remotes: ['alpha'],
        now: () => new Date(Date.UTC(2026, 4, 1, 12, minute)),
        listNodes: async () => {
          if (!up) throw new AgentError(ErrorCode.RemoteUnreachable, 'down', 'alpha:9443');
          return healthy.listNodes();
        },
        listVms: healthy.listVms,
      });
      for (minute = 0; minute < HISTORY_SAMPLES + 5; minute++) await service.refreshAll();
      up = false;
      await service.refreshAll();
      const [overview] = service.overview(ADMIN);
      expect(overview.status).toMatchObject({ remote: 'alpha', status: 'unreachable' });
      expect(overview.nodes).toMatchObject({
        total: 2,
        alive: 1,
        offline: 1,
        degraded: 0,
        cores: 8,
        coresUsed: 2,
        memoryTotalBytes: 17179869184,
        memoryUsedBytes: 1073741824,
        offlineNames: ['n2'],
      });
      expect(overview.vms).toEqual({ total: 2, running: 1, stopped: 1, other: 0, crashed: 0 });
      expect(overview.history).toHaveLength(HISTORY_SAMPLES);
      expect(overview.history[0]).toEqual({
        at: '2026-05-01T12:05:00.000Z',
        cpu: 0.25,
        memory: 1 / 16,
      });
      expect(overview.history.at(-1)?.at).toBe('2026-05-01T13:04:00.000Z');
    });
  });

  describe('known nodes never vanish', () => {
    const WEB = '11111111-1111-4111-8111-111111111111';
    const DB = '22222222-2222-4222-8222-222222222222';
    /** n1 runs web-1, n2 runs db-1; `n2` says how the cluster answers about n2. */
    function cluster(state: { n2: 'up' | 'frozen' | 'gone' }) {
      return {
        listNodes: async (): Promise<ListNodesResponse__Output> => ({
          clusterId: 'c',
          nodes: state.n2 === 'gone' ? [node('n1')] : [node('n1'), node('n2')],
        }),
        listVms: async (): Promise<ListVmsResponse__Output> => ({
          vms: [
            vm(WEB, 'web-1', 'running', '', { nodeId: 'n1' }),
            ...(state.n2 === 'up' ? [vm(DB, 'db-1', 'running', '', { nodeId: 'n2' })] : []),
          ],
          unreachableNodes: state.n2 === 'frozen' ? { n2: 'n2:9443 did not answer in time' } : {},
        }),
      };
    }

    it('marks a frozen node unreachable and, once its lease expired, down; its VMs stay listed as unknown with when they were last seen; then recovered', async () => {
      const state = { n2: 'up' as 'up' | 'frozen' | 'gone' };
      let minute = 0;
      const { service, metrics } = setup({
        remotes: ['alpha'],
        now: () => new Date(Date.UTC(2026, 4, 1, 12, minute)),
        ...cluster(state),
      });
      await service.refreshAll();
      const item = (name: string) =>
        service.list(ADMIN, query()).items.find((i) => i.name === name);
      expect(item('n2')).toMatchObject({
        state: 'online',
        stateSince: '2026-05-01T12:00:00.000Z',
        lastSeenAt: '2026-05-01T12:00:00.000Z',
      });
      expect(service.statuses(ADMIN)[0]).toMatchObject({ status: 'online', health: 'online' });

      minute = 1;
      state.n2 = 'frozen';
      await service.refreshAll();
      expect(item('n2')).toMatchObject({
        state: 'unreachable',
        stateSince: '2026-05-01T12:01:00.000Z',
        lastSeenAt: '2026-05-01T12:00:00.000Z',
        stale: true,
      });
      expect(item('db-1')).toMatchObject({
        status: 'unknown',
        node: 'n2',
        lastSeenAt: '2026-05-01T12:00:00.000Z',
        stale: true,
      });
      expect(service.statuses(ADMIN)[0]).toMatchObject({
        status: 'online',
        health: 'degraded',
        vms: { total: 2, running: 1 },
      });

      minute = 2;
      state.n2 = 'gone';
      await service.refreshAll();
      expect(item('n2')).toMatchObject({
        state: 'down',
        alive: false,
        status: 'offline',
        stateSince: '2026-05-01T12:02:00.000Z',
        lastSeenAt: '2026-05-01T12:00:00.000Z',
      });
      expect(item('db-1')).toMatchObject({
        status: 'unknown',
        lastSeenAt: '2026-05-01T12:00:00.000Z',
      });
      const [overview] = service.overview(ADMIN);
      expect(overview.nodes).toMatchObject({
        total: 2,
        alive: 1,
        offline: 1,
        outages: [
          { id: 'n2', name: 'n2', state: 'down', since: '2026-05-01T12:02:00.000Z', unknownVms: 1 },
        ],
      });
      expect(metrics.publishRemotes).toHaveBeenLastCalledWith([
        {
          remote: 'alpha',
          status: 'online',
          nodeStates: ['ok', 'offline'],
          vmStates: ['unknown', 'running'],
        },
      ]);
      // The VM detail still answers with the disks last seen.
      expect((await service.vm(ADMIN, 'alpha', DB)).disks).toHaveLength(2);

      minute = 3;
      state.n2 = 'up';
      await service.refreshAll();
      expect(item('n2')).toMatchObject({
        state: 'online',
        alive: true,
        stateSince: '2026-05-01T12:03:00.000Z',
        lastSeenAt: '2026-05-01T12:03:00.000Z',
        stale: false,
      });
      expect(item('db-1')).toMatchObject({
        status: 'running',
        lastSeenAt: '2026-05-01T12:03:00.000Z',
        stale: false,
      });
      expect(service.statuses(ADMIN)[0]).toMatchObject({ health: 'online' });
    });

    it('lists a VM the cluster lists elsewhere only once: where it is now', async () => {
      const state = { n2: 'up' as 'up' | 'frozen' | 'gone' };
      const c = cluster(state);
      let moved = false;
      const { service } = setup({
        remotes: ['alpha'],
        listNodes: c.listNodes,
        listVms: async () =>
          moved
            ? {
                vms: [
                  vm(WEB, 'web-1', 'running', '', { nodeId: 'n1' }),
                  vm(DB, 'db-1', 'running', '', { nodeId: 'n1' }),
                ],
                unreachableNodes: {},
              }
            : c.listVms(),
      });
      await service.refreshAll();
      state.n2 = 'gone';
      moved = true;
      await service.refreshAll();
      const vms = service.list(ADMIN, query({ type: 'vm' })).items;
      expect(vms.map((v) => [v.name, v.status, v.type === 'vm' ? v.node : ''])).toEqual([
        ['db-1', 'running', 'n1'],
        ['web-1', 'running', 'n1'],
      ]);
    });

    it('remembers a down node across a restart (known_nodes), and forgets it only when asked and only when it does not answer', async () => {
      const state = { n2: 'up' as 'up' | 'frozen' | 'gone' };
      const knownRows = new Map<string, KnownNode>();
      const first = setup({ remotes: ['alpha'], knownRows, ...cluster(state) });
      await first.service.refreshAll();
      state.n2 = 'gone';
      await first.service.refreshAll();
      await vi.waitFor(() => expect(knownRows.get('alpha/n2')?.state).toBe('down'));

      // A new manager: the registry no longer lists n2, yet it and db-1 are there from the first refresh.
      const second = setup({ remotes: ['alpha'], knownRows, ...cluster(state) });
      await second.service.refreshAll();
      const names = () =>
        second.service.list(ADMIN, query()).items.map((i) => `${i.name}:${i.status}`);
      expect(names()).toEqual(['n1:ok', 'n2:offline', 'db-1:unknown', 'web-1:running']);

      await expect(second.service.forgetNode('alpha', 'n1')).rejects.toMatchObject({
        code: ErrorCode.Conflict,
      });
      await expect(second.service.forgetNode('alpha', 'n9')).rejects.toMatchObject({
        code: ErrorCode.NotFound,
      });
      await second.service.forgetNode('alpha', 'n2');
      expect(names()).toEqual(['n1:ok', 'web-1:running']);
      expect(knownRows.has('alpha/n2')).toBe(false);
      await second.service.refreshAll();
      expect(names()).toEqual(['n1:ok', 'web-1:running']);
    });

    it('keeps a forgotten node forgotten while the registry still lists it without a live lease, and shows it again once it answers', async () => {
      let n2: 'up' | 'dead' = 'up';
      const { service } = setup({
        remotes: ['alpha'],
        listNodes: async () => ({ clusterId: 'c', nodes: [node('n1'), node('n2', n2 === 'up')] }),
        listVms: async () => ({
          vms: [
            vm(WEB, 'web-1', 'running', '', { nodeId: 'n1' }),
            ...(n2 === 'up' ? [vm(DB, 'db-1', 'running', '', { nodeId: 'n2' })] : []),
          ],
          unreachableNodes: {},
        }),
      });
      const names = () => service.list(ADMIN, query()).items.map((i) => `${i.name}:${i.status}`);
      await service.refreshAll();
      n2 = 'dead';
      await service.refreshAll();
      await service.forgetNode('alpha', 'n2');
      await service.refreshAll();
      expect(names()).toEqual(['n1:ok', 'web-1:running']);
      n2 = 'up';
      await service.refreshAll();
      expect(names()).toEqual(['n1:ok', 'n2:ok', 'db-1:running', 'web-1:running']);
    });
  });
});
