import { createCsr, splitPemBundle } from '@debvisor/pki';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { AGENT_OU } from '../config/tls-material';
import type { RegistryService } from '../registry/registry.service';
import type { PeerClientRepository } from '../rpc/peer-client.repository';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { CertificateIssuer } from './certificate-issuer.service';
import type { ClusterTrustRepository } from './cluster-trust.repository';
import type { LiveTls } from './live-tls';
import type { TlsFilesRepository } from './tls-files.repository';

/** setTimeout's longest delay; a renewal further away is re-planned when this elapses. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const PEER_TIMEOUT_MS = 10_000;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 60_000;

export interface CertificateRenewerDeps {
  nodeId: string;
  tls: LiveTls;
  /** This node's issuer (signs locally when it holds the CA key). */
  issuer: Pick<CertificateIssuer, 'issues' | 'renew'>;
  registry: Pick<RegistryService, 'list'>;
  peers: Pick<PeerClientRepository, 'renewCertificate'>;
  files: Pick<TlsFilesRepository, 'writeCertificate'>;
  trust: Pick<ClusterTrustRepository, 'putNodeCert'>;
  /** A number in [0, 1): the jitter of the renewal instant. */
  random: () => number;
  clock: Clock;
  logger: Logger;
}

/**
 * Keeps this agent's certificate fresh: at a jittered 70–90 % of its lifetime (so that a cluster's
 * agents do not all renew at once) it makes a new key and a CSR, has an issuer sign it (itself, or
 * a live peer holding the CA key, authenticated by the current certificate), stores the result and
 * switches to it for new connections. Failures are retried with back-off until it succeeds.
 */
export class CertificateRenewer {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private inFlight: Promise<void> | undefined;
  private failures = 0;
  /** The peers of the last registry read, for when etcd does not answer. */
  private knownPeers: { nodeId: string; endpoint: string; alive: boolean }[] = [];

  constructor(private readonly deps: CertificateRenewerDeps) {}

  start(): void {
    this.running = true;
    void this.publish();
    this.plan();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await this.inFlight?.catch(() => undefined);
  }

  /** Renews now (once at a time), e.g. at a CA rotation's start. */
  renewNow(reason: string): Promise<void> {
    this.inFlight ??= this.renew(reason).finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  /** Renews after `delayMs` (a CA rotation spreads its renewals so every agent trusts the new CA first). */
  renewSoon(reason: string, delayMs: number): void {
    this.arm(delayMs, reason);
  }

  /** The instant of the next renewal: notBefore + (0.7 … 0.9) × lifetime. */
  dueAt(): number {
    const leaf = this.deps.tls.leaf;
    const from = Date.parse(leaf.validFrom);
    const lifetime = Date.parse(leaf.validTo) - from;
    return from + lifetime * (0.7 + 0.2 * this.deps.random());
  }

  private plan(): void {
    this.arm(this.dueAt() - this.deps.clock.now().getTime(), 'scheduled');
  }

  private arm(delayMs: number, reason: string): void {
    if (!this.running) return;
    clearTimeout(this.timer);
    const delay = Math.max(0, delayMs);
    this.timer = setTimeout(
      () => {
        if (delay > MAX_TIMER_MS) return this.plan();
        this.renewNow(reason).then(
          () => {
            this.failures = 0;
            this.plan();
          },
          (error: unknown) => {
            this.failures++;
            const retry = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1));
            this.deps.logger.warn(
              { err: error, retryMs: retry, validTo: this.deps.tls.leaf.validTo },
              'certificate renewal failed; retrying',
            );
            this.arm(retry, reason);
          },
        );
      },
      Math.min(delay, MAX_TIMER_MS),
    );
    this.timer.unref();
  }

  private async renew(reason: string): Promise<void> {
    const { nodeId, tls, issuer } = this.deps;
    const current = splitPemBundle(tls.certChainPem)[0];
    const { csrPem, keyPem } = await createCsr(`agent:${nodeId}`, AGENT_OU);
    const answer = issuer.issues
      ? await issuer.renew(nodeId, current, csrPem)
      : await this.askPeers(csrPem);
    const chain = answer.certChainPem;
    const leaf = new X509Certificate(splitPemBundle(chain)[0]);
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem)))
      throw new Error('the issuer answered a certificate for another key');
    if (leaf.subject !== new X509Certificate(current).subject)
      throw new Error('the issuer answered a certificate for another subject');
    await this.deps.files.writeCertificate(chain, keyPem);
    tls.replaceCertificate(chain, keyPem);
    this.deps.logger.info(
      { reason, serial: leaf.serialNumber, validTo: new Date(leaf.validTo).toISOString() },
      'agent certificate renewed',
    );
    await this.publish();
  }

  private async askPeers(csrPem: string) {
    // Live peers first, in a random order (the renewals of a cluster spread over its issuers),
    // then the others: a busy etcd may have missed a heartbeat, and the issuer judges the call itself.
    // When etcd does not answer, the peers of the last read.
    try {
      this.knownPeers = (await this.deps.registry.list())
        .filter((node) => node.info.nodeId !== this.deps.nodeId)
        .map((node) => ({
          nodeId: node.info.nodeId,
          endpoint: node.info.agentEndpoint,
          alive: node.alive,
        }));
    } catch (error) {
      if (this.knownPeers.length === 0) throw error;
    }
    const peers = [...this.knownPeers]
      .map((peer) => ({ peer, order: (peer.alive ? 0 : 1) + this.deps.random() }))
      .sort((a, b) => a.order - b.order)
      .map(({ peer }) => peer);
    if (peers.length === 0) throw new Error('no peer to renew the certificate with');
    let last: unknown;
    for (const peer of peers) {
      try {
        return await this.deps.peers.renewCertificate(
          { nodeId: peer.nodeId, endpoint: peer.endpoint },
          csrPem,
          PEER_TIMEOUT_MS,
        );
      } catch (error) {
        last = error;
      }
    }
    throw last instanceof Error ? last : new Error('no peer renewed the certificate');
  }

  /** Which CA issued this node's certificate, for `debvisor-agent-admin ca status` and `ca finish`. */
  private async publish(): Promise<void> {
    const { tls } = this.deps;
    const leaf = tls.leaf;
    await this.deps.trust
      .putNodeCert({
        nodeId: this.deps.nodeId,
        issuerFingerprint: tls.leafIssuer?.fingerprint256 ?? '',
        notBefore: new Date(leaf.validFrom).toISOString(),
        notAfter: new Date(leaf.validTo).toISOString(),
      })
      .catch((error: unknown) =>
        this.deps.logger.warn({ err: error }, 'could not publish the certificate state'),
      );
  }
}
