import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Client } from 'pg';

/** The table TypeORM keeps its applied migrations in (data-source-options.ts). */
export const MIGRATIONS_TABLE = 'typeorm_migrations';

/** What a backup file holds: the manager's files that the database cannot do without, and every table. */
export interface StateBackup {
  readonly format: 'debvisor-manager-backup';
  readonly version: 1;
  readonly createdAt: string;
  /** Applied migrations, oldest first: a restore needs a manager of the same schema. */
  readonly migrations: string[];
  /** State directory files (secret.key, pki/…), base64, by path relative to the state directory. */
  readonly files: Record<string, string>;
  /** Every table of the public schema as JSON rows (row_to_json), the migrations table included. */
  readonly tables: Record<string, unknown[]>;
  /** Sequences of the public schema and their last values. */
  readonly sequences: Record<string, string | null>;
}

/**
 * The state directory files a backup carries: the key that seals credentials, the PKI (the
 * HTTPS CA that clients pin, the client CA that agents trust), and https/ (the served ACME or
 * uploaded certificate, the ACME accounts). Not the embedded PostgreSQL's data or passwords: a
 * restore makes a new server and roles of its own.
 */
const STATE_FILES = /^(secret\.key|(pki|https)\/[A-Za-z0-9._-]+)$/;

/** Reads and writes backups: the database through `pg`, the state directory and the backup file. */
export class StateBackupRepository {
  /** One consistent snapshot (REPEATABLE READ) of every table and sequence of the public schema. */
  async dumpDatabase(
    url: string,
  ): Promise<Pick<StateBackup, 'tables' | 'sequences' | 'migrations'>> {
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const tables = await client.query<{ name: string }>(
        "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name",
      );
      const dump: Record<string, unknown[]> = {};
      for (const { name } of tables.rows) {
        const rows = await client.query<{ row: unknown }>(
          `SELECT row_to_json(t) AS row FROM ${quoteIdent(name)} t`,
        );
        dump[name] = rows.rows.map((r) => r.row);
      }
      const sequences = await client.query<{ name: string; value: string | null }>(
        "SELECT sequencename AS name, last_value::text AS value FROM pg_sequences WHERE schemaname = 'public' ORDER BY sequencename",
      );
      await client.query('COMMIT');
      const migrations = ((dump[MIGRATIONS_TABLE] ?? []) as { timestamp: string; name: string }[])
        .slice()
        .sort((a, b) => Number(a.timestamp) - Number(b.timestamp))
        .map((m) => m.name);
      return {
        tables: dump,
        sequences: Object.fromEntries(sequences.rows.map((s) => [s.name, s.value])),
        migrations,
      };
    } finally {
      await client.end();
    }
  }

  /** Names of the migrations applied to the database at `url`, oldest first. */
  async appliedMigrations(url: string): Promise<string[]> {
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      const rows = await client.query<{ name: string }>(
        `SELECT name FROM ${quoteIdent(MIGRATIONS_TABLE)} ORDER BY timestamp`,
      );
      return rows.rows.map((r) => r.name);
    } finally {
      await client.end();
    }
  }

  /**
   * Replaces every table's rows with the backup's, in one transaction, as the superuser with
   * triggers and foreign keys held (session_replication_role = replica: the rows are restored as
   * they were, the audit log's append-only trigger included), then sets the sequences.
   */
  async loadDatabase(url: string, backup: StateBackup): Promise<void> {
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      const present = await client.query<{ name: string }>(
        "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
      );
      const known = new Set(present.rows.map((r) => r.name));
      for (const name of Object.keys(backup.tables)) {
        if (!known.has(name)) throw new Error(`the database has no table ${name}`);
      }
      for (const name of Object.keys(backup.tables)) {
        const table = quoteIdent(name);
        await client.query(`DELETE FROM ${table}`);
        const rows = backup.tables[name];
        for (let i = 0; i < rows.length; i += 500) {
          await client.query(
            `INSERT INTO ${table} OVERRIDING SYSTEM VALUE SELECT * FROM json_populate_recordset(NULL::${table}, $1::json)`,
            [JSON.stringify(rows.slice(i, i + 500))],
          );
        }
      }
      for (const [name, value] of Object.entries(backup.sequences)) {
        if (value === null) continue;
        await client.query('SELECT setval($1::regclass, $2::bigint)', [quoteIdent(name), value]);
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      await client.end();
    }
  }

  /** The state directory files a backup carries. */
  readStateFiles(stateDir: string): Record<string, string> {
    const files: Record<string, string> = {};
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        const name = relative(stateDir, path).split('\\').join('/');
        if (entry.isDirectory() && (name === 'pki' || name === 'https')) walk(path);
        else if (entry.isFile() && STATE_FILES.test(name))
          files[name] = readFileSync(path).toString('base64');
      }
    };
    walk(stateDir);
    if (!files['secret.key'])
      throw new Error(`${stateDir} holds no secret.key: not a state directory`);
    return files;
  }

  /** Writes the backup's files into a new state directory: directories 0700, files 0600. */
  writeStateFiles(stateDir: string, files: Record<string, string>): void {
    for (const [name, content] of Object.entries(files)) {
      if (!STATE_FILES.test(name)) throw new Error(`the backup holds an unexpected file ${name}`);
      const path = join(stateDir, name);
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      writeFileSync(path, Buffer.from(content, 'base64'), { mode: 0o600, flag: 'wx' });
    }
  }

  /** True when `stateDir` already holds a manager's state (a key or a database). */
  isStateDir(stateDir: string): boolean {
    return (
      existsSync(join(stateDir, 'secret.key')) ||
      existsSync(join(stateDir, 'postgres', 'PG_VERSION'))
    );
  }

  /** The port of the embedded PostgreSQL running on `stateDir` (line 4 of postmaster.pid), if its process lives. */
  embeddedPort(stateDir: string): number | undefined {
    const pidFile = join(stateDir, 'postgres', 'postmaster.pid');
    if (!existsSync(pidFile)) return undefined;
    const lines = readFileSync(pidFile, 'utf8').split('\n');
    const pid = Number(lines[0]);
    const port = Number(lines[3]);
    if (!Number.isInteger(pid) || !Number.isInteger(port) || port <= 0) return undefined;
    try {
      process.kill(pid, 0);
      return port;
    } catch (error) {
      // EPERM: it lives, under another user (PostgreSQL run as `postgres`).
      return (error as NodeJS.ErrnoException).code === 'EPERM' ? port : undefined;
    }
  }

  /** The embedded PostgreSQL's superuser password, as the manager wrote it. */
  embeddedPassword(stateDir: string): string {
    return readFileSync(join(stateDir, 'postgres.password'), 'utf8').trim();
  }

  /** Writes the backup, gzipped JSON, readable only by its owner; never over an existing file. */
  writeBackup(file: string, backup: StateBackup): void {
    writeFileSync(file, gzipSync(JSON.stringify(backup)), { mode: 0o600, flag: 'wx' });
  }

  readBackup(file: string): StateBackup {
    if (!statSync(file).isFile()) throw new Error(`${file} is not a file`);
    const backup = JSON.parse(gunzipSync(readFileSync(file)).toString('utf8')) as StateBackup;
    if (backup.format !== 'debvisor-manager-backup' || backup.version !== 1)
      throw new Error(`${file} is not a DebVisor manager backup (format 1)`);
    return backup;
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
