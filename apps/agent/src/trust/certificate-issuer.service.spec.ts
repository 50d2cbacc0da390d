import { createCa, createCsr, crossCertify, issueCertificate, splitPemBundle } from '@debvisor/pki';
import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Logger } from '../shared/logger';
import { CertificateIssuer, type CertificateIssuerDeps } from './certificate-issuer.service';

const logger = strictMock<Logger>('Logger', { info: () => undefined, error: () => undefined });

describe('CertificateIssuer', () => {
  let ca: Awaited<ReturnType<typeof createCa>>;
  let current: string;

  beforeAll(async () => {
    ca = await createCa('cluster CA');
    current = (
      await issueCertificate(ca, {
        commonName: 'agent:node-2',
        organizationalUnit: 'debvisor-agent',
        usage: 'both',
      })
    ).certPem;
  });

  const issuer = (over: Partial<CertificateIssuerDeps> = {}) =>
    new CertificateIssuer({
      nodeId: 'node-1',
      files: { read: async () => ca },
      lifetimeMs: 24 * 3_600_000,
      tls: {
        clusterCas: [new X509Certificate(ca.certPem)],
        clusterCaPem: ca.certPem,
      },
      revoked: { isRevoked: () => false },
      clock: fakeClock(new Date()),
      logger,
      ...over,
    });

  const refusal = (promise: Promise<unknown>) =>
    promise.then(
      () => {
        throw new Error('expected a refusal');
      },
      (error: AgentError) => error,
    );

  it('signs a renewal for the lifetime, with the caller identity and the trusted CAs', async () => {
    const { csrPem } = await createCsr('agent:someone-else');
    const answer = await issuer().renew('node-2', current, csrPem);
    const leaf = new X509Certificate(splitPemBundle(answer.certChainPem)[0]);
    expect(leaf.subject).toContain('CN=agent:node-2');
    expect(Date.parse(leaf.validTo) - Date.now()).toBeGreaterThan(23 * 3_600_000);
    expect(answer.trustedCasPem).toBe(ca.certPem);
  });

  it('refuses on a node without the CA key, for a revoked node, and a CSR that is none', async () => {
    const { csrPem } = await createCsr('agent:node-2');
    expect(
      (await refusal(issuer({ files: undefined }).renew('node-2', current, csrPem))).code,
    ).toBe(ErrorCode.FailedPrecondition);
    const revoked = issuer({ revoked: { isRevoked: (node) => node === 'node-2' } });
    expect((await refusal(revoked.renew('node-2', current, csrPem))).code).toBe(
      ErrorCode.PermissionDenied,
    );
    const garbage = await refusal(issuer().renew('node-2', current, 'not a csr'));
    expect(garbage.code).toBe(ErrorCode.InvalidArgument);
  });

  it('signs with a new CA only while the cluster trusts it (its cross certificate during a rotation)', async () => {
    const next = await createCa('next CA');
    const cross = await crossCertify(ca, next.certPem);
    const { csrPem } = await createCsr('agent:node-2');
    const files = { read: async () => ({ certPem: cross, keyPem: next.keyPem }) };
    const untrusted = await refusal(issuer({ files }).renew('node-2', current, csrPem));
    expect(untrusted.code).toBe(ErrorCode.FailedPrecondition);
    const during = issuer({
      files,
      tls: {
        clusterCas: [new X509Certificate(ca.certPem), new X509Certificate(next.certPem)],
        clusterCaPem: ca.certPem + next.certPem,
      },
    });
    const chain = splitPemBundle((await during.renew('node-2', current, csrPem)).certChainPem);
    const leaf = new X509Certificate(chain[0]);
    expect(leaf.verify(new X509Certificate(next.certPem).publicKey)).toBe(true);
    // The chain ends in the cross certificate, which clients of the old CA can verify.
    expect(new X509Certificate(chain[1]).verify(new X509Certificate(ca.certPem).publicKey)).toBe(
      true,
    );
  });
});
