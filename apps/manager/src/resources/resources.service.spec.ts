import type { ListNodesResponse__Output, ListVmsResponse__Output, NodeEntry__Output, Vm__Output } from '@debvisor/proto';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it, vi } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { AgentClientRepository } from '../agents/agent-client.repository';
import type { AgentConnection } from '../agents/agent-connection';
import { AgentError } from '../agents/agent-error';
import { AccessPolicy } from '../auth/access-policy.service';
import { testCaller } from '../auth/test-caller';
import type { Caller } from '../auth/caller';
import type { ClockRepository } from '../common/clock.repository';
import { ErrorCode } from '../common/error-code';
import type { ManagerConfig } from '../config/manager-config';
import type { MetricsService } from '../health/metrics.service';
import { RemoteEvents } from '../remotes/remote-events';
import type { RemotesService } from '../remotes/remotes.service';
import { ResourcesService } from './resources.service';
import { currentTraceId, runWithTraceId } from '../common/trace-context';

const ADMIN: Caller = testCaller([{ path: '/', role: 'Admin' }]);

function node(id: string, alive = true): NodeEntry__Output {
  return {
    info: {
      nodeId: id, hostname: id, fqdn: `${id}.example`, addresses: [], agentEndpoint: `${id}:9443`, cpuModel: 'x', cpuFlags: [], cpuCount: 8,
      memoryBytes: '17179869184', hugepages: null, versions: {}, hypervisorDriver: 'sim', storageDriver: 'sim', bridges: [],
    },
    status: {
      heartbeatAt: '2026-05-01T12:00:00Z', cpuUsage: 0.25, memoryUsedBytes: '1073741824', memoryTotalBytes: '17179869184', vmCount: 1, vmsRunning: 1,
      drivers: [], health: 'ok',
    },
    alive,
    registeredAt: '2026-05-01T11:00:00Z',
  };
}

function vm(uuid: string, name: string, state: string, tenant = ''): Vm__Output {
  return {
    spec: { uuid, name, vcpus: 2, memoryBytes: '2147483648', disks: [], nics: [], cpuModel: 'host-model', hugepages: false, tenant, labels: { env: 'test' } },
    runtime: { state, nodeId: 'n1', cpuUsage: 0.1, memoryUsedBytes: '1000', uptimeSeconds: '60', stateChangedAt: '2026-05-01T11:59:00Z', lockedBy: '' },
  };
}

interface Setup {
  remotes: string[];
  listNodes: (connection: AgentConnection) => Promise<ListNodesResponse__Output>;
  listVms: (connection: AgentConnection) => Promise<ListVmsResponse__Output>;
  getVm?: (connection: AgentConnection, uuid: string) => Promise<Vm__Output>;
  timeoutMs?: number;
  now?: () => Date;
}

function setup(s: Setup) {
  const events = new RemoteEvents();
  const remotes = strictMock<RemotesService>('RemotesService', {
    listIds: async () => s.remotes,
    get: async (id: string) => ({ id }) as never,
    connectionFor: async (id: string) => ({ remoteId: id, endpoints: [`${id}:9443`], caCertPem: 'ca', apiKey: 'k' }),
  });
  const agents = strictMock<AgentClientRepository>('AgentClientRepository', { listNodes: s.listNodes, listVms: s.listVms, ...(s.getVm ? { getVm: s.getVm } : {}) });
  const metrics = strictMock<MetricsService>('MetricsService', { observeRefresh: () => undefined, publishRemotes: () => undefined });
  const logger = strictMock<PinoLogger>('PinoLogger', { setContext: () => undefined, warn: () => undefined, error: () => undefined });
  const config = { remoteTimeoutMs: s.timeoutMs ?? 1000, pollIntervalSeconds: 60 } as ManagerConfig;
  const auth = new AccessPolicy();
  const clock = strictMock<ClockRepository>('ClockRepository', { now: s.now ?? (() => new Date('2026-05-01T12:00:00Z')) });
  const service = new ResourcesService(config, remotes, agents, events, auth, clock, metrics, logger);
  service.onModuleInit();
  return { service, events, agents, metrics };
}

const healthy = {
  listNodes: async () => ({ clusterId: 'c', nodes: [node('n1'), node('n2', false)] }),
  listVms: async () => ({ vms: [vm('11111111-1111-4111-8111-111111111111', 'web-1', 'running', 'blue'), vm('22222222-2222-4222-8222-222222222222', 'db-1', 'stopped')], unreachableNodes: {} }),
};

describe('ResourcesService', () => {
  it('keeps answering about a healthy remote while another is unreachable, with the error and since', async () => {
    const { service } = setup({
      remotes: ['alpha', 'beta'],
      listNodes: async (c) => {
        if (c.remoteId === 'beta') throw new AgentError(ErrorCode.RemoteUnreachable, 'beta:9443 is unreachable: connection refused', 'beta:9443');
        return healthy.listNodes();
      },
      listVms: healthy.listVms,
    });
    await service.refreshAll();
    const answer = service.list(ADMIN, {});
    expect(answer.remotes).toEqual([
      expect.objectContaining({ remote: 'alpha', status: 'online', nodes: { total: 2, alive: 1 }, vms: { total: 2, running: 1 }, error: null, since: null }),
      expect.objectContaining({ remote: 'beta', status: 'unreachable', lastRefreshAt: null, since: '2026-05-01T12:00:00.000Z', error: { code: 'remote_unreachable', message: 'beta:9443 is unreachable: connection refused' } }),
    ]);
    expect(answer.items.map((i) => `${i.remote}/${i.type}/${i.name}`)).toEqual(['alpha/node/n1', 'alpha/node/n2', 'alpha/vm/web-1', 'alpha/vm/db-1']);
    expect(answer.items.find((i) => i.name === 'n2')).toMatchObject({ status: 'offline', alive: false });
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
    expect(metrics.publishRemotes).toHaveBeenLastCalledWith([{ remote: 'alpha', status: 'online', nodeStates: ['ok', 'offline'], vmStates: ['running', 'stopped'] }]);
  });

  it('never waits for a remote when answering: list() reads the cache synchronously', async () => {
    const { service } = setup({ remotes: ['slow'], listNodes: () => new Promise(() => undefined), listVms: () => new Promise(() => undefined) });
    void service.refreshAll();
    const answer = service.list(ADMIN, {});
    expect(answer).not.toBeInstanceOf(Promise);
    await vi.waitFor(() => expect(service.list(ADMIN, {}).remotes).toEqual([expect.objectContaining({ remote: 'slow', status: 'pending' })]));
  });

  it('returns from an on-demand refresh after the remote timeout while the remote hangs', async () => {
    const { service } = setup({ remotes: ['slow'], timeoutMs: 50, listNodes: () => new Promise(() => undefined), listVms: () => new Promise(() => undefined) });
    const started = Date.now();
    const answer = await service.refreshNow(ADMIN);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(answer.remotes).toEqual([expect.objectContaining({ remote: 'slow', status: 'pending' })]);
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
    const answer = service.list(ADMIN, {});
    expect(answer.remotes[0]).toMatchObject({ status: 'unreachable', since: '2026-05-01T12:01:00.000Z', lastRefreshAt: '2026-05-01T12:00:00.000Z' });
    expect(answer.items.every((i) => i.stale)).toBe(true);
    up = true;
    await service.refreshAll();
    expect(service.list(ADMIN, {}).remotes[0]).toMatchObject({ status: 'online', since: null, error: null });
  });

  it('shares one refresh between concurrent requests for the same remote', async () => {
    const listNodes = vi.fn(healthy.listNodes);
    const { service } = setup({ remotes: ['alpha'], listNodes, listVms: healthy.listVms });
    await Promise.all([service.refreshRemote('alpha'), service.refreshRemote('alpha'), service.refreshRemote('alpha')]);
    expect(listNodes).toHaveBeenCalledTimes(1);
  });

  it('filters by remote, type, status, name and tenant', async () => {
    const { service } = setup({ remotes: ['alpha', 'beta'], ...healthy });
    await service.refreshAll();
    const names = (query: Parameters<ResourcesService['list']>[1]) => service.list(ADMIN, query).items.map((i) => `${i.remote}/${i.name}`);
    expect(names({ remote: 'beta', type: 'vm' })).toEqual(['beta/web-1', 'beta/db-1']);
    expect(names({ type: 'node', status: 'offline' })).toEqual(['alpha/n2', 'beta/n2']);
    expect(names({ name: 'WEB' })).toEqual(['alpha/web-1', 'beta/web-1']);
    expect(names({ tenant: 'blue', remote: 'alpha' })).toEqual(['alpha/web-1']);
    expect(service.list(ADMIN, { remote: 'gamma' }).remotes).toEqual([]);
  });

  it('shows a scoped caller only the remotes it may see', async () => {
    const { service } = setup({ remotes: ['alpha', 'beta'], ...healthy });
    await service.refreshAll();
    const scoped: Caller = testCaller([{ path: '/remotes/beta', role: 'Audit' }]);
    expect(service.list(scoped, {}).remotes.map((r) => r.remote)).toEqual(['beta']);
  });

  it('drops a removed remote from the cache at once', async () => {
    const { service, events } = setup({ remotes: ['alpha'], ...healthy });
    await service.refreshAll();
    events.emit({ type: 'removed', remoteId: 'alpha' });
    expect(service.list(ADMIN, {}).remotes).toEqual([]);
  });

  it('replaces one VM in the cache after an action', async () => {
    const { service } = setup({ remotes: ['alpha'], ...healthy, getVm: async (_c, uuid) => vm(uuid, 'web-1', 'stopped', 'blue') });
    await service.refreshAll();
    await service.refreshVm('alpha', '11111111-1111-4111-8111-111111111111');
    expect((await service.vm('alpha', '11111111-1111-4111-8111-111111111111')).status).toBe('stopped');
  });
});
