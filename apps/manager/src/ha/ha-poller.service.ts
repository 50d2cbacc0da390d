import type { HaStatus__Output } from '@debvisor/proto';
import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { RemotesService } from '../remotes/remotes.service';
import { SchedulerService } from '../scheduler/scheduler.service';
import { HaEpisodesService } from './ha-episodes.service';
import { HaMetrics } from './ha-metrics';

/** The cluster permission HaService.GetHaStatus needs (apps/agent/src/rpc/permissions.ts). */
export const HA_READ_PERMISSION = 'ha:status:read';
/** How many remotes are read at once. */
const CONCURRENCY = 4;

/** The last HA read of one remote. */
export interface HaReading {
  readonly remote: string;
  readonly status: HaStatus__Output | undefined;
  /** ok: read; unreachable: no agent answered; unavailable: the agents answered without HA. */
  readonly outcome: 'ok' | 'unreachable' | 'unavailable';
  readonly error: { code: string; message: string } | null;
  readonly at: Date;
}

/**
 * The HA poll, a job of the scheduler (`ha.poll`): every DEBVISOR_HA_POLL_INTERVAL_SECONDS it reads each remote's HA status with the remote's own
 * credential, keeps it for the overview, moves the HA events on (tasks, audit) and publishes the
 * HA metrics. Reads made for a request (GET …/ha) are fed in too (observe), so that an operator
 * looking at a remote sees its events as soon as the manager does.
 */
@Injectable()
export class HaPollerService implements OnModuleInit {
  private readonly readings = new Map<string, HaReading>();
  /** The last status each remote answered: what the next one is compared with. */
  private readonly lastGood = new Map<string, HaStatus__Output>();
  /** One observation of a remote at a time, in the order read. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly episodes: HaEpisodesService,
    private readonly metrics: HaMetrics,
    private readonly clock: ClockRepository,
    private readonly scheduler: SchedulerService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext(HaPollerService.name);
  }

  onModuleInit(): void {
    this.scheduler.register({
      name: 'ha.poll',
      timing: { everyMs: this.config.haPollIntervalSeconds * 1000, immediately: true },
      run: () => this.pollOnce(),
    });
  }

  /** The last reading of every remote read so far. */
  readingsOf(): ReadonlyMap<string, HaReading> {
    return this.readings;
  }

  /** One read of every remote; never throws. */
  async pollOnce(): Promise<void> {
    try {
      const ids = await this.remotes.listIds();
      const known = new Set(ids);
      for (const remote of [...this.readings.keys()])
        if (!known.has(remote)) {
          this.readings.delete(remote);
          this.lastGood.delete(remote);
        }
      const queue = [...ids];
      await Promise.all(
        Array.from({ length: Math.min(CONCURRENCY, queue.length) }, async () => {
          for (let remote = queue.shift(); remote; remote = queue.shift()) await this.read(remote);
        }),
      );
      this.publish();
    } catch (error) {
      this.logger.error({ err: error }, 'cannot poll the HA state of the remotes');
    }
  }

  /** A status read for a request: the events and the overview move on with it. */
  async observe(remote: string, status: HaStatus__Output, readAt: Date): Promise<void> {
    await this.record(remote, status, 'ok', null, readAt);
    this.publish();
  }

  private async read(remote: string): Promise<void> {
    const readAt = this.clock.now();
    try {
      const connection = await this.remotes.connectionFor(remote, null, HA_READ_PERMISSION);
      const status = await this.agents.getHaStatus(connection);
      await this.record(remote, status, 'ok', null, readAt);
    } catch (error) {
      const domain = error instanceof DomainError;
      const code = domain ? error.code : ErrorCode.Internal;
      const unreachable =
        code === ErrorCode.RemoteUnreachable || code === ErrorCode.RemoteTlsFailed;
      if (!domain)
        this.logger.error({ err: error, remote }, 'cannot read the HA state of a remote');
      await this.record(
        remote,
        undefined,
        unreachable ? 'unreachable' : 'unavailable',
        {
          code,
          message: domain ? error.message : 'the manager log has the details',
        },
        readAt,
      );
    }
  }

  private record(
    remote: string,
    status: HaStatus__Output | undefined,
    outcome: HaReading['outcome'],
    error: HaReading['error'],
    at: Date,
  ): Promise<void> {
    const run = async () => {
      this.readings.set(remote, { remote, status, outcome, error, at });
      // A read that answered nothing changes no event: they wait for the next answer.
      if (!status) return;
      const previous = this.lastGood.get(remote);
      this.lastGood.set(remote, status);
      try {
        await this.episodes.follow(remote, previous, status, at);
      } catch (failure) {
        this.logger.error({ err: failure, remote }, 'cannot follow the HA events of a remote');
      }
    };
    const chained = (this.chains.get(remote) ?? Promise.resolve()).then(run);
    this.chains.set(remote, chained);
    return chained;
  }

  private publish(): void {
    this.metrics.publish(
      [...this.readings.values()].map((reading) => ({
        remote: reading.remote,
        status: reading.status,
      })),
    );
  }
}
