import { verifyChain, verifyFiles, type ChainReport, type FileChainReport } from '@debvisor/audit';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { ConfigError, loadConfig } from '../config/manager-config';
import { EmbeddedPostgresRepository } from '../database/embedded-postgres.repository';
import { EMBEDDED_RUNTIME_ROLE } from '../database/runtime-role.repository';
import { readAuditChain } from './audit-chain.reader';

/** Exit codes of `npm run audit:verify`. */
export const VERIFY_EXIT = { intact: 0, broken: 1, usage: 2, unreadable: 3 } as const;

export const VERIFY_USAGE = `usage: npm run audit:verify -- [--database-url <postgres://…>] [--file <audit.jsonl> …] [--allow-gaps] [--json]

Walks the audit log's hash chain and names the first edited, deleted, inserted or reordered entry.
  (no option)       the manager's database, found as the manager finds it: DATABASE_URL, else the
                    embedded PostgreSQL in DEBVISOR_STATE_DIR (started for the check if the manager is not running)
  --database-url    that database instead
  --file            JSON-lines files (an export, the file sink, an agent's audit file) as one chain, in the
                    order given (rotated files oldest first, then the live file); repeat for several
  --allow-gaps      for a filtered export: sequence numbers may jump (each entry is still checked)
  --json            print the result as JSON
Exit codes: 0 intact, 1 broken, 2 usage error, 3 cannot read the log.`;

export interface VerifyIo {
  /** Settings as the manager reads them; the process environment, through the config module, when left out. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  out(text: string): void;
  err(text: string): void;
}

class UsageError extends Error {}

/** `npm run audit:verify`: answers the exit code. */
export async function runVerify(argv: readonly string[], io: VerifyIo): Promise<number> {
  let options: { databaseUrl?: string; files: string[]; allowGaps: boolean; json: boolean };
  try {
    options = parseOptions(argv);
  } catch (error) {
    if (error instanceof HelpRequested) {
      io.out(`${VERIFY_USAGE}\n`);
      return VERIFY_EXIT.intact;
    }
    io.err(`audit:verify: ${(error as Error).message}\n${VERIFY_USAGE}\n`);
    return VERIFY_EXIT.usage;
  }

  let source: string;
  let report: ChainReport | FileChainReport;
  try {
    if (options.files.length > 0) {
      source = options.files.join(', ');
      for (const file of options.files)
        if (!existsSync(file)) throw new UsageError(`no such file: ${file}`);
      report = await verifyFiles(options.files, { allowGaps: options.allowGaps });
    } else {
      const database = await openDatabase(options.databaseUrl, io.env);
      source = database.description;
      try {
        report = await verifyDatabase(database.url, options.allowGaps);
      } finally {
        await database.close();
      }
    }
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError) {
      io.err(`audit:verify: ${error.message}\n`);
      return VERIFY_EXIT.usage;
    }
    io.err(`audit:verify: cannot read the audit log: ${(error as Error).message}\n`);
    return VERIFY_EXIT.unreadable;
  }

  if (options.json) io.out(`${JSON.stringify({ source, ...report })}\n`);
  else io.out(`${describe(source, report)}\n`);
  return report.ok ? VERIFY_EXIT.intact : VERIFY_EXIT.broken;
}

/** The audit_log table of `url`, which must start at the chain's first entry. */
export async function verifyDatabase(url: string, allowGaps = false): Promise<ChainReport> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    // One snapshot for the whole walk: entries appended meanwhile do not make it inconsistent.
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const report = await verifyChain(readAuditChain(client), { fromGenesis: true, allowGaps });
    await client.query('COMMIT');
    return report;
  } finally {
    await client.end();
  }
}

function describe(source: string, report: ChainReport | FileChainReport): string {
  const span =
    report.entries > 0
      ? `${report.entries} entries, seq ${report.firstSeq} to ${report.lastSeq}`
      : 'no entries';
  if (report.ok) {
    const lines = [`audit log intact (${source}): ${span}`];
    if (report.headHash) lines.push(`head: seq ${report.lastSeq} hash ${report.headHash}`);
    if (report.startsAfter)
      lines.push(
        `the first entry follows an entry with hash ${report.startsAfter}, which is not part of what was checked`,
      );
    if (report.gaps > 0)
      lines.push(`${report.gaps} gaps in the sequence numbers were allowed (--allow-gaps)`);
    lines.push(
      '(entries cut off after the head cannot be seen in a chain: compare the head with an earlier export or the file sink)',
    );
    return lines.join('\n');
  }
  const problem = report.problem!;
  const where =
    'location' in report && report.location
      ? ` (${report.location.file}, line ${report.location.line})`
      : '';
  return [
    `audit log BROKEN (${source}): ${problem.kind} entry at seq ${problem.seq ?? '?'}${where}`,
    problem.message,
    report.entries > 0 ? `the ${span} before it are intact` : 'no intact entry before it',
  ].join('\n');
}

class HelpRequested extends Error {}

function parseOptions(argv: readonly string[]) {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: {
      'database-url': { type: 'string' },
      file: { type: 'string', multiple: true },
      'allow-gaps': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) throw new HelpRequested();
  if (positionals.length > 0) throw new Error(`unexpected argument: ${positionals[0]}`);
  const files = values.file ?? [];
  if (files.length > 0 && values['database-url'])
    throw new Error('give --file or --database-url, not both');
  const url = values['database-url'];
  if (url !== undefined && !/^postgres(ql)?:\/\//.test(url))
    throw new Error('--database-url: expected a postgres:// or postgresql:// URL');
  return {
    databaseUrl: url,
    files,
    allowGaps: values['allow-gaps'] === true,
    json: values.json === true,
  };
}

/**
 * The manager's database, as the manager would find it: --database-url, DATABASE_URL, else the
 * embedded PostgreSQL under the state directory: the running one (its port from postmaster.pid,
 * connecting as the runtime role), or, when the manager is stopped, started for the check.
 */
async function openDatabase(
  given: string | undefined,
  env: VerifyIo['env'],
): Promise<{ url: string; description: string; close(): Promise<void> }> {
  const none = async () => undefined;
  if (given) return { url: given, description: `--database-url ${redactUrl(given)}`, close: none };
  const config = loadConfig(env);
  if (config.databaseUrl)
    return {
      url: config.databaseUrl,
      description: `DATABASE_URL ${redactUrl(config.databaseUrl)}`,
      close: none,
    };

  const dataDir = join(config.stateDir, 'postgres');
  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    throw new UsageError(
      `no embedded PostgreSQL in ${config.stateDir} (DEBVISOR_STATE_DIR); set DATABASE_URL or --database-url`,
    );
  }
  const description = `embedded PostgreSQL in ${dataDir}`;
  const running = runningPort(dataDir);
  if (running !== undefined) {
    const appPassword = join(config.stateDir, 'postgres-app.password');
    const [user, passwordFile] = existsSync(appPassword)
      ? [EMBEDDED_RUNTIME_ROLE, appPassword]
      : ['postgres', join(config.stateDir, 'postgres.password')];
    const url = new URL(`postgres://127.0.0.1:${running}/postgres`);
    url.username = user;
    url.password = readFileSync(passwordFile, 'utf8').trim();
    return { url: url.toString(), description, close: none };
  }
  const embedded = new EmbeddedPostgresRepository(
    dataDir,
    readFileSync(join(config.stateDir, 'postgres.password'), 'utf8').trim(),
  );
  const url = await embedded.start();
  return {
    url,
    description: `${description} (started for the check)`,
    close: () => embedded.stop(),
  };
}

/** The port of the PostgreSQL running on `dataDir` (line 4 of postmaster.pid), if its process lives. */
function runningPort(dataDir: string): number | undefined {
  const pidFile = join(dataDir, 'postmaster.pid');
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

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable URL)';
  }
}
