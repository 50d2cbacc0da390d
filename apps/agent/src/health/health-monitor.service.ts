import type { DriverHealth, HealthStatus } from '../drivers/hypervisor.driver';
import type { CephHealth } from '../drivers/storage.driver';
import type { Logger } from '../shared/logger';
import {
  AGENT_SERVICES,
  type AgentService,
  type ServingStatus,
  type ServingStatusBoard,
} from './serving-status';

/** What a service needs besides etcd, which every call needs (API keys live there). */
const NEEDS: Readonly<Record<AgentService, readonly ('hypervisor' | 'storage')[]>> = {
  'debvisor.v1.NodeService': [],
  'debvisor.v1.VmService': ['hypervisor'],
  'debvisor.v1.StorageService': ['storage'],
  'debvisor.v1.MigrationService': ['hypervisor', 'storage'],
  'debvisor.v1.AccessService': [],
};

export interface HealthSources {
  /** The node's drivers: [hypervisor, storage], as LocalNodeService.health() answers them. */
  drivers(): Promise<{ hypervisor: DriverHealth; storage: DriverHealth }>;
  cephHealth(): Promise<CephHealth>;
  etcdReachable(): Promise<boolean>;
}

export interface HealthMetrics {
  setServiceStatus(service: string, serving: boolean): void;
  setDriverHealth(driver: string, status: HealthStatus): void;
  setCephHealth(status: CephHealth): void;
  backendConnectionError(backend: string): void;
}

/**
 * Decides, every interval, which services can serve: a service serves while etcd answers and none
 * of the drivers it needs has failed (degraded still serves). The result goes to the health
 * service's board (gRPC health checks) and to the metrics (rpc_service_status, driver and Ceph
 * health, etcd connection errors).
 */
export class HealthMonitor {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly sources: HealthSources,
    private readonly board: ServingStatusBoard,
    private readonly metrics: HealthMetrics,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  /** Evaluates once now, then every interval. */
  async start(): Promise<void> {
    await this.evaluate();
    this.schedule();
  }

  /** Stops evaluating and turns every service NOT_SERVING (watch streams end). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    this.board.shutdown();
  }

  /** One evaluation; never throws (a failing source counts as failed). */
  async evaluate(): Promise<void> {
    const [etcd, drivers, ceph] = await Promise.all([
      this.sources.etcdReachable().catch(() => false),
      this.sources.drivers().catch((error: unknown) => {
        this.logger.warn({ err: error }, 'cannot read the drivers health');
        return undefined;
      }),
      this.sources.cephHealth().catch((): CephHealth => 'HEALTH_ERR'),
    ]);
    if (!etcd) this.metrics.backendConnectionError('etcd');
    const failed = {
      hypervisor: !drivers || drivers.hypervisor.status === 'failed',
      storage: !drivers || drivers.storage.status === 'failed',
    };
    if (drivers)
      for (const driver of [drivers.hypervisor, drivers.storage])
        this.metrics.setDriverHealth(driver.name, driver.status);
    this.metrics.setCephHealth(ceph);

    const statuses = {} as Record<AgentService, ServingStatus>;
    for (const service of AGENT_SERVICES) {
      const serving = etcd && NEEDS[service].every((need) => !failed[need]);
      statuses[service] = serving ? 'SERVING' : 'NOT_SERVING';
      this.metrics.setServiceStatus(service, serving);
    }
    const before = this.board.get('');
    this.board.update(statuses);
    const after = this.board.get('');
    if (before !== after && !this.stopped) {
      const reasons = [
        !etcd && 'etcd does not answer',
        failed.hypervisor && 'the hypervisor driver failed',
        failed.storage && 'the storage driver failed',
      ].filter(Boolean);
      if (after === 'SERVING') this.logger.info('serving: every service is healthy');
      else this.logger.warn({ reasons, services: statuses }, 'not serving every service');
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.evaluate().finally(() => this.schedule());
    }, this.intervalMs);
  }
}
