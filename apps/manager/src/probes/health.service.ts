import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { X509Certificate } from 'node:crypto';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../pki/state-dir.repository';
import { ResourcesService } from '../resources/resources.service';
import { HealthRepository } from './health.repository';
import { MetricsService } from '../health/metrics.service';

/** What rpc_service_status calls the manager's own API. */
export const MANAGER_SERVICE = 'manager';

export interface Readiness {
  readonly status: 'ready';
  readonly checks: { readonly database: 'ok'; readonly poller: 'ok'; readonly remotes: string };
}

/**
 * Liveness is trivial (the controller answers); readiness checks what the manager needs to be
 * useful: PostgreSQL answers, the resource poller runs, and at least one remote is reachable (or
 * none is configured). Manager HA with etcd is not configured in this version, so there is no etcd
 * check yet. The same checks feed rpc_service_status{service="manager"} at every scrape.
 */
@Injectable()
export class HealthService implements OnModuleInit {
  constructor(
    private readonly health: HealthRepository,
    private readonly resources: ResourcesService,
    private readonly metrics: MetricsService,
    @Inject(MANAGER_IDENTITY) private readonly identity: ManagerIdentity,
  ) {}

  onModuleInit(): void {
    const certificates = {
      https: this.identity.server.certPem,
      'https-ca': this.identity.server.caPem,
      client: this.identity.client.certPem,
      'client-ca': this.identity.client.caPem,
    };
    for (const [cert, pem] of Object.entries(certificates))
      this.metrics.rpc.setCertificateExpiry(cert, new Date(new X509Certificate(pem).validTo));
    this.metrics.onScrape(async () =>
      this.metrics.rpc.setServiceStatus(
        MANAGER_SERVICE,
        (await this.check()).problems.length === 0,
      ),
    );
  }

  /** Ready, naming each check; otherwise 503 naming every problem. */
  async readiness(): Promise<Readiness> {
    const { problems, remotes } = await this.check();
    if (problems.length > 0)
      throw new DomainError(ErrorCode.NotReady, `not ready: ${problems.join('; ')}`);
    return { status: 'ready', checks: { database: 'ok', poller: 'ok', remotes } };
  }

  metricsText(): Promise<string> {
    return this.metrics.render();
  }

  private async check(): Promise<{ problems: string[]; remotes: string }> {
    const problems: string[] = [];
    if (!(await this.health.databaseReachable(2000))) {
      problems.push('the database does not answer');
      this.metrics.rpc.backendConnectionError('postgres');
    }
    if (!this.resources.isPolling()) problems.push('the resource poller is not running');
    const { pending, online, unreachable } = this.resources.remoteCounts();
    const total = pending + online + unreachable;
    let remotes = 'none configured';
    if (online > 0) remotes = `${online} of ${total} reachable`;
    else if (total > 0 && pending > 0)
      problems.push(
        `no remote answered yet (${pending} of ${total} not refreshed yet, ${unreachable} unreachable)`,
      );
    else if (total > 0)
      problems.push(`no remote is reachable (${unreachable} configured, all unreachable)`);
    return { problems, remotes };
  }
}
