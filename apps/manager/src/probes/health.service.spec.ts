import { createCa, issueCertificate } from '@debvisor/pki';
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import { ErrorCode } from '../common/error-code';
import type { ManagerIdentity } from '../pki/state-dir.repository';
import type { ResourcesService } from '../resources/resources.service';
import type { HealthRepository } from './health.repository';
import { HealthService } from './health.service';
import { MetricsService } from '../health/metrics.service';

type Counts = { pending: number; online: number; unreachable: number };
const NONE: Counts = { pending: 0, online: 0, unreachable: 0 };

function service(
  database: boolean,
  polling: boolean,
  remotes: Counts = NONE,
  metrics = new MetricsService(),
) {
  return new HealthService(
    strictMock<HealthRepository>('HealthRepository', { databaseReachable: async () => database }),
    strictMock<ResourcesService>('ResourcesService', {
      isPolling: () => polling,
      remoteCounts: () => remotes,
    }),
    metrics,
    strictMock<ManagerIdentity>('ManagerIdentity'),
  );
}

describe('HealthService.readiness', () => {
  it('is ready when the database answers, the poller runs and no remote is configured', async () => {
    await expect(service(true, true).readiness()).resolves.toEqual({
      status: 'ready',
      checks: { database: 'ok', poller: 'ok', remotes: 'none configured' },
    });
  });

  it('is ready while at least one remote is reachable', async () => {
    await expect(
      service(true, true, { pending: 1, online: 1, unreachable: 3 }).readiness(),
    ).resolves.toMatchObject({ checks: { remotes: '1 of 5 reachable' } });
  });

  it('answers 503 when remotes are configured and none is reachable, or none answered yet', async () => {
    await expect(
      service(true, true, { pending: 0, online: 0, unreachable: 2 }).readiness(),
    ).rejects.toMatchObject({
      code: ErrorCode.NotReady,
      message: 'not ready: no remote is reachable (2 configured, all unreachable)',
    });
    await expect(
      service(true, true, { pending: 1, online: 0, unreachable: 1 }).readiness(),
    ).rejects.toMatchObject({
      message: 'not ready: no remote answered yet (1 of 2 not refreshed yet, 1 unreachable)',
    });
  });

  it('answers 503 naming every failing check, and counts the database as a backend connection error', async () => {
    const metrics = new MetricsService();
    await expect(service(false, false, NONE, metrics).readiness()).rejects.toMatchObject({
      code: ErrorCode.NotReady,
      message: 'not ready: the database does not answer; the resource poller is not running',
    });
    expect(await metrics.render()).toContain(
      'backend_connection_errors_total{backend_service="postgres"} 1',
    );
  });
});

describe('HealthService metrics', () => {
  it("exports the expiry of the manager's certificates and its readiness as rpc_service_status at every scrape", async () => {
    const ca = await createCa('test');
    const leaf = await issueCertificate(ca, {
      commonName: 'manager',
      usage: 'server',
      dnsNames: ['localhost'],
    });
    const identity = {
      server: { ...leaf, caPem: ca.certPem },
      client: { ...leaf, caPem: ca.certPem },
    } as unknown as ManagerIdentity;
    const metrics = new MetricsService();
    const remotes = { pending: 0, online: 0, unreachable: 1 };
    const health = new HealthService(
      strictMock<HealthRepository>('HealthRepository', { databaseReachable: async () => true }),
      strictMock<ResourcesService>('ResourcesService', {
        isPolling: () => true,
        remoteCounts: () => remotes,
      }),
      metrics,
      identity,
    );
    health.onModuleInit();
    const text = await metrics.render();
    const notAfter = Math.floor(Date.parse(new X509Certificate(leaf.certPem).validTo) / 1000);
    expect(text).toContain(
      `debvisor_certificate_expiry_timestamp_seconds{cert="https"} ${notAfter}`,
    );
    expect(text).toContain('debvisor_certificate_expiry_timestamp_seconds{cert="client-ca"}');
    expect(text).toContain('rpc_service_status{service="manager"} 0');
    remotes.online = 1;
    expect(await metrics.render()).toContain('rpc_service_status{service="manager"} 1');
  });
});
