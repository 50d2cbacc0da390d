import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { ClockRepository } from '../common/clock.repository';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { SchedulerService } from '../scheduler/scheduler.service';
import { LoginRepository } from './login.repository';

/** The scheduler job that removes ended sessions. */
export const SESSION_PURGE_JOB = 'sessions.purge';
/** The scheduler job that removes login throttles that hold nothing back any more. */
export const LOGIN_THROTTLE_PURGE_JOB = 'sessions.purge-login-throttles';
/** How often both run (give or take a minute, so that several managers do not run them in step). */
export const PURGE_INTERVAL_MS = 15 * 60_000;
const PURGE_JITTER_MS = 60_000;

/**
 * Housekeeping of the sessions feature's tables, as scheduler jobs: sessions past their absolute
 * end or idle for the idle timeout are deleted (a presented one is refused already; this keeps the
 * table from growing with every login), and so are login throttles whose count has run out.
 */
@Injectable()
export class SessionHousekeepingService implements OnModuleInit {
  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    private readonly repository: LoginRepository,
    private readonly clock: ClockRepository,
    private readonly scheduler: SchedulerService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext(SessionHousekeepingService.name);
  }

  onModuleInit(): void {
    const timing = { everyMs: PURGE_INTERVAL_MS, jitterMs: PURGE_JITTER_MS };
    this.scheduler.register({ name: SESSION_PURGE_JOB, timing, run: () => this.purgeSessions() });
    this.scheduler.register({
      name: LOGIN_THROTTLE_PURGE_JOB,
      timing,
      run: () => this.purgeLoginThrottles(),
    });
  }

  /** Deletes the sessions that have ended; answers how many. */
  async purgeSessions(): Promise<number> {
    const { sessionIdleSeconds } = this.config.access;
    const purged = await this.repository.deleteEndedSessions(this.clock.now(), sessionIdleSeconds);
    if (purged > 0) this.logger.info({ sessions: purged }, 'ended sessions purged');
    return purged;
  }

  /** Deletes the login throttles older than the lock time and without a wait in force; answers how many. */
  async purgeLoginThrottles(): Promise<number> {
    const { lockSeconds } = this.config.access;
    const purged = await this.repository.deleteStaleLoginThrottles(this.clock.now(), lockSeconds);
    if (purged > 0) this.logger.info({ throttles: purged }, 'stale login throttles purged');
    return purged;
  }
}
