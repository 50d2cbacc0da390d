import { strictMock } from '@debvisor/testing/strict-mock';
import type { Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import type { DriverHealth, HealthStatus } from '../drivers/hypervisor.driver';
import type { CephHealth } from '../drivers/storage.driver';
import { HealthMonitor, type HealthMetrics } from './health-monitor.service';
import { ServingStatusBoard } from './serving-status';

const driver = (name: string, status: HealthStatus): DriverHealth => ({
  name,
  status,
  message: '',
});

function setup(state: {
  etcd: boolean;
  hypervisor: HealthStatus;
  storage: HealthStatus;
  ceph?: CephHealth;
}) {
  const board = new ServingStatusBoard();
  const metrics = strictMock<HealthMetrics>('HealthMetrics', {
    setServiceStatus: () => undefined,
    setDriverHealth: () => undefined,
    setCephHealth: () => undefined,
    backendConnectionError: () => undefined,
  });
  const logger = strictMock<Logger>('Logger', { info: () => undefined, warn: () => undefined });
  const monitor = new HealthMonitor(
    {
      etcdReachable: async () => state.etcd,
      drivers: async () => ({
        hypervisor: driver('sim', state.hypervisor),
        storage: driver('sim-rbd', state.storage),
      }),
      cephHealth: async () => state.ceph ?? 'HEALTH_OK',
    },
    board,
    metrics,
    60_000,
    logger,
  );
  return { board, metrics, monitor, logger };
}

describe('HealthMonitor', () => {
  it('serves every service while etcd answers and no driver failed, a degraded driver included', async () => {
    const { board, metrics, monitor } = setup({
      etcd: true,
      hypervisor: 'degraded',
      storage: 'ok',
    });
    await monitor.evaluate();
    expect(Object.fromEntries(board.all())).toEqual({
      '': 'SERVING',
      'debvisor.v1.NodeService': 'SERVING',
      'debvisor.v1.VmService': 'SERVING',
      'debvisor.v1.StorageService': 'SERVING',
      'debvisor.v1.MigrationService': 'SERVING',
      'debvisor.v1.AccessService': 'SERVING',
    });
    expect(metrics.setServiceStatus).toHaveBeenCalledWith('debvisor.v1.VmService', true);
    expect(metrics.setDriverHealth).toHaveBeenCalledWith('sim', 'degraded');
    expect(metrics.setCephHealth).toHaveBeenCalledWith('HEALTH_OK');
    expect(metrics.backendConnectionError).not.toHaveBeenCalled();
  });

  it('stops serving everything when etcd does not answer (every call needs its API keys), counting the failure', async () => {
    const { board, metrics, monitor, logger } = setup({
      etcd: false,
      hypervisor: 'ok',
      storage: 'ok',
    });
    await monitor.evaluate();
    expect([...board.all().values()].every((status) => status === 'NOT_SERVING')).toBe(true);
    expect(metrics.backendConnectionError).toHaveBeenCalledWith('etcd');
    expect(metrics.setServiceStatus).toHaveBeenCalledWith('debvisor.v1.NodeService', false);
    expect(logger.warn).not.toHaveBeenCalled(); // NOT_SERVING from the start is no change
  });

  it('stops serving only the services that need a failed driver, and the server overall', async () => {
    const state = { etcd: true, hypervisor: 'ok' as HealthStatus, storage: 'ok' as HealthStatus };
    const { board, monitor, logger } = setup(state);
    await monitor.evaluate();
    state.storage = 'failed';
    await monitor.evaluate();
    expect(board.get('debvisor.v1.StorageService')).toBe('NOT_SERVING');
    expect(board.get('debvisor.v1.MigrationService')).toBe('NOT_SERVING');
    expect(board.get('debvisor.v1.VmService')).toBe('SERVING');
    expect(board.get('debvisor.v1.NodeService')).toBe('SERVING');
    expect(board.get('')).toBe('NOT_SERVING');
    expect(logger.warn).toHaveBeenCalledWith(
      expect.objectContaining({ reasons: ['the storage driver failed'] }),
      'not serving every service',
    );
  });

  it('tells watchers of every change and ends with NOT_SERVING when stopped', async () => {
    const state = { etcd: true, hypervisor: 'ok' as HealthStatus, storage: 'ok' as HealthStatus };
    const { board, monitor } = setup(state);
    const seen: string[] = [];
    let ended = false;
    board.watch('debvisor.v1.NodeService', (status) => seen.push(status));
    board.onShutdown(() => (ended = true));
    await monitor.start();
    state.etcd = false;
    await monitor.evaluate();
    state.etcd = true;
    await monitor.evaluate();
    await monitor.evaluate(); // no change, no message
    await monitor.stop();
    expect(seen).toEqual(['SERVING', 'NOT_SERVING', 'SERVING', 'NOT_SERVING']);
    expect(ended).toBe(true);
    state.etcd = true;
    await monitor.evaluate();
    expect(board.get('')).toBe('NOT_SERVING'); // stays down once stopped
  });

  it('reports Ceph as the storage driver sees it', async () => {
    const { metrics, monitor } = setup({
      etcd: true,
      hypervisor: 'ok',
      storage: 'degraded',
      ceph: 'HEALTH_WARN',
    });
    await monitor.evaluate();
    expect(metrics.setCephHealth).toHaveBeenCalledWith('HEALTH_WARN');
  });
});
