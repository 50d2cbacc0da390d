import { ALL_PRIVILEGES } from '@debvisor/permissions';
import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import { AccessPolicy } from '../authz/access-policy.service';
import type { Caller } from '../authz/caller';
import { testCaller } from '../../test/test-caller';
import type { ClockRepository } from '../common/clock.repository';
import type { NodeFigures, RemoteOverview, VmCounts } from '../resources/resource-figures';
import type { RemoteStatus } from '../resources/resources.dto';
import type { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import type { ActiveTasks, DashboardRepository, TaskScope } from './dashboard.repository';
import { DashboardService, remoteAlerts, RUNNING_TASKS_SHOWN } from './dashboard.service';

const ADMIN: Caller = testCaller([{ path: '/', role: 'Admin' }]);
const GiB = 1024 ** 3;

const healthyNodes: NodeFigures = {
  decommissioned: 0,
  total: 3,
  alive: 3,
  degraded: 0,
  offline: 0,
  cores: 24,
  coresUsed: 6,
  memoryTotalBytes: 96 * GiB,
  memoryUsedBytes: 48 * GiB,
  offlineNames: [],
  degradedNames: [],
  failedNames: [],
  outages: [],
};
const someVms: VmCounts = { total: 10, running: 6, stopped: 3, other: 1, crashed: 0 };

function overview(
  remote: string,
  changes: {
    status?: Partial<RemoteStatus>;
    nodes?: Partial<NodeFigures>;
    vms?: Partial<VmCounts>;
  } = {},
): RemoteOverview {
  return {
    status: {
      remote,
      status: 'online',
      health: 'online',
      lastRefreshAt: '2026-05-01T12:00:00.000Z',
      nodes: { total: 3, alive: 3 },
      vms: { total: 10, running: 6 },
      unreachableNodes: {},
      error: null,
      since: null,
      privileges: ALL_PRIVILEGES,
      ...changes.status,
    },
    nodes: { ...healthyNodes, ...changes.nodes },
    vms: { ...someVms, ...changes.vms },
    history: [{ at: '2026-05-01T12:00:00.000Z', cpu: 0.25, memory: 0.5 }],
  };
}

function task(id: string, state: 'queued' | 'running', remoteId: string | null): TaskEntity {
  return {
    id,
    type: 'vm.migrate',
    state,
    remoteId,
    vmId: remoteId ? '11111111-1111-4111-8111-111111111111' : null,
    credentialId: null,
    owner: 'alice@local!ci',
    progress: state === 'running' ? 0.4 : 0,
    log: [],
    error: null,
    createdAt: new Date('2026-05-01T11:00:00Z'),
    startedAt: state === 'running' ? new Date('2026-05-01T11:00:01Z') : null,
    finishedAt: null,
    updatedAt: new Date('2026-05-01T11:00:02Z'),
  };
}

function setup(
  overviews: RemoteOverview[],
  active: ActiveTasks = { newest: [], perRemote: new Map() },
) {
  const resources = strictMock<ResourcesService>('ResourcesService', { overview: () => overviews });
  const repository = strictMock<DashboardRepository>('DashboardRepository', {
    activeTasks: async () => active,
  });
  const clock = strictMock<ClockRepository>('ClockRepository', {
    now: () => new Date('2026-05-01T12:00:30Z'),
  });
  return {
    service: new DashboardService(resources, repository, new AccessPolicy(), clock),
    repository,
  };
}

describe('remoteAlerts', () => {
  it('raises nothing for a healthy remote or one not refreshed yet', () => {
    expect(remoteAlerts(overview('a'))).toEqual([]);
    expect(
      remoteAlerts(
        overview('a', {
          status: { status: 'pending' },
          nodes: { offline: 2, offlineNames: ['x', 'y'] },
        }),
      ),
    ).toEqual([]);
  });

  it('says only that an unreachable remote is unreachable, since when and why', () => {
    const down = overview('a', {
      status: {
        status: 'unreachable',
        since: '2026-05-01T11:50:00.000Z',
        error: { code: 'remote_unreachable', message: 'a:9443 is unreachable: connection refused' },
      },
      nodes: { offline: 1, offlineNames: ['x'] },
      vms: { crashed: 2 },
    });
    expect(remoteAlerts(down)).toEqual([
      {
        severity: 'critical',
        message: 'unreachable: a:9443 is unreachable: connection refused',
        since: '2026-05-01T11:50:00.000Z',
      },
    ]);
  });

  it('names each node that does not answer (critical, since when, its unknown VMs), failed and degraded nodes, nodes whose VMs could not be listed, crashed VMs and memory over 90 %', () => {
    const troubled = overview('a', {
      status: { unreachableNodes: { 'node-3': 'deadline exceeded', n2: 'connection refused' } },
      nodes: {
        offline: 2,
        offlineNames: ['node-1', 'node-2'],
        outages: [
          {
            id: 'n1',
            name: 'node-1',
            state: 'down',
            since: '2026-05-01T11:58:00.000Z',
            unknownVms: 5,
          },
          {
            id: 'n2',
            name: 'node-2',
            state: 'unreachable',
            since: '2026-05-01T11:59:00.000Z',
            unknownVms: 1,
          },
        ],
        degraded: 2,
        degradedNames: ['node-4'],
        failedNames: ['node-5'],
        memoryTotalBytes: 100 * GiB,
        memoryUsedBytes: 93 * GiB,
      },
      vms: { crashed: 1 },
    });
    expect(remoteAlerts(troubled)).toEqual([
      {
        severity: 'critical',
        message:
          "node node-1 down (gone from the cluster's registry: stopped, or its lease expired); 5 VMs unknown",
        since: '2026-05-01T11:58:00.000Z',
      },
      {
        severity: 'critical',
        message:
          'node node-2 unreachable (its agent does not answer): connection refused; 1 VM unknown',
        since: '2026-05-01T11:59:00.000Z',
      },
      { severity: 'critical', message: '1 node failed: node-5', since: null },
      { severity: 'warning', message: '1 node degraded: node-4', since: null },
      {
        severity: 'warning',
        message: 'the VMs of 1 node could not be listed: node-3 (deadline exceeded)',
        since: null,
      },
      { severity: 'warning', message: '1 VM crashed', since: null },
      { severity: 'warning', message: 'memory 93% used', since: null },
    ]);
    expect(remoteAlerts(overview('a', { nodes: { memoryUsedBytes: 0.9 * 96 * GiB } }))).toEqual([]);
  });
});

describe('DashboardService', () => {
  it('sums the remotes up, counting cores in use over alive nodes', async () => {
    const { service } = setup([
      overview('alpha'),
      overview('beta', {
        nodes: {
          total: 2,
          alive: 1,
          offline: 1,
          offlineNames: ['b2'],
          cores: 8,
          coresUsed: 4,
          memoryTotalBytes: 32 * GiB,
          memoryUsedBytes: 8 * GiB,
        },
        vms: { total: 4, running: 1, stopped: 2, other: 1 },
      }),
      overview('gamma', {
        status: { status: 'pending', lastRefreshAt: null },
        nodes: {
          total: 0,
          alive: 0,
          cores: 0,
          coresUsed: 0,
          memoryTotalBytes: 0,
          memoryUsedBytes: 0,
        },
        vms: { total: 0, running: 0, stopped: 0, other: 0 },
      }),
    ]);
    const dashboard = await service.get(ADMIN);
    expect(dashboard.generatedAt).toBe('2026-05-01T12:00:30.000Z');
    expect(dashboard.totals).toEqual({
      remotes: { total: 3, online: 2, unreachable: 0, pending: 1 },
      nodes: { total: 5, alive: 4, degraded: 0, offline: 1 },
      vms: { total: 14, running: 7, stopped: 5, other: 2 },
      cpu: { cores: 32, used: 10 },
      memory: { totalBytes: 128 * GiB, usedBytes: 56 * GiB },
      tasksRunning: 0,
    });
    expect(dashboard.remotes.find((r) => r.remote === 'alpha')).toEqual({
      remote: 'alpha',
      status: 'online',
      since: null,
      lastRefreshAt: '2026-05-01T12:00:00.000Z',
      error: null,
      nodes: { total: 3, alive: 3, degraded: 0, offline: 0 },
      vms: { total: 10, running: 6, stopped: 3, other: 1 },
      cpu: { cores: 24, usage: 0.25 },
      memory: { totalBytes: 96 * GiB, usedBytes: 48 * GiB },
      history: [{ at: '2026-05-01T12:00:00.000Z', cpu: 0.25, memory: 0.5 }],
      alerts: [],
      tasksRunning: 0,
      privileges: ALL_PRIVILEGES,
    });
    expect(dashboard.remotes.find((r) => r.remote === 'gamma')?.cpu).toEqual({
      cores: 0,
      usage: 0,
    });
  });

  it('lists unreachable remotes first, then those with alerts, then the rest by name; critical alerts first', async () => {
    const { service } = setup([
      overview('alpha'),
      overview('bravo', { vms: { crashed: 1 } }),
      overview('charlie', {
        status: {
          status: 'unreachable',
          since: '2026-05-01T11:00:00.000Z',
          error: { code: 'remote_unreachable', message: 'down' },
        },
      }),
      overview('delta', {
        nodes: {
          offline: 1,
          offlineNames: ['d1'],
          outages: [
            {
              id: 'd1',
              name: 'd1',
              state: 'down',
              since: '2026-05-01T11:30:00.000Z',
              unknownVms: 0,
            },
          ],
        },
      }),
      overview('echo'),
    ]);
    const dashboard = await service.get(ADMIN);
    expect(dashboard.remotes.map((r) => r.remote)).toEqual([
      'charlie',
      'bravo',
      'delta',
      'alpha',
      'echo',
    ]);
    expect(dashboard.alerts).toEqual([
      {
        remote: 'charlie',
        severity: 'critical',
        message: 'unreachable: down',
        since: '2026-05-01T11:00:00.000Z',
      },
      {
        remote: 'delta',
        severity: 'critical',
        message:
          "node d1 down (gone from the cluster's registry: stopped, or its lease expired); 0 VMs unknown",
        since: '2026-05-01T11:30:00.000Z',
      },
      { remote: 'bravo', severity: 'warning', message: '1 VM crashed', since: null },
    ]);
  });

  it('counts the tasks in progress per remote from one grouped answer and lists the newest', async () => {
    const active: ActiveTasks = {
      newest: [
        task('t3', 'queued', 'alpha'),
        task('t2', 'running', 'alpha'),
        task('t1', 'running', null),
      ],
      perRemote: new Map<string | null, number>([
        ['alpha', 2],
        [null, 1],
        ['zulu', 4],
      ]),
    };
    const { service, repository } = setup([overview('alpha'), overview('beta')], active);
    const dashboard = await service.get(ADMIN);
    expect(repository.activeTasks).toHaveBeenCalledTimes(1);
    expect(repository.activeTasks).toHaveBeenCalledWith(
      { remotes: 'all', vms: undefined },
      RUNNING_TASKS_SHOWN,
    );
    expect(dashboard.remotes.map((r) => [r.remote, r.tasksRunning])).toEqual([
      ['alpha', 2],
      ['beta', 0],
    ]);
    // Every task the caller may see, also those on no remote or on remotes it does not see.
    expect(dashboard.totals.tasksRunning).toBe(7);
    expect(dashboard.runningTasks).toEqual([
      {
        id: 't3',
        type: 'vm.migrate',
        state: 'queued',
        remote: 'alpha',
        vm: '11111111-1111-4111-8111-111111111111',
        progress: 0,
        startedAt: null,
        owner: 'alice@local!ci',
      },
      {
        id: 't2',
        type: 'vm.migrate',
        state: 'running',
        remote: 'alpha',
        vm: '11111111-1111-4111-8111-111111111111',
        progress: 0.4,
        startedAt: '2026-05-01T11:00:01.000Z',
        owner: 'alice@local!ci',
      },
      {
        id: 't1',
        type: 'vm.migrate',
        state: 'running',
        remote: null,
        vm: null,
        progress: 0.4,
        startedAt: '2026-05-01T11:00:01.000Z',
        owner: 'alice@local!ci',
      },
    ]);
  });

  it('asks for the tasks of the remotes where the caller holds task.audit, and of a tenant its own VMs', async () => {
    const { service, repository } = setup([]);
    const scoped = testCaller([{ path: '/remotes/alpha', role: 'Audit' }]);
    await service.get(scoped);
    const tenant = testCaller([{ path: '/', role: 'Manage', tenantGroup: 'tenant-a' }], {
      tenantVms: new Map([['tenant-a', new Set(['vm-a'])]]),
    });
    await service.get(tenant);
    const scopes = repository.activeTasks.mock.calls.map(([scope]) => scope as TaskScope);
    expect(scopes[0]).toEqual({ remotes: new Set(['alpha']), vms: new Set() });
    expect(scopes[1]).toEqual({ remotes: new Set(), vms: new Set(['vm-a']) });
  });
});
