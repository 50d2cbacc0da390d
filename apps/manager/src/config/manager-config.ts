import { fqdnSchema, ipAddressSchema } from '@debvisor/common';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';

/** The manager's configuration: read once from the environment at start-up, then frozen. */
export interface ManagerConfig {
  /** Absolute path of the state directory (certificates, secret key, embedded PostgreSQL). */
  readonly stateDir: string;
  readonly listen: { readonly host: string; readonly port: number };
  /** External PostgreSQL; when absent the manager runs an embedded one under `<stateDir>/postgres`. */
  readonly databaseUrl: string | undefined;
  /**
   * The external database as its owner, for migrations and for granting the role of `databaseUrl`
   * what it needs (and no more: SELECT and INSERT on the audit log). Only with `databaseUrl`.
   */
  readonly databaseAdminUrl: string | undefined;
  /** JSON-lines copy of the audit log (rotated daily, 30 days kept); unset: none. */
  readonly auditFile: string | undefined;
  readonly pollIntervalSeconds: number;
  /** Deadline of every call to an agent, and the longest an on-demand refresh makes a request wait. */
  readonly remoteTimeoutMs: number;
  readonly webDir: string;
  readonly logLevel: LogLevel;
  /** The URL users reach the manager at, when it differs from the listening address. */
  readonly publicUrl: string | undefined;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** apps/web/dist, next to this package in the source tree and in the built tree alike. */
const DEFAULT_WEB_DIR = resolve(__dirname, '../../../web/dist');

/** host:port with port 0-65535 (0: any free port); an IPv6 host in brackets. */
const listenSchema = z.string().transform((value, ctx) => {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[2]) : NaN;
  const host = match ? (match[1].startsWith('[') ? match[1].slice(1, -1) : match[1]) : '';
  const hostOk = ipAddressSchema.safeParse(host).success || (!match?.[1].startsWith('[') && fqdnSchema.safeParse(host).success);
  if (!match || !hostOk || port > 65535) {
    ctx.addIssue({ code: 'custom', message: 'expected host:port (IPv6 in brackets), port 0-65535, e.g. 0.0.0.0:8443' });
    return z.NEVER;
  }
  return { host, port };
});

const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'expected a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const envSchema = z.object({
  DEBVISOR_STATE_DIR: z.string().default('/var/lib/debvisor-manager'),
  DEBVISOR_LISTEN: listenSchema.default({ host: '0.0.0.0', port: 8443 }),
  DATABASE_URL: z
    .url({ protocol: /^postgres(ql)?$/, error: 'expected a postgres:// or postgresql:// URL' })
    .optional(),
  DATABASE_ADMIN_URL: z
    .url({ protocol: /^postgres(ql)?$/, error: 'expected a postgres:// or postgresql:// URL' })
    .optional(),
  DEBVISOR_AUDIT_FILE: z.string().optional(),
  DEBVISOR_POLL_INTERVAL_SECONDS: integer(1, 86_400).default(60),
  DEBVISOR_REMOTE_TIMEOUT_MS: integer(100, 600_000).default(5000),
  DEBVISOR_WEB_DIR: z.string().default(DEFAULT_WEB_DIR),
  DEBVISOR_LOG_LEVEL: z.enum(LOG_LEVELS, { error: `expected one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  DEBVISOR_PUBLIC_URL: z.url({ protocol: /^https?$/, error: 'expected an http(s):// URL' }).optional(),
});

/** Start-up stops with this when a setting is wrong; the message names every bad setting. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Parses the manager's settings from `env` (the process environment by default: the only place in
 * the manager that reads it). Empty values count as unset.
 */
export function loadConfig(env: Env = process.env): ManagerConfig {
  const relevant = Object.fromEntries(
    Object.keys(envSchema.shape)
      .map((key) => [key, env[key]?.trim()])
      .filter(([, value]) => value !== undefined && value !== ''),
  );
  const parsed = envSchema.safeParse(relevant);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  if (e.DATABASE_ADMIN_URL && !e.DATABASE_URL) {
    throw new ConfigError('invalid configuration: DATABASE_ADMIN_URL: set only together with DATABASE_URL (the embedded PostgreSQL needs neither)');
  }
  const config: ManagerConfig = {
    stateDir: absolute(e.DEBVISOR_STATE_DIR),
    listen: Object.freeze({ ...e.DEBVISOR_LISTEN }),
    databaseUrl: e.DATABASE_URL,
    databaseAdminUrl: e.DATABASE_ADMIN_URL,
    auditFile: e.DEBVISOR_AUDIT_FILE ? absolute(e.DEBVISOR_AUDIT_FILE) : undefined,
    pollIntervalSeconds: e.DEBVISOR_POLL_INTERVAL_SECONDS,
    remoteTimeoutMs: e.DEBVISOR_REMOTE_TIMEOUT_MS,
    webDir: absolute(e.DEBVISOR_WEB_DIR),
    logLevel: e.DEBVISOR_LOG_LEVEL,
    publicUrl: e.DEBVISOR_PUBLIC_URL?.replace(/\/+$/, ''),
  };
  return Object.freeze(config);
}

function absolute(path: string): string {
  return isAbsolute(path) ? resolve(path) : join(process.cwd(), path);
}

/** The injection token of the frozen configuration. */
export const MANAGER_CONFIG = Symbol('MANAGER_CONFIG');
