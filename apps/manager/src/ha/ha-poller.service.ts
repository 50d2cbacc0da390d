import type { HaEvent__Output, HaStatus__Output } from '@debvisor/proto';
import type { AgentConnection } from '../agents/agent-connection';
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
  /** Per remote, the id of the last cluster event read (ListHaEvents). */
  private readonly eventCursors = new Map<string, string>();
  /** One read of a remote at a time, in the order asked. */
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
          this.eventCursors.delete(remote);
          await this.episodes.remoteRemoved(remote);
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

  /**
   * Reads the remote's HA state now with `connection` (a request's: the caller's credential), and
   * the events and the overview move on with it, as with the poll's reads; answers the status.
   */
  readNow(remote: string, connection: AgentConnection): Promise<HaStatus__Output> {
    return this.serial(remote, async () => {
      const status = await this.readWith(remote, connection);
      this.publish();
      return status;
    });
  }

  /**
   * The cluster's status, then its event log, then the events moved on. The agents write a fence
   * record and its event in one transaction, so every change the status shows has its lines in the
   * events read after it (lines of changes the status does not show yet wait for the next read).
   * One read of a remote at a time (the event cursor is shared).
   */
  private async readWith(remote: string, connection: AgentConnection): Promise<HaStatus__Output> {
    const readAt = this.clock.now();
    const status = await this.agents.getHaStatus(connection);
    const events = await this.newEvents(remote, connection);
    await this.record(remote, status, 'ok', null, readAt, events);
    return status;
  }

  private serial<T>(remote: string, work: () => Promise<T>): Promise<T> {
    const run = (this.chains.get(remote) ?? Promise.resolve()).then(work, work);
    this.chains.set(
      remote,
      run.then(
        () => undefined,
        () => undefined,
      ),
    );
    return run;
  }

  private read(remote: string): Promise<void> {
    return this.serial(remote, () => this.readOwn(remote));
  }

  private async readOwn(remote: string): Promise<void> {
    const readAt = this.clock.now();
    try {
      const connection = await this.remotes.connectionFor(remote, null, HA_READ_PERMISSION);
      await this.readWith(remote, connection);
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

  private async record(
    remote: string,
    status: HaStatus__Output | undefined,
    outcome: HaReading['outcome'],
    error: HaReading['error'],
    at: Date,
    events: readonly HaEvent__Output[] = [],
  ): Promise<void> {
    this.readings.set(remote, { remote, status, outcome, error, at });
    // A read that answered nothing changes no event: they wait for the next answer.
    if (!status) return;
    const previous = this.lastGood.get(remote);
    this.lastGood.set(remote, status);
    try {
      await this.episodes.follow(remote, previous, status, at, events);
    } catch (failure) {
      this.logger.error({ err: failure, remote }, 'cannot follow the HA events of a remote');
    }
  }

  /**
   * The cluster's HA events since the last read. At the first read of a remote its history is not
   * news: the cursor starts after the newest event kept — unless tasks were taken up again after a
   * restart, whose journals get the events since their last line. Agents without the event log
   * (or a failed read) give none: the journals then come from the state changes alone.
   */
  private async newEvents(remote: string, connection: AgentConnection): Promise<HaEvent__Output[]> {
    const cursor = this.eventCursors.get(remote);
    const since = cursor === undefined ? this.episodes.resumedSince(remote) : undefined;
    try {
      const events = await this.agents.listHaEvents(
        connection,
        cursor ?? (since ? eventIdBefore(since) : ''),
        1000,
      );
      const last = events.at(-1)?.id;
      if (last) this.eventCursors.set(remote, last);
      else if (cursor === undefined) this.eventCursors.set(remote, '');
      return cursor === undefined && !since ? [] : events;
    } catch (error) {
      this.logger.debug({ err: error, remote }, 'cannot read the HA event log of a remote');
      return [];
    }
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

/**
 * An event id (`<15-digit ms>-<node>-<seq>`, sorted by time) just before `at`: ListHaEvents after
 * it answers the events from `at` on.
 */
function eventIdBefore(at: Date): string {
  return `${String(Math.max(0, at.getTime() - 1)).padStart(15, '0')}-0-0`;
}
