import type { Logger } from 'pino';
import { DataSource } from 'typeorm';
import type { ManagerConfig } from '../config/manager-config';
import { dataSourceOptions } from './data-source-options';
import { EMBEDDED_RUNTIME_ROLE, RuntimeRoleRepository } from './runtime-role.repository';

/** Held while migrations run, so that managers starting together on one database take turns. */
const MIGRATION_LOCK_KEY = 4_410_317_001;

export interface DatabasePlan {
  /** The embedded PostgreSQL's superuser URL (unset with an external database). */
  readonly embeddedSuperuserUrl?: string;
  /** The embedded runtime role's password (from the state directory). */
  readonly runtimePassword?: () => string;
}

/**
 * Before the application starts: runs the migrations as the database's owner and makes sure the
 * role the manager serves with may do what it needs and no more. Answers the URL to serve with.
 *
 *  - embedded PostgreSQL: migrations as the superuser; the role `debvisor_app` (password in the
 *    state directory) is created or updated and granted; the manager serves as `debvisor_app`.
 *  - DATABASE_URL with DATABASE_ADMIN_URL: migrations and grants with the admin URL, for the role
 *    of DATABASE_URL; the manager serves with DATABASE_URL.
 *  - DATABASE_URL alone: migrations with it, nothing granted.
 *
 * Then it checks what the serving role could do to the audit log and warns when only the trigger
 * protects it (a superuser, the table owner, or a role holding UPDATE/DELETE/TRUNCATE on it).
 */
export async function prepareDatabase(
  config: ManagerConfig,
  plan: DatabasePlan,
  logger: Logger,
): Promise<string> {
  let url: string;
  if (plan.embeddedSuperuserUrl) {
    await runMigrations(plan.embeddedSuperuserUrl);
    const roles = new RuntimeRoleRepository(plan.embeddedSuperuserUrl);
    const password = plan.runtimePassword!();
    await roles.ensureLoginRole(EMBEDDED_RUNTIME_ROLE, password);
    await roles.grantRuntime(EMBEDDED_RUNTIME_ROLE);
    const runtime = new URL(plan.embeddedSuperuserUrl);
    runtime.username = EMBEDDED_RUNTIME_ROLE;
    runtime.password = password;
    url = runtime.toString();
  } else if (config.databaseUrl && config.databaseAdminUrl) {
    await runMigrations(config.databaseAdminUrl);
    const roles = new RuntimeRoleRepository(config.databaseAdminUrl);
    const [admin, runtime] = await Promise.all([
      roles.adminUser(),
      RuntimeRoleRepository.auditProtection(config.databaseUrl),
    ]);
    if (runtime.user !== admin) await roles.grantRuntime(runtime.user);
    url = config.databaseUrl;
  } else if (config.databaseUrl) {
    await runMigrations(config.databaseUrl);
    url = config.databaseUrl;
  } else {
    throw new Error('no database: neither DATABASE_URL nor an embedded PostgreSQL');
  }

  const protection = await RuntimeRoleRepository.auditProtection(url);
  if (protection.byGrants) {
    logger.info(
      { role: protection.user },
      'database ready: the audit log is append-only by trigger and by grants',
    );
  } else {
    logger.warn(
      { role: protection.user, reason: protection.reason },
      `the audit log is protected by its trigger only: ${protection.reason}. ` +
        (plan.embeddedSuperuserUrl
          ? 'The runtime role should not be able to change it; check its grants.'
          : 'Set DATABASE_ADMIN_URL to the database owner and DATABASE_URL to a role of its own (see docs/manager.md, "Audit log").'),
    );
  }
  return url;
}

/** The checked-in migrations, one transaction each, under an advisory lock. */
async function runMigrations(url: string): Promise<void> {
  const dataSource = new DataSource(dataSourceOptions(url));
  await dataSource.initialize();
  const lock = dataSource.createQueryRunner();
  try {
    await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await dataSource.runMigrations({ transaction: 'each' });
  } finally {
    await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await lock.release();
    await dataSource.destroy();
  }
}
