import { startPostgres, tempDir, type PostgresInstance } from '@debvisor/testing';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Client } from 'pg';
import { request as httpsRequest } from 'node:https';
import { Writable } from 'node:stream';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../src/database/data-source-options';
import { startManager, type RunningManager } from '../src/manager-app';

/** One PostgreSQL per test file, with a migrated template database that each test clones. */
export interface TestDatabases {
  readonly postgres: PostgresInstance;
  /** A fresh, migrated database (a clone of the template). */
  fresh(): Promise<string>;
  stop(): Promise<void>;
}

export async function startTestDatabases(): Promise<TestDatabases> {
  const postgres = await startPostgres();
  const templateUrl = await postgres.createDatabase();
  const dataSource = new DataSource(dataSourceOptions(templateUrl));
  await dataSource.initialize();
  await dataSource.runMigrations({ transaction: 'each' });
  await dataSource.destroy();
  const template = new URL(templateUrl).pathname.slice(1);
  return { postgres, fresh: () => postgres.createDatabase(template), stop: () => postgres.stop() };
}

/** Answers are checked field by field in the tests; their bodies are loosely typed on purpose. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export interface ApiAnswer<T = Json> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
  text: string;
}

export interface TestManager {
  readonly manager: RunningManager;
  readonly url: string;
  readonly stateDir: string;
  readonly databaseUrl: string | undefined;
  /** The bootstrap token printed at the first start (undefined on later starts). */
  readonly token: string | undefined;
  /** Everything printed for the operator (the banner). */
  operatorOutput(): string;
  /** Every JSON log line so far. */
  logs(): string;
  /** A request with the bootstrap token (or `token` given in options). */
  api<T = Json>(
    method: string,
    path: string,
    body?: unknown,
    options?: RequestOptions,
  ): Promise<ApiAnswer<T>>;
  stop(): Promise<void>;
}

export interface RequestOptions {
  /** `null`: no Authorization header. */
  token?: string | null;
  headers?: Record<string, string>;
  /** A raw body, sent as is (for malformed JSON or oversized bodies). */
  raw?: string | Buffer;
}

export interface TestManagerOptions {
  databaseUrl?: string;
  stateDir?: string;
  /** A token to use for api() when this start printed none (a restart). */
  token?: string;
  env?: Record<string, string>;
}

class Collector extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}

/**
 * The real manager (startManager) on a free loopback port with HTTPS, in its own state directory;
 * logs and operator output are captured instead of printed.
 */
export async function startTestManager(options: TestManagerOptions = {}): Promise<TestManager> {
  const stateDir = options.stateDir ?? tempDir('debvisor-manager-');
  const logs = new Collector();
  const operator = new Collector();
  const manager = await startManager({
    env: {
      DEBVISOR_STATE_DIR: stateDir,
      DEBVISOR_LISTEN: '127.0.0.1:0',
      ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {}),
      DEBVISOR_POLL_INTERVAL_SECONDS: '3600',
      DEBVISOR_REMOTE_TIMEOUT_MS: '3000',
      DEBVISOR_LOG_LEVEL: 'info',
      DEBVISOR_WEB_DIR: `${stateDir}/no-web-ui`,
      // The HTTP-01 listener on a free port (port 80 is for production).
      DEBVISOR_HTTP_LISTEN: '127.0.0.1:0',
      // Tests make many (also failing) requests from one address; the specs of the limits set them low.
      DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE: '100000',
      ...options.env,
    },
    logDestination: logs,
    operatorOutput: operator,
  });
  const token = /bootstrap admin token: (dvdm_\S+)/.exec(operator.text)?.[1];
  const ca = readFileSync(`${stateDir}/pki/server-ca.crt`, 'utf8');
  const base = `https://127.0.0.1:${manager.port}`;
  return {
    manager,
    url: base,
    stateDir,
    databaseUrl: options.databaseUrl,
    token,
    operatorOutput: () => operator.text,
    logs: () => logs.text,
    api: (method, path, body, requestOptions = {}) =>
      call(base, ca, method, path, body, {
        ...requestOptions,
        token: requestOptions.token === undefined ? (token ?? options.token) : requestOptions.token,
      }),
    stop: () => manager.stop(),
  };
}

function call<T>(
  base: string,
  ca: string,
  method: string,
  path: string,
  body: unknown,
  options: RequestOptions,
): Promise<ApiAnswer<T>> {
  const payload = options.raw ?? (body === undefined ? undefined : JSON.stringify(body));
  const headers: Record<string, string | number> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (payload !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = Buffer.byteLength(payload);
  }
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${base}${path}`,
      { method, ca, servername: 'localhost', headers, timeout: 30_000 },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          let parsed: unknown = text;
          const type = res.headers['content-type'] ?? '';
          if (type.includes('json') && !type.includes('ndjson') && text) parsed = JSON.parse(text);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed as T, text });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Polls `check` until it answers a value (not undefined) or `timeoutMs` passes. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
}

/**
 * A state directory that already holds a manager client identity (the manager reuses it instead
 * of creating one), so that agents started before the manager can trust its client CA.
 */
export function stateDirWithClientIdentity(identity: {
  ca: { certPem: string; keyPem: string };
  client: { certPem: string; keyPem: string };
}): string {
  const stateDir = tempDir('debvisor-manager-');
  const pki = `${stateDir}/pki`;
  mkdirSync(pki, { recursive: true, mode: 0o700 });
  writeFileSync(`${pki}/client-ca.crt`, identity.ca.certPem);
  writeFileSync(`${pki}/client-ca.key`, identity.ca.keyPem, { mode: 0o600 });
  writeFileSync(`${pki}/client.crt`, identity.client.certPem);
  writeFileSync(`${pki}/client.key`, identity.client.keyPem, { mode: 0o600 });
  return stateDir;
}

/** One SQL statement against a test database (for arranging and checking state around API calls). */
export async function sqlQuery<T = Json>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

/**
 * An API token of the local user `principal` (created when missing) holding `role` on `path`,
 * written straight into the database: answers the token string.
 */
export async function grantToken(
  url: string,
  principal: string,
  role: string,
  path: string,
): Promise<string> {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  await sqlQuery(
    url,
    "INSERT INTO users (id, realm_id, username, created_at) VALUES ($1::varchar, 'local', split_part($1::varchar, '@', 1), now()) ON CONFLICT DO NOTHING",
    [principal],
  );
  await sqlQuery(
    url,
    'INSERT INTO api_tokens (id, principal, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, now())',
    [id, principal, `test-${id}`, createHash('sha256').update(secret).digest('hex')],
  );
  await sqlQuery(
    url,
    'INSERT INTO acl_entries (id, path, principal, role, created_at) VALUES ($1, $2, $3, $4, now()) ON CONFLICT DO NOTHING',
    [randomUUID(), path, principal, role],
  );
  return `dvdm_${id}_${secret}`;
}
