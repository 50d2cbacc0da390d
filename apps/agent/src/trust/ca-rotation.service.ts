import { createCa, crossCertify, splitPemBundle } from '@debvisor/pki';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { writeFileAtomically } from '../shared/atomic-file';
import type { ClusterTrustRepository, NodeCert } from './cluster-trust.repository';

/** Where a cluster's CA rotation stands. */
export interface CaRotationStatus {
  /** Two CAs are trusted: a rotation is under way. */
  rotating: boolean;
  /** The CAs the cluster trusts now, in order (old first); empty: only each agent's tls.ca. */
  cas: { fingerprint: string; subject: string; pem: string }[];
  /** The CA renewals are issued by (the new one during a rotation); empty when unknown. */
  issuingFingerprint: string;
  /** Certificates issued before this instant are being renewed (the rotation's start); or null. */
  renewBefore: string | null;
  /** Which CA issued each node's certificate. */
  nodes: NodeCert[];
}

/** The new CA's own (self-signed) certificate waits here between begin and finish. */
export const nextCaFile = (issuerCert: string) => `${issuerCert}.next`;

/**
 * A cluster CA rotation with an overlap window, run where the CA key is (tls.issuer): by
 * `debvisor-agent-admin ca begin|finish` and by NodeService.BeginCaRotation/FinishCaRotation.
 * begin: a new CA cross-certified by the old one signs renewals from now on, and every agent
 * trusts both (etcd, watched) and renews within seconds. finish: once every node holds a
 * certificate of the new CA, only the new one is trusted.
 */
export class CaRotation {
  constructor(
    private readonly store: Pick<ClusterTrustRepository, 'getCas' | 'putCas' | 'listNodeCerts'>,
    /** The issuing node's tls.issuer files; undefined on a node that holds no CA key. */
    private readonly issuer: { cert: string; key: string } | undefined,
  ) {}

  async status(): Promise<CaRotationStatus> {
    const [record, nodes] = await Promise.all([this.store.getCas(), this.store.listNodeCerts()]);
    const cas = record
      ? splitPemBundle(record.casPem).map((pem) => {
          const ca = new X509Certificate(pem);
          return { fingerprint: ca.fingerprint256, subject: ca.subject.replace(/\n/g, ', '), pem };
        })
      : [];
    return {
      rotating: cas.length > 1,
      cas,
      issuingFingerprint: await this.issuingFingerprint(),
      renewBefore: record?.renewBefore ?? null,
      nodes,
    };
  }

  async begin(): Promise<{ newCaFingerprint: string; newCaPem: string }> {
    const issuer = this.requireIssuer();
    if (existsSync(nextCaFile(issuer.cert)))
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        'a CA rotation is under way already: finish it first',
      );
    const old = {
      certPem: await readFile(issuer.cert, 'utf8'),
      keyPem: await readFile(issuer.key, 'utf8'),
    };
    const oldCa = new X509Certificate(splitPemBundle(old.certPem)[0]);
    if (!oldCa.ca || oldCa.issuer !== oldCa.subject)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `${issuer.cert} is not a self-signed CA certificate`,
      );
    const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const cn =
      /CN=([^\n]*)/.exec(oldCa.subject)?.[1]?.replace(/ \(\d{4}-.*\)$/, '') ??
      'DebVisor cluster CA';
    const next = await createCa(`${cn} (${stamp})`);
    const cross = await crossCertify(old, next.certPem);
    const record = await this.store.getCas();
    const trusted = record ? splitPemBundle(record.casPem) : [splitPemBundle(old.certPem)[0]];
    // The new CA's certificate is kept for finish; from now on the issuer signs with the new key
    // and chains to the cross certificate, which clients that know only the old CA can verify.
    await writeFileAtomically(nextCaFile(issuer.cert), next.certPem);
    await writeFileAtomically(issuer.key, next.keyPem);
    await writeFileAtomically(issuer.cert, cross);
    const now = new Date().toISOString();
    await this.store.putCas({
      casPem: [...trusted, next.certPem].join(''),
      renewBefore: now,
      updatedAt: now,
    });
    return {
      newCaFingerprint: new X509Certificate(next.certPem).fingerprint256,
      newCaPem: next.certPem,
    };
  }

  async finish(force: boolean): Promise<{ caFingerprint: string; caPem: string }> {
    const issuer = this.requireIssuer();
    if (!existsSync(nextCaFile(issuer.cert)))
      throw new AgentError(ErrorCode.FailedPrecondition, 'no CA rotation is under way');
    const nextPem = await readFile(nextCaFile(issuer.cert), 'utf8');
    const next = new X509Certificate(nextPem);
    const behind = (await this.store.listNodeCerts()).filter(
      (node) => node.issuerFingerprint !== next.fingerprint256,
    );
    if (behind.length > 0 && !force)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `nodes still hold a certificate of an old CA: ${behind.map((n) => n.nodeId).join(', ')}; wait for their renewal (or force)`,
      );
    await writeFileAtomically(issuer.cert, nextPem);
    await rm(nextCaFile(issuer.cert));
    const now = new Date().toISOString();
    await this.store.putCas({ casPem: nextPem, renewBefore: null, updatedAt: now });
    return { caFingerprint: next.fingerprint256, caPem: nextPem };
  }

  private requireIssuer(): { cert: string; key: string } {
    if (!this.issuer)
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        'this node holds no cluster CA key (tls.issuer); ask a node that does',
      );
    return this.issuer;
  }

  /** The CA whose key signs renewals now (during a rotation, the new one). */
  private async issuingFingerprint(): Promise<string> {
    if (!this.issuer) return '';
    const next = nextCaFile(this.issuer.cert);
    const pem = existsSync(next)
      ? await readFile(next, 'utf8')
      : splitPemBundle(await readFile(this.issuer.cert, 'utf8'))[0];
    return new X509Certificate(pem).fingerprint256;
  }
}
