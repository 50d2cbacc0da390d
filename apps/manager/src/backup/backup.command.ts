import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { ConfigError, loadConfig } from '../config/manager-config';
import { EmbeddedPostgresRepository } from '../database/embedded-postgres.repository';
import { prepareDatabase } from '../database/prepare-database';
import { StateDirRepository } from '../pki/state-dir.repository';
import { StateBackupRepository, type StateBackup } from './state-backup.repository';

export const BACKUP_USAGE = `usage: npm run backup -- <file>      back up the manager's state into <file> (created, 0600)
       npm run restore -- <file>     restore it into an empty state directory

Settings as the manager reads them: DEBVISOR_STATE_DIR (the state directory), DATABASE_URL (an
external database instead of the embedded PostgreSQL). The backup holds every table (one consistent
snapshot), secret.key and pki/ of the state directory: keep it as safe as the state directory.
A running manager's embedded PostgreSQL is read where it runs; a stopped one is started for the
backup. Restore into an empty state directory (with an external database: an empty one, as
DATABASE_ADMIN_URL a superuser), with the same manager version as the backup, then start the manager.`;

export interface BackupIo {
  /** Settings as the manager reads them; the process environment when left out. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  out(text: string): void;
  err(text: string): void;
}

/** Exit codes of `npm run backup` and `npm run restore`. */
export const BACKUP_EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** `npm run backup` (`mode` backup) and `npm run restore` (`mode` restore): answers the exit code. */
export async function runBackupCommand(
  mode: 'backup' | 'restore',
  argv: readonly string[],
  io: BackupIo,
  files = new StateBackupRepository(),
): Promise<number> {
  let file: string;
  try {
    const { positionals, values } = parseArgs({
      args: [...argv],
      options: { help: { type: 'boolean', short: 'h', default: false } },
      strict: true,
      allowPositionals: true,
    });
    if (values.help) {
      io.out(`${BACKUP_USAGE}\n`);
      return BACKUP_EXIT.ok;
    }
    if (positionals.length !== 1 || !positionals[0])
      throw new Error('give exactly one backup file');
    file = positionals[0];
  } catch (error) {
    io.err(`${mode}: ${error instanceof Error ? error.message : String(error)}\n${BACKUP_USAGE}\n`);
    return BACKUP_EXIT.usage;
  }
  try {
    const summary =
      mode === 'backup' ? await backup(file, io.env, files) : await restore(file, io.env, files);
    io.out(`${summary}\n`);
    return BACKUP_EXIT.ok;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    io.err(`${mode}: ${message}\n`);
    return error instanceof ConfigError ? BACKUP_EXIT.usage : BACKUP_EXIT.failed;
  }
}

async function backup(
  file: string,
  env: BackupIo['env'],
  files: StateBackupRepository,
): Promise<string> {
  const config = loadConfig(env);
  const stateFiles = files.readStateFiles(config.stateDir);
  const database = await openDatabase(config.stateDir, config.databaseUrl, files);
  let dump: Awaited<ReturnType<StateBackupRepository['dumpDatabase']>>;
  try {
    dump = await files.dumpDatabase(database.url);
  } finally {
    await database.close();
  }
  const content: StateBackup = {
    format: 'debvisor-manager-backup',
    version: 1,
    createdAt: new Date().toISOString(),
    files: stateFiles,
    ...dump,
  };
  files.writeBackup(file, content);
  const rows = Object.values(dump.tables).reduce((sum, t) => sum + t.length, 0);
  return `backed up ${Object.keys(dump.tables).length} tables (${rows} rows) and ${Object.keys(stateFiles).length} state files of ${config.stateDir} into ${file}`;
}

async function restore(
  file: string,
  env: BackupIo['env'],
  files: StateBackupRepository,
): Promise<string> {
  const config = loadConfig(env);
  const content = files.readBackup(file);
  if (files.isStateDir(config.stateDir))
    throw new Error(
      `${config.stateDir} already holds a manager's state: restore into an empty state directory`,
    );
  const state = new StateDirRepository(config.stateDir);
  state.ensureStateDir();
  files.writeStateFiles(config.stateDir, content.files);
  const logger = pino({ level: 'warn' }, pino.destination(2));
  let embedded: EmbeddedPostgresRepository | undefined;
  let superuserUrl: string;
  try {
    if (config.databaseUrl) {
      await prepareDatabase(config, {}, logger);
      superuserUrl = config.databaseAdminUrl ?? config.databaseUrl;
    } else {
      embedded = new EmbeddedPostgresRepository(
        state.postgresDir,
        state.loadOrCreateDatabasePassword(),
      );
      superuserUrl = await embedded.start();
      await prepareDatabase(
        config,
        {
          embeddedSuperuserUrl: superuserUrl,
          runtimePassword: () => state.loadOrCreateAppDatabasePassword(),
        },
        logger,
      );
    }
    const applied = await files.appliedMigrations(superuserUrl);
    if (JSON.stringify(applied) !== JSON.stringify(content.migrations))
      throw new Error(
        `the backup was made with another schema (${content.migrations.length} migrations, last ${content.migrations.at(-1)}) than this manager's (${applied.length}, last ${applied.at(-1)}): restore with the manager version that made it`,
      );
    await files.loadDatabase(superuserUrl, content);
  } finally {
    await embedded?.stop();
  }
  const rows = Object.values(content.tables).reduce((sum, t) => sum + t.length, 0);
  return `restored ${Object.keys(content.tables).length} tables (${rows} rows) of the backup made ${content.createdAt} into ${config.stateDir}${config.databaseUrl ? '' : ` (embedded PostgreSQL in ${join(config.stateDir, 'postgres')})`}; start the manager on it`;
}

/**
 * The manager's database, as the manager finds it: DATABASE_URL, else the embedded PostgreSQL of
 * the state directory — the running one as its superuser (its port from postmaster.pid), or, when
 * the manager is stopped, started for the backup.
 */
async function openDatabase(
  stateDir: string,
  databaseUrl: string | undefined,
  files: StateBackupRepository,
): Promise<{ url: string; close(): Promise<void> }> {
  const none = async () => undefined;
  if (databaseUrl) return { url: databaseUrl, close: none };
  const password = files.embeddedPassword(stateDir);
  const port = files.embeddedPort(stateDir);
  if (port !== undefined) {
    const url = new URL(`postgres://127.0.0.1:${port}/postgres`);
    url.username = 'postgres';
    url.password = password;
    return { url: url.toString(), close: none };
  }
  const embedded = new EmbeddedPostgresRepository(join(stateDir, 'postgres'), password);
  return { url: await embedded.start(), close: () => embedded.stop() };
}
