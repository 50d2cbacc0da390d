import { cleanupTempDirs, startPostgres, type PostgresInstance } from '@debvisor/testing';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import { DataSource } from 'typeorm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ClockRepository } from '../common/clock.repository';
import type { ManagerConfig } from '../config/manager-config';
import { dataSourceOptions } from '../database/data-source-options';
import { MetricsService } from '../health/metrics.service';
import { SchedulerTimerRepository } from '../scheduler/scheduler-timer.repository';
import { SchedulerService } from '../scheduler/scheduler.service';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { LoginRepository } from './login.repository';
import {
  LOGIN_THROTTLE_PURGE_JOB,
  SESSION_PURGE_JOB,
  SessionHousekeepingService,
} from './session-housekeeping.service';

const NOW = new Date('2026-12-07T20:00:00Z');
const IDLE_SECONDS = 1800;
const LOCK_SECONDS = 900;
const CONFIG = {
  access: { sessionIdleSeconds: IDLE_SECONDS, lockSeconds: LOCK_SECONDS },
} as ManagerConfig;

const ago = (seconds: number) => new Date(NOW.getTime() - seconds * 1000);
const later = (seconds: number) => new Date(NOW.getTime() + seconds * 1000);

describe('SessionHousekeepingService (real PostgreSQL)', () => {
  let postgres: PostgresInstance;
  let template: string;
  let dataSource: DataSource;
  let scheduler: SchedulerService;

  beforeAll(async () => {
    postgres = await startPostgres();
    // One migrated database, cloned for each test.
    const url = await postgres.createDatabase();
    const migrating = new DataSource(dataSourceOptions(url));
    await migrating.initialize();
    await migrating.runMigrations({ transaction: 'each' });
    await migrating.destroy();
    template = new URL(url).pathname.slice(1);
  });

  afterAll(async () => {
    await postgres?.stop();
    cleanupTempDirs();
  });

  beforeEach(async () => {
    dataSource = new DataSource(dataSourceOptions(await postgres.createDatabase(template)));
    await dataSource.initialize();
    const logger = () =>
      strictMock<PinoLogger>('PinoLogger', {
        setContext: () => undefined,
        info: () => undefined,
        error: () => undefined,
      });
    const clock = strictMock<ClockRepository>('ClockRepository', { now: () => NOW });
    scheduler = new SchedulerService(
      new SchedulerTimerRepository(),
      clock,
      logger(),
      new MetricsService(),
    );
    const housekeeping = new SessionHousekeepingService(
      CONFIG,
      new LoginRepository(new UnitOfWork(dataSource)),
      clock,
      scheduler,
      logger(),
    );
    housekeeping.onModuleInit();
    await dataSource.query(
      `INSERT INTO users (id, realm_id, username, created_at) VALUES ('alice@local', 'local', 'alice', $1)`,
      [ago(86_400)],
    );
  });

  afterEach(async () => {
    await scheduler.stop();
    if (dataSource?.isInitialized) await dataSource.destroy();
  });

  async function insertSession(id: string, lastSeenAt: Date, expiresAt: Date): Promise<void> {
    await dataSource.query(
      `INSERT INTO sessions (id, user_id, stage, created_at, last_seen_at, expires_at)
       VALUES ($1, 'alice@local', 'active', $2, $3, $4)`,
      [id.padEnd(64, '0'), ago(3 * 86_400), lastSeenAt, expiresAt],
    );
  }

  async function insertThrottle(
    account: string,
    updatedAt: Date,
    blockedUntil: Date | null,
  ): Promise<void> {
    await dataSource.query(
      `INSERT INTO login_throttles (account, source, failures, blocked_until, updated_at)
       VALUES ($1, '192.0.2.7', 5, $2, $3)`,
      [account, blockedUntil, updatedAt],
    );
  }

  it('purges the sessions past their absolute end or idle for the idle timeout, and keeps the live ones', async () => {
    await insertSession('a1', ago(60), later(3600)); // live
    await insertSession('a2', ago(IDLE_SECONDS - 5), later(3600)); // idle, but not for long enough
    await insertSession('b1', ago(60), ago(1)); // past its absolute end
    await insertSession('b2', ago(60), NOW); // ends right now
    await insertSession('c1', ago(IDLE_SECONDS), later(3600)); // idle for exactly the timeout
    await insertSession('c2', ago(IDLE_SECONDS + 3600), later(3600)); // idle for long
    await scheduler.runNow(SESSION_PURGE_JOB);
    expect(scheduler.status()[0]).toMatchObject({ name: SESSION_PURGE_JOB, failures: 0 });
    const rows: { id: string }[] = await dataSource.query('SELECT id FROM sessions ORDER BY id');
    expect(rows.map((row) => row.id.slice(0, 2))).toEqual(['a1', 'a2']);
  });

  it('purges login throttles whose count has run out and that hold no wait, and keeps the others', async () => {
    await insertThrottle('local:recent', ago(60), null); // counting
    await insertThrottle('local:waiting', ago(LOCK_SECONDS + 60), later(60)); // a wait in force
    await insertThrottle('local:old', ago(LOCK_SECONDS), null); // the count starts afresh now
    await insertThrottle('local:old-wait-over', ago(LOCK_SECONDS + 600), ago(300));
    await scheduler.runNow(LOGIN_THROTTLE_PURGE_JOB);
    expect(scheduler.status()[1]).toMatchObject({ name: LOGIN_THROTTLE_PURGE_JOB, failures: 0 });
    const rows: { account: string }[] = await dataSource.query(
      'SELECT account FROM login_throttles ORDER BY account',
    );
    expect(rows.map((row) => row.account)).toEqual(['local:recent', 'local:waiting']);
  });

  it('counts a failed purge and keeps the job for its next run', async () => {
    await dataSource.destroy();
    await scheduler.runNow(SESSION_PURGE_JOB);
    expect(scheduler.status()[0]).toMatchObject({ failures: 1 });
    expect(scheduler.has(SESSION_PURGE_JOB)).toBe(true);
  });
});
