import { Injectable } from '@nestjs/common';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { ResourcesService } from '../resources/resources.service';
import { HealthRepository } from './health.repository';
import { MetricsService } from './metrics.service';

@Injectable()
export class HealthService {
  constructor(
    private readonly health: HealthRepository,
    private readonly resources: ResourcesService,
    private readonly metrics: MetricsService,
  ) {}

  /** Ready: PostgreSQL answers and the resource poller runs; 503 naming what is not. */
  async readiness(): Promise<{ status: 'ready'; checks: Record<string, 'ok'> }> {
    const problems: string[] = [];
    if (!(await this.health.databaseReachable(2000))) problems.push('the database does not answer');
    if (!this.resources.isPolling()) problems.push('the resource poller is not running');
    if (problems.length > 0) throw new DomainError(ErrorCode.NotReady, `not ready: ${problems.join('; ')}`);
    return { status: 'ready', checks: { database: 'ok', poller: 'ok' } };
  }

  metricsText(): Promise<string> {
    return this.metrics.render();
  }
}
