import { createCa, issueCertificate, splitPemBundle, type KeyPairPem } from '@debvisor/pki';
import { strictMock } from '@debvisor/testing/strict-mock';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ClockRepository } from '../common/clock.repository';
import type { ManagerConfig } from '../config/manager-config';
import type { MetricsService } from '../health/metrics.service';
import type { SchedulerService } from '../scheduler/scheduler.service';
import { LiveClientCertificate } from './client-certificate';
import { ClientCertificateService } from './client-certificate.service';
import type { ManagerIdentity, StateDirRepository } from './state-dir.repository';

const HOUR_MS = 3600_000;
let ca: KeyPairPem;

beforeAll(async () => {
  ca = await createCa('test manager client CA');
});

function leafOf(pem: string): X509Certificate {
  return new X509Certificate(splitPemBundle(pem)[0]);
}

async function setUp(options: {
  validDays?: number;
  notBefore?: Date;
  notAfter?: Date;
  now?: Date;
  jitter?: number;
  readClientCa?: () => KeyPairPem;
}) {
  const initial = await issueCertificate(ca, {
    commonName: 'manager:test-host',
    organizationalUnit: 'debvisor-manager',
    usage: 'client',
    validDays: options.validDays,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
  });
  const client = new LiveClientCertificate(initial, ca.certPem, '/state/pki/client-ca.crt');
  const written: KeyPairPem[] = [];
  const expiries: Date[] = [];
  const files = strictMock<StateDirRepository>('StateDirRepository', {
    readClientCa: options.readClientCa ?? (() => ca),
    writeClientCertificate: (pair) => void written.push(pair),
  });
  const config = { certificates: { clientLifetimeSeconds: 86_400 } } as ManagerConfig;
  const now = options.now ?? new Date();
  const service = new ClientCertificateService(
    config,
    { client } as unknown as ManagerIdentity,
    files,
    strictMock<ClockRepository>('ClockRepository', { now: () => now }),
    {
      rpc: { setCertificateExpiry: (_cert: string, at: Date) => void expiries.push(at) },
    } as unknown as MetricsService,
    strictMock<SchedulerService>('SchedulerService'),
    () => options.jitter ?? 0.5,
  );
  return { service, client, initial, written, expiries };
}

describe('ClientCertificateService', () => {
  it('renews at 70 % to 90 % of the lifetime, the jitter drawn once per certificate', async () => {
    const notBefore = new Date('2026-12-07T00:00:00Z');
    const notAfter = new Date(notBefore.getTime() + 24 * HOUR_MS);
    for (const [jitter, hours] of [
      [0, 16.8],
      [0.5, 19.2],
      [0.999999, 21.6],
    ]) {
      const { service } = await setUp({ notBefore, notAfter, now: notBefore, jitter });
      const due = service.dueAt();
      expect((due.getTime() - notBefore.getTime()) / HOUR_MS).toBeCloseTo(hours, 3);
      expect(service.nextRunAt(notBefore)).toEqual(due);
    }
  });

  it('replaces a long-lived certificate at start: a new key, the same subject, the configured lifetime', async () => {
    const { service, client, initial, written, expiries } = await setUp({ validDays: 825 });
    await service.replaceUnfit();
    const leaf = client.leaf;
    expect(leaf.serialNumber).not.toBe(leafOf(initial.certPem).serialNumber);
    expect(leaf.subject).toBe(leafOf(initial.certPem).subject);
    expect(client.keyPem).not.toBe(initial.keyPem);
    expect(leaf.checkPrivateKey(createPrivateKey(client.keyPem))).toBe(true);
    expect(leaf.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    const lifetimeMs = Date.parse(leaf.validTo) - Date.now();
    expect(lifetimeMs).toBeGreaterThan(23 * HOUR_MS);
    expect(lifetimeMs).toBeLessThanOrEqual(24 * HOUR_MS);
    expect(leaf.keyUsage ?? []).toContain('1.3.6.1.5.5.7.3.2'); // clientAuth kept
    expect(written).toEqual([{ certPem: client.certPem, keyPem: client.keyPem }]);
    expect(expiries.at(-1)).toEqual(new Date(leaf.validTo));
  });

  it('keeps a certificate of the configured lifetime at start', async () => {
    const { service, client, initial, written } = await setUp({ validDays: 1 });
    await service.replaceUnfit();
    expect(client.certPem).toBe(initial.certPem);
    expect(written).toEqual([]);
  });

  it('replaces an expired certificate at start', async () => {
    const { service, client, initial } = await setUp({
      notBefore: new Date(Date.now() - 48 * HOUR_MS),
      notAfter: new Date(Date.now() - 24 * HOUR_MS),
    });
    await service.replaceUnfit();
    expect(client.certPem).not.toBe(initial.certPem);
    expect(Date.parse(client.leaf.validTo)).toBeGreaterThan(Date.now());
  });

  it('tells listeners of the switch, and backs off after failures (1 s doubling) until a renewal succeeds', async () => {
    let failing = true;
    const { service, client } = await setUp({
      validDays: 1,
      readClientCa: () => {
        if (failing) throw new Error('EACCES: client-ca.key');
        return ca;
      },
    });
    const now = new Date();
    await expect(service.renewScheduled()).rejects.toThrow(/1 in a row/);
    expect(service.nextRunAt(now).getTime() - now.getTime()).toBe(1000);
    await expect(service.renewScheduled()).rejects.toThrow(/2 in a row/);
    expect(service.nextRunAt(now).getTime() - now.getTime()).toBe(2000);
    let switched = 0;
    client.onChange(() => switched++);
    failing = false;
    await service.renewScheduled();
    expect(switched).toBe(1);
    expect(service.nextRunAt(now)).toEqual(service.dueAt());
  });
});
