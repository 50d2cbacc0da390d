import { describe, expect, it } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import { ErrorCode } from '../common/error-code';
import type { ResourcesService } from '../resources/resources.service';
import type { HealthRepository } from './health.repository';
import { HealthService } from './health.service';
import type { MetricsService } from './metrics.service';

function service(database: boolean, polling: boolean) {
  return new HealthService(
    strictMock<HealthRepository>('HealthRepository', { databaseReachable: async () => database }),
    strictMock<ResourcesService>('ResourcesService', { isPolling: () => polling }),
    strictMock<MetricsService>('MetricsService'),
  );
}

describe('HealthService.readiness', () => {
  it('is ready when the database answers and the poller runs', async () => {
    await expect(service(true, true).readiness()).resolves.toEqual({ status: 'ready', checks: { database: 'ok', poller: 'ok' } });
  });

  it('answers 503 naming every failing check', async () => {
    await expect(service(false, false).readiness()).rejects.toMatchObject({
      code: ErrorCode.NotReady,
      message: 'not ready: the database does not answer; the resource poller is not running',
    });
  });
});
