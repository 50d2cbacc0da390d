import { createCa, issueCertificate, type KeyPairPem } from '@debvisor/pki';
import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditService } from '../audit/audit.service';
import type { ClockRepository } from '../common/clock.repository';
import type { ManagerConfig } from '../config/manager-config';
import type { MetricsService } from '../health/metrics.service';
import type { ManagerIdentity } from '../pki/state-dir.repository';
import { AcmeError, type AcmeRepository, type RenewalWindow } from './acme.repository';
import type {
  AcmeState,
  CertificateStoreRepository,
  ServedCertificate,
} from './certificate-store.repository';
import { CertificatesService } from './certificates.service';
import type { HttpChallengeRepository } from './http-challenge.repository';
import type { HttpsEndpointRepository } from './https-endpoint.repository';
import type { Rfc2136Repository } from './rfc2136.repository';

const DAY = 86_400_000;
const T0 = new Date('2027-01-01T00:00:00Z');

describe('CertificatesService renewal', () => {
  let ca: KeyPairPem;
  let current: KeyPairPem;
  let next: KeyPairPem;

  beforeAll(async () => {
    ca = await createCa('unit test CA');
    const issue = (notBefore: Date) =>
      issueCertificate(ca, {
        commonName: 'manager.example.test',
        dnsNames: ['manager.example.test'],
        usage: 'server',
        notBefore,
        notAfter: new Date(notBefore.getTime() + 90 * DAY),
      });
    current = await issue(T0);
    next = await issue(new Date(T0.getTime() + 60 * DAY));
  });

  function setUp(options: { window?: RenewalWindow; order: () => Promise<KeyPairPem> }) {
    const clock = fakeClock(T0);
    let served: ServedCertificate = {
      source: 'acme',
      chainPem: current.certPem,
      keyPem: current.keyPem,
      installedAt: T0,
      acmeAccountId: 'account-1',
    };
    const acmeState: AcmeState = {
      accounts: [
        {
          id: 'account-1',
          name: 'ca',
          directoryUrl: 'https://ca.example.test/dir',
          accountUrl: 'https://ca.example.test/acct/1',
          keySealed: 'sealed-account-key',
          createdAt: T0.toISOString(),
        },
      ],
      settings: { accountId: 'account-1', domains: ['manager.example.test'], challenge: 'http-01' },
    };
    const swapped: string[] = [];
    const events: { action: string; outcome: string }[] = [];
    const expiries: Date[] = [];
    const store = strictMock<CertificateStoreRepository>('CertificateStoreRepository', {
      served: () => served,
      acme: () => acmeState,
      open: (sealed) => `opened:${sealed}`,
      saveServed: (value) => {
        served = value;
      },
    });
    const acme = strictMock<AcmeRepository>('AcmeRepository', {
      renewalWindow: async () => options.window,
      order: async () => {
        const issued = await options.order();
        return { chainPem: issued.certPem, keyPem: issued.keyPem };
      },
    });
    const endpoint = strictMock<HttpsEndpointRepository>('HttpsEndpointRepository', {
      swap: (chainPem) => void swapped.push(chainPem),
      current: () => ({ chainPem: served.chainPem, keyPem: served.keyPem }),
    });
    const service = new CertificatesService(
      { certificates: { renewCheckSeconds: 60 } } as ManagerConfig,
      {} as ManagerIdentity,
      store,
      endpoint,
      // HTTP-01 answers go here (a getter, which strictMock cannot stand in for).
      {
        port: 8080,
        add: () => undefined,
        remove: () => undefined,
      } as unknown as HttpChallengeRepository,
      acme,
      strictMock<Rfc2136Repository>('Rfc2136Repository'),
      strictMock<ClockRepository>('ClockRepository', { now: clock.now }),
      strictMock<AuditService>('AuditService', {
        systemEvent: async (event) => void events.push(event),
        note: () => undefined,
      }),
      {
        rpc: { setCertificateExpiry: (_cert: string, at: Date) => void expiries.push(at) },
      } as unknown as MetricsService,
    );
    return { service, clock, acme, swapped, events, expiries, served: () => served };
  }

  it('renews at two thirds of the lifetime when the CA offers no renewal information', async () => {
    const t = setUp({ order: async () => next });
    t.clock.advance(59 * DAY);
    await t.service.renewIfDue();
    expect(t.acme.order).not.toHaveBeenCalled();
    t.clock.advance(DAY + 1000);
    await t.service.renewIfDue();
    expect(t.acme.order).toHaveBeenCalledTimes(1);
    expect(t.swapped).toEqual([next.certPem]);
    expect(t.served().chainPem).toBe(next.certPem);
    expect(t.events).toEqual([
      expect.objectContaining({ action: 'system.certificate.renew', outcome: 'success' }),
    ]);
    expect(t.expiries.at(-1)).toEqual(new Date(T0.getTime() + 150 * DAY));
  });

  it("renews inside the CA's ARI window when it offers one", async () => {
    const window = {
      start: new Date(T0.getTime() + 10 * DAY),
      end: new Date(T0.getTime() + 11 * DAY),
    };
    const t = setUp({ window, order: async () => next });
    t.clock.advance(10 * DAY - 1000);
    await t.service.renewIfDue();
    expect(t.acme.order).not.toHaveBeenCalled();
    expect((await t.service.status()).renewal.basis).toBe('ari');
    t.clock.advance(DAY + 2000);
    await t.service.renewIfDue();
    expect(t.acme.order).toHaveBeenCalledTimes(1);
  });

  it('keeps the served certificate after a failed renewal and retries with back-off', async () => {
    const t = setUp({
      order: async () => {
        throw new AcmeError('the CA refused ordering the certificate: rate limited');
      },
    });
    t.clock.advance(61 * DAY);
    await t.service.renewIfDue();
    expect(t.acme.order).toHaveBeenCalledTimes(1);
    expect(t.swapped).toEqual([]);
    expect(t.served().chainPem).toBe(current.certPem);
    expect(t.events).toEqual([
      expect.objectContaining({ action: 'system.certificate.renew', outcome: 'failure' }),
    ]);
    const status = await t.service.status();
    expect(status.renewal).toMatchObject({
      failures: 1,
      lastError: expect.stringMatching(/rate limited/),
    });

    // One minute after the first failure, then two minutes after the second.
    t.clock.advance(59_000);
    await t.service.renewIfDue();
    expect(t.acme.order).toHaveBeenCalledTimes(1);
    t.clock.advance(2000);
    await t.service.renewIfDue();
    expect(t.acme.order).toHaveBeenCalledTimes(2);
    t.clock.advance(119_000);
    await t.service.renewIfDue();
    expect(t.acme.order).toHaveBeenCalledTimes(2);
    t.clock.advance(2000);
    await t.service.renewIfDue();
    expect(t.acme.order).toHaveBeenCalledTimes(3);
    expect(t.swapped).toEqual([]);
  });
});
