import { renewFromCsr, splitPemBundle } from '@debvisor/pki';
import type { RenewCertificateResponse } from '@debvisor/proto';
import { X509Certificate } from 'node:crypto';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { LiveTls } from './live-tls';
import type { RevokedNodes } from './revoked-nodes.service';
import type { IssuerFilesRepository } from './tls-files.repository';

export interface CertificateIssuerDeps {
  nodeId: string;
  /** The cluster CA's files on this node (tls.issuer); undefined: this node issues nothing. */
  files: Pick<IssuerFilesRepository, 'read'> | undefined;
  /** tls.certificateLifetimeSeconds, in milliseconds. */
  lifetimeMs: number;
  tls: Pick<LiveTls, 'clusterCas' | 'clusterCaPem'>;
  revoked: Pick<RevokedNodes, 'isRevoked'>;
  clock: Clock;
  logger: Logger;
}

/**
 * Signs agents' renewals on a node that holds the cluster CA key: the caller (authenticated by its
 * current certificate) sends a CSR, and gets a certificate for its own identity — subject and
 * names copied from the certificate it presented — for tls.certificateLifetimeSeconds.
 */
export class CertificateIssuer {
  constructor(private readonly deps: CertificateIssuerDeps) {}

  get issues(): boolean {
    return this.deps.files !== undefined;
  }

  async renew(
    callerNodeId: string,
    currentCertPem: string,
    csrPem: string,
  ): Promise<Required<RenewCertificateResponse>> {
    const { files, tls, clock } = this.deps;
    if (!files)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `node ${this.deps.nodeId} holds no cluster CA key (tls.issuer); ask a node that does`,
      );
    if (this.deps.revoked.isRevoked(callerNodeId))
      throw new AgentError(ErrorCode.PermissionDenied, `node ${callerNodeId} is revoked`);
    const ca = await files.read().catch((error: unknown) => {
      this.deps.logger.error({ err: error }, 'cannot read the cluster CA files (tls.issuer)');
      throw new AgentError(ErrorCode.Unavailable, 'the issuer cannot read its CA files');
    });
    const issuing = new X509Certificate(splitPemBundle(ca.certPem)[0]);
    const issuingKey = spki(issuing);
    if (!tls.clusterCas.some((trusted) => spki(trusted).equals(issuingKey)))
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        'the CA in tls.issuer is not among the cluster CAs trusted now; finish or undo the CA rotation',
      );
    const now = clock.now().getTime();
    const notAfter = new Date(Math.min(now + this.deps.lifetimeMs, Date.parse(issuing.validTo)));
    let certChainPem: string;
    try {
      certChainPem = await renewFromCsr(ca, csrPem, { currentCertPem, notAfter });
    } catch (error) {
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `invalid request: csr_pem: ${(error as Error).message}`,
      );
    }
    this.deps.logger.info(
      { peerNode: callerNodeId, notAfter: notAfter.toISOString() },
      'issued a renewed agent certificate',
    );
    return { certChainPem, trustedCasPem: tls.clusterCaPem, notAfter: notAfter.toISOString() };
  }
}

function spki(cert: X509Certificate): Buffer {
  return cert.publicKey.export({ format: 'der', type: 'spki' });
}
