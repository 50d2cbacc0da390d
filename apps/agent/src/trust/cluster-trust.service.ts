import type { Watcher } from 'etcd3';
import type { Logger } from '../shared/logger';
import type { CertificateRenewer } from './certificate-renewer.service';
import type { ClusterCas, ClusterTrustRepository } from './cluster-trust.repository';
import type { LiveTls } from './live-tls';
import type { TlsFilesRepository } from './tls-files.repository';

/**
 * The cluster CAs this agent trusts, from etcd (written by `debvisor-agent-admin ca begin|finish`),
 * applied as they change: the new bundle is trusted for new connections at once and written to
 * tls.ca. A rotation's start asks for renewal within a few seconds (spread, so that every agent
 * trusts the new CA before certificates from it appear). Without a record, tls.ca is the trust.
 */
export class ClusterTrust {
  private watcher: Watcher | undefined;

  constructor(
    private readonly deps: {
      store: Pick<ClusterTrustRepository, 'getCas' | 'watchCas'>;
      tls: LiveTls;
      files: Pick<TlsFilesRepository, 'writeTrust'>;
      renewer: Pick<CertificateRenewer, 'renewSoon'>;
      random: () => number;
      logger: Logger;
    },
  ) {}

  async start(): Promise<void> {
    const record = await this.deps.store.getCas();
    if (record) await this.apply(record, false);
    this.watcher = await this.deps.store.watchCas((next) => void this.apply(next, true));
  }

  async stop(): Promise<void> {
    await this.watcher?.cancel();
    this.watcher = undefined;
  }

  private async apply(record: ClusterCas, live: boolean): Promise<void> {
    const { tls, logger } = this.deps;
    try {
      const before = tls.clusterCaPem;
      tls.replaceTrust(record.casPem);
      if (tls.clusterCaPem !== before) {
        // Kept for the next start; the trust applies now even when the file cannot be written.
        await this.deps.files
          .writeTrust(tls.clusterCaPem)
          .catch((error: unknown) =>
            logger.error({ err: error }, 'cannot write the new cluster CA bundle to tls.ca'),
          );
        logger.warn(
          { cas: tls.clusterCas.map((ca) => ca.fingerprint256) },
          'cluster CA trust changed',
        );
      }
    } catch (error) {
      logger.error({ err: error }, 'ignoring an unusable cluster CA record in etcd');
      return;
    }
    const issuedAt = Date.parse(tls.leaf.validFrom);
    if (record.renewBefore && issuedAt < Date.parse(record.renewBefore)) {
      // At start-up the certificate may be renewed at once; a live change spreads the agents over 1–3 s.
      this.deps.renewer.renewSoon('CA rotation', live ? 1_000 + 2_000 * this.deps.random() : 0);
    }
  }
}
