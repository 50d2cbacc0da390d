import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { ClockRepository } from '../common/clock.repository';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { MetricsService, type ReplicationMetrics } from '../health/metrics.service';
import { SchedulerService } from '../scheduler/scheduler.service';
import { primarySide, resyncSettled, other } from './dr-state';
import { remoteAt } from './dr-runner.service';
import { ReplicationStatusService, type Observation } from './replication-status.service';
import { ReplicationRepository } from './replication.repository';

/** How many VMs are read at once (each reads all its disks at both sites). */
const CONCURRENCY = 4;

/** The scheduler job of the mirroring status poll. */
export const REPLICATION_POLL_JOB = 'replication.poll';

/**
 * The status poll of mirrored VMs, a scheduler job like the resource poller: at the start and
 * every poll interval after the previous poll ended it reads each active VM's images at both sites,
 * keeps the observation for the list endpoint, publishes the mirroring metrics, and marks a
 * resyncing site secondary once it is seen replaying.
 */
@Injectable()
export class ReplicationPollerService implements OnModuleInit {
  private readonly observations = new Map<string, Observation>();

  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    private readonly repository: ReplicationRepository,
    private readonly status: ReplicationStatusService,
    private readonly metrics: MetricsService,
    private readonly clock: ClockRepository,
    private readonly logger: PinoLogger,
    private readonly scheduler: SchedulerService,
  ) {
    logger.setContext(ReplicationPollerService.name);
  }

  onModuleInit(): void {
    this.scheduler.register({
      name: REPLICATION_POLL_JOB,
      timing: { everyMs: this.config.pollIntervalSeconds * 1000, immediately: true },
      run: () => this.pollOnce(),
    });
  }

  cached(vmId: string): Observation | undefined {
    return this.observations.get(vmId);
  }

  remember(vmId: string, observation: Observation): void {
    this.observations.set(vmId, observation);
  }

  /** One poll of every active mirrored VM; never throws. */
  async pollOnce(): Promise<void> {
    try {
      const records = (await this.repository.listVms()).filter(
        (record) => record.phase === 'active',
      );
      const known = new Set(records.map((record) => record.vmId));
      for (const vmId of [...this.observations.keys()])
        if (!known.has(vmId)) this.observations.delete(vmId);
      const queue = [...records];
      await Promise.all(
        Array.from({ length: Math.min(CONCURRENCY, queue.length) }, async () => {
          for (let record = queue.shift(); record; record = queue.shift()) {
            const observed = await this.status.observe(record);
            this.observations.set(record.vmId, observed);
            const staleIndex = other(primarySide(record)) === 'source' ? 0 : 1;
            const replaying = observed.images.every(
              (image) =>
                image.sites[staleIndex].primary === false &&
                /replaying/.test(image.sites[staleIndex].state),
            );
            const settled = record.pending
              ? undefined
              : resyncSettled(record, replaying && !observed.splitBrain);
            if (settled)
              await this.repository.setRoles(
                record.vmId,
                settled,
                `resync of ${remoteAt(record, other(primarySide(record)))} completed`,
                this.clock.now(),
              );
          }
        }),
      );
      const now = this.clock.now();
      this.metrics.publishReplication(
        records.map((record): ReplicationMetrics => {
          const observed = this.observations.get(record.vmId);
          const rpo =
            observed?.rpoSeconds === undefined
              ? undefined
              : observed.rpoSeconds + Math.max(0, (now.getTime() - observed.at.getTime()) / 1000);
          return {
            remote: remoteAt(record, primarySide(record)),
            vm: record.vmId,
            rpoSeconds: rpo,
            rpoTargetSeconds: record.rpoTargetSeconds,
            health: observed?.health ?? 'unknown',
            splitBrain: observed?.splitBrain ?? false,
            imageStates:
              observed?.images.flatMap((image) =>
                image.sites.map((site) => ({ remote: site.remote, state: site.state })),
              ) ?? [],
          };
        }),
      );
    } catch (error) {
      this.logger.error({ err: error }, 'cannot poll the mirrored VMs');
    }
  }
}
