import { samplesOf, sampleSum } from '@debvisor/testing/prometheus';
import { describe, expect, it } from 'vitest';
import { MetricsService } from './metrics.service';

const series = (text: string, name: string, labels: Record<string, string> = {}) =>
  Object.fromEntries(
    samplesOf(text, name, labels).map((s) => [Object.values(s.labels).join('/'), s.value]),
  );

describe('MetricsService: the federation', () => {
  it('exports nodes and VMs by state for each reachable remote, every known state included, anything else as unknown', async () => {
    const metrics = new MetricsService();
    metrics.publishRemotes([
      {
        remote: 'dc-east',
        status: 'online',
        nodeStates: ['ok', 'ok', 'degraded', 'unreachable', 'offline'],
        vmStates: ['running', 'running', 'stopped', 'exploded'],
      },
    ]);
    const text = await metrics.render();
    expect(series(text, 'debvisor_nodes')).toEqual({
      'dc-east/ok': 2,
      'dc-east/degraded': 1,
      'dc-east/failed': 0,
      'dc-east/unreachable': 1,
      'dc-east/offline': 1,
      'dc-east/unknown': 0,
    });
    expect(series(text, 'debvisor_vms', { remote: 'dc-east' })).toMatchObject({
      'dc-east/running': 2,
      'dc-east/stopped': 1,
      'dc-east/crashed': 0,
      'dc-east/unknown': 1,
    });
    expect(text).not.toContain('exploded');
    expect(series(text, 'debvisor_remote_up')).toEqual({ 'dc-east': 1 });
  });

  it('marks an unreachable remote down and drops its stale nodes and VMs; a pending or removed remote has no series', async () => {
    const metrics = new MetricsService();
    metrics.publishRemotes([
      { remote: 'dc-east', status: 'online', nodeStates: ['ok'], vmStates: ['running'] },
      { remote: 'dc-west', status: 'online', nodeStates: ['ok'], vmStates: ['running'] },
    ]);
    metrics.publishRemotes([
      { remote: 'dc-east', status: 'unreachable', nodeStates: ['ok'], vmStates: ['running'] },
      { remote: 'dc-north', status: 'pending', nodeStates: [], vmStates: [] },
    ]);
    const text = await metrics.render();
    expect(series(text, 'debvisor_remote_up')).toEqual({ 'dc-east': 0 });
    expect(samplesOf(text, 'debvisor_nodes')).toEqual([]);
    expect(samplesOf(text, 'debvisor_vms')).toEqual([]);
    expect(series(text, 'debvisor_remotes')).toEqual({ pending: 1, online: 0, unreachable: 1 });
    expect(text).not.toContain('dc-west');
  });

  it('starts task counters of a registered type and migration counters at zero, so that the first failure shows in increase()', async () => {
    const metrics = new MetricsService();
    metrics.registerTaskType('vm.start');
    let text = await metrics.render();
    expect(series(text, 'debvisor_tasks_total')).toEqual({
      'vm.start/succeeded': 0,
      'vm.start/failed': 0,
      'vm.start/cancelled': 0,
      'vm.start/interrupted': 0,
    });
    expect(series(text, 'debvisor_migrations_total')).toEqual({
      succeeded: 0,
      failed: 0,
      cancelled: 0,
    });
    metrics.observeTask('vm.start', 'failed', 2);
    metrics.observeMigration('failed', 30);
    text = await metrics.render();
    expect(sampleSum(text, 'debvisor_tasks_total', { type: 'vm.start', outcome: 'failed' })).toBe(
      1,
    );
    expect(
      sampleSum(text, 'debvisor_task_duration_seconds_count', {
        type: 'vm.start',
        outcome: 'failed',
      }),
    ).toBe(1);
    expect(sampleSum(text, 'debvisor_migration_duration_seconds_sum', { outcome: 'failed' })).toBe(
      30,
    );
  });

  it('labels HTTP requests with the route template and a bounded method', async () => {
    const metrics = new MetricsService();
    metrics.observeHttp('GET', '/api/v1/remotes/:remote', 404, 0.01);
    metrics.observeHttp('BREW', 'unmatched', 404, 0.01);
    const text = await metrics.render();
    expect(
      sampleSum(text, 'http_requests_total', {
        method: 'GET',
        route: '/api/v1/remotes/:remote',
        status: '404',
      }),
    ).toBe(1);
    expect(sampleSum(text, 'http_requests_total', { method: 'OTHER', route: 'unmatched' })).toBe(1);
  });
});
