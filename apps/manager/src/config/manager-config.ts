import { fqdnSchema, ipAddressSchema } from '@debvisor/common';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';

/** The manager's configuration: read once from the environment at start-up, then frozen. */
export interface ManagerConfig {
  /** Absolute path of the state directory (certificates, secret key, embedded PostgreSQL). */
  readonly stateDir: string;
  readonly listen: { readonly host: string; readonly port: number };
  /**
   * A listener of its own for `GET /metrics` (HTTPS, same certificate, no token), for a Prometheus
   * that holds no API token; unset: `/metrics` only on the main port, with a token.
   */
  readonly metricsListen: { readonly host: string; readonly port: number } | undefined;
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
  /** How often the manager reads every remote's HA state (coordinator, fenced nodes, recoveries). */
  readonly haPollIntervalSeconds: number;
  /** Deadline of every call to an agent, and the longest an on-demand refresh makes a request wait. */
  readonly remoteTimeoutMs: number;
  readonly webDir: string;
  readonly logLevel: LogLevel;
  /** The URL users reach the manager at, when it differs from the listening address. */
  readonly publicUrl: string | undefined;
  readonly access: AccessConfig;
  readonly snapshots: SnapshotsConfig;
  /**
   * After a restart, how long the recovery of a migration the previous process left running waits
   * for both ends (source and target remotes) to answer before it decides the migration's outcome.
   */
  readonly migrationRecoveryWaitSeconds: number;
  /**
   * The most bytes per second all migrations between two remotes (a datacenter link) may use
   * together; 0: no cap. Each migration's own bandwidth limit stays below its share.
   */
  readonly migrationLinkCapBytes: number;
  readonly console: ConsoleConfig;
  readonly certificates: CertificatesConfig;
}

/** The manager's own HTTPS certificate: the HTTP-01 listener, extra trusted roots, renewal checks. */
export interface CertificatesConfig {
  /** The plain-HTTP listener (HTTP-01 answers, redirects to HTTPS); undefined when off. */
  readonly httpListen: { readonly host: string; readonly port: number } | undefined;
  /** PEM roots trusted besides the system's: private ACME CAs' directories, uploaded chains' anchors. */
  readonly extraCaFile: string | undefined;
  /** How often the renewal check runs. */
  readonly renewCheckSeconds: number;
  /** Lifetime of the client certificate the manager presents to agents (renewed at 70–90 % of it). */
  readonly clientLifetimeSeconds: number;
}

/** VM consoles in the browser. */
export interface ConsoleConfig {
  /** Whether an API token may open a console (by default only a login session may). */
  readonly allowApiTokens: boolean;
}

/** VM snapshots: the per-principal quota and how often schedules are looked at. */
export interface SnapshotsConfig {
  /** Snapshots one principal may hold of one VM (taken by hand or by its schedules). */
  readonly quotaPerVm: number;
  /** How often the scheduler starts the snapshot schedules that are due. */
  readonly scheduleTickSeconds: number;
}

/** Login, sessions and abuse limits. */
export interface AccessConfig {
  /** A session ends after this long without a request … */
  readonly sessionIdleSeconds: number;
  /** … and this long after the login, whatever the activity. */
  readonly sessionMaxSeconds: number;
  /** The first start's admin@local password; unset: a generated one, printed once. */
  readonly adminPassword: string | undefined;
  /** How long the first start's bootstrap token lives. */
  readonly bootstrapTokenSeconds: number;
  readonly passwordMinLength: number;
  /** Password and second-factor attempts per source address and minute. */
  readonly loginAttemptsPerMinute: number;
  /** Wrong passwords in a row before the account refuses passwords for `lockSeconds`. */
  readonly loginFailuresBeforeLock: number;
  readonly lockSeconds: number;
  /** API requests per principal and minute, and for the whole manager per second. */
  readonly rateLimitPerPrincipal: number;
  readonly rateLimitGlobal: number;
  /** API tokens one user or group may hold (not counting revoked ones). */
  readonly tokensPerOwner: number;
  /**
   * Reverse proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client; empty: the
   * TCP peer is the client and X-Forwarded-For is ignored.
   */
  readonly trustedProxies: readonly string[];
  /**
   * How a user who must use a second factor and has none enrols it: `admin-approval` (the default)
   * needs a one-time code an administrator issues; `password` lets the password alone do it.
   */
  readonly tfaEnrolment: 'admin-approval' | 'password';
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
  const hostOk =
    ipAddressSchema.safeParse(host).success ||
    (!match?.[1].startsWith('[') && fqdnSchema.safeParse(host).success);
  if (!match || !hostOk || port > 65535) {
    ctx.addIssue({
      code: 'custom',
      message: 'expected host:port (IPv6 in brackets), port 0-65535, e.g. 0.0.0.0:8443',
    });
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
  DEBVISOR_METRICS_LISTEN: listenSchema.optional(),
  DEBVISOR_BOOTSTRAP_TOKEN_HOURS: integer(1, 8760).default(24),
  DATABASE_URL: z
    .url({ protocol: /^postgres(ql)?$/, error: 'expected a postgres:// or postgresql:// URL' })
    .optional(),
  DATABASE_ADMIN_URL: z
    .url({ protocol: /^postgres(ql)?$/, error: 'expected a postgres:// or postgresql:// URL' })
    .optional(),
  DEBVISOR_AUDIT_FILE: z.string().optional(),
  DEBVISOR_POLL_INTERVAL_SECONDS: integer(1, 86_400).default(60),
  DEBVISOR_HA_POLL_INTERVAL_SECONDS: integer(1, 3600).default(10),
  DEBVISOR_REMOTE_TIMEOUT_MS: integer(100, 600_000).default(5000),
  DEBVISOR_WEB_DIR: z.string().default(DEFAULT_WEB_DIR),
  DEBVISOR_LOG_LEVEL: z
    .enum(LOG_LEVELS, { error: `expected one of ${LOG_LEVELS.join(', ')}` })
    .default('info'),
  DEBVISOR_PUBLIC_URL: z
    .url({ protocol: /^https?$/, error: 'expected an http(s):// URL' })
    .optional(),
  DEBVISOR_SESSION_IDLE_MINUTES: integer(1, 10_080).default(30),
  DEBVISOR_SESSION_MAX_HOURS: integer(1, 720).default(12),
  DEBVISOR_ADMIN_PASSWORD: z
    .string()
    .min(12, 'must be at least 12 characters')
    .max(256, 'must be at most 256 characters')
    .optional(),
  DEBVISOR_PASSWORD_MIN_LENGTH: integer(8, 128).default(12),
  DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE: integer(1, 100_000).default(30),
  DEBVISOR_LOGIN_FAILURES_BEFORE_LOCK: integer(1, 1000).default(5),
  DEBVISOR_LOGIN_LOCK_MINUTES: integer(1, 10_080).default(15),
  DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: integer(1, 10_000_000).default(1200),
  DEBVISOR_RATE_LIMIT_GLOBAL: integer(1, 10_000_000).default(1000),
  DEBVISOR_TOKENS_PER_OWNER: integer(1, 10_000).default(100),
  DEBVISOR_TFA_ENROLMENT: z
    .enum(['admin-approval', 'password'], { error: 'expected admin-approval or password' })
    .default('admin-approval'),
  DEBVISOR_TRUSTED_PROXIES: z
    .string()
    .transform((value) =>
      value
        .split(',')
        .map((entry) => entry.trim())
        .filter(Boolean),
    )
    .refine(
      (entries) => entries.length <= 64 && entries.every(isAddressOrCidr),
      'expected up to 64 IP addresses or CIDR ranges, separated by commas (e.g. 10.0.0.5, 192.0.2.0/24)',
    )
    .default([]),
  DEBVISOR_SNAPSHOT_QUOTA_PER_VM: integer(1, 10_000).default(100),
  DEBVISOR_SNAPSHOT_SCHEDULE_TICK_SECONDS: integer(1, 3600).default(60),
  DEBVISOR_MIGRATION_RECOVERY_WAIT_SECONDS: integer(0, 3600).default(120),
  DEBVISOR_MIGRATION_LINK_CAP_BYTES: integer(0, Number.MAX_SAFE_INTEGER).default(0),
  DEBVISOR_CONSOLE_ALLOW_API_TOKENS: z
    .enum(['true', 'false'], { error: 'expected true or false' })
    .default('false'),
  DEBVISOR_HTTP_LISTEN: z.literal('off').or(listenSchema).default({ host: '0.0.0.0', port: 80 }),
  DEBVISOR_EXTRA_CA_FILE: z.string().optional(),
  DEBVISOR_CERTIFICATE_CHECK_SECONDS: integer(1, 86_400).default(3600),
  DEBVISOR_CLIENT_CERTIFICATE_LIFETIME_SECONDS: integer(5, 397 * 86_400).default(86_400),
});

/** `10.0.0.5`, `192.0.2.0/24`, `2001:db8::/32`. */
function isAddressOrCidr(entry: string): boolean {
  const [address, prefix, extra] = entry.split('/');
  if (extra !== undefined || !ipAddressSchema.safeParse(address).success) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (address.includes(':') ? 128 : 32);
}

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
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join('.')}: ${issue.message}`,
    );
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  if (e.DATABASE_ADMIN_URL && !e.DATABASE_URL) {
    throw new ConfigError(
      'invalid configuration: DATABASE_ADMIN_URL: set only together with DATABASE_URL (the embedded PostgreSQL needs neither)',
    );
  }
  const config: ManagerConfig = {
    stateDir: absolute(e.DEBVISOR_STATE_DIR),
    listen: Object.freeze({ ...e.DEBVISOR_LISTEN }),
    metricsListen: e.DEBVISOR_METRICS_LISTEN
      ? Object.freeze({ ...e.DEBVISOR_METRICS_LISTEN })
      : undefined,
    databaseUrl: e.DATABASE_URL,
    databaseAdminUrl: e.DATABASE_ADMIN_URL,
    auditFile: e.DEBVISOR_AUDIT_FILE ? absolute(e.DEBVISOR_AUDIT_FILE) : undefined,
    pollIntervalSeconds: e.DEBVISOR_POLL_INTERVAL_SECONDS,
    haPollIntervalSeconds: e.DEBVISOR_HA_POLL_INTERVAL_SECONDS,
    remoteTimeoutMs: e.DEBVISOR_REMOTE_TIMEOUT_MS,
    webDir: absolute(e.DEBVISOR_WEB_DIR),
    logLevel: e.DEBVISOR_LOG_LEVEL,
    publicUrl: e.DEBVISOR_PUBLIC_URL?.replace(/\/+$/, ''),
    access: Object.freeze({
      sessionIdleSeconds: e.DEBVISOR_SESSION_IDLE_MINUTES * 60,
      sessionMaxSeconds: e.DEBVISOR_SESSION_MAX_HOURS * 3600,
      adminPassword: e.DEBVISOR_ADMIN_PASSWORD,
      bootstrapTokenSeconds: e.DEBVISOR_BOOTSTRAP_TOKEN_HOURS * 3600,
      passwordMinLength: e.DEBVISOR_PASSWORD_MIN_LENGTH,
      loginAttemptsPerMinute: e.DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE,
      loginFailuresBeforeLock: e.DEBVISOR_LOGIN_FAILURES_BEFORE_LOCK,
      lockSeconds: e.DEBVISOR_LOGIN_LOCK_MINUTES * 60,
      rateLimitPerPrincipal: e.DEBVISOR_RATE_LIMIT_PER_PRINCIPAL,
      rateLimitGlobal: e.DEBVISOR_RATE_LIMIT_GLOBAL,
      tokensPerOwner: e.DEBVISOR_TOKENS_PER_OWNER,
      trustedProxies: Object.freeze([...e.DEBVISOR_TRUSTED_PROXIES]),
      tfaEnrolment: e.DEBVISOR_TFA_ENROLMENT,
    }),
    snapshots: Object.freeze({
      quotaPerVm: e.DEBVISOR_SNAPSHOT_QUOTA_PER_VM,
      scheduleTickSeconds: e.DEBVISOR_SNAPSHOT_SCHEDULE_TICK_SECONDS,
    }),
    migrationRecoveryWaitSeconds: e.DEBVISOR_MIGRATION_RECOVERY_WAIT_SECONDS,
    migrationLinkCapBytes: e.DEBVISOR_MIGRATION_LINK_CAP_BYTES,
    console: Object.freeze({ allowApiTokens: e.DEBVISOR_CONSOLE_ALLOW_API_TOKENS === 'true' }),
    certificates: Object.freeze({
      httpListen:
        e.DEBVISOR_HTTP_LISTEN === 'off' ? undefined : Object.freeze({ ...e.DEBVISOR_HTTP_LISTEN }),
      extraCaFile: e.DEBVISOR_EXTRA_CA_FILE ? absolute(e.DEBVISOR_EXTRA_CA_FILE) : undefined,
      renewCheckSeconds: e.DEBVISOR_CERTIFICATE_CHECK_SECONDS,
      clientLifetimeSeconds: e.DEBVISOR_CLIENT_CERTIFICATE_LIFETIME_SECONDS,
    }),
  };
  return Object.freeze(config);
}

function absolute(path: string): string {
  return isAbsolute(path) ? resolve(path) : join(process.cwd(), path);
}

/** The injection token of the frozen configuration. */
export const MANAGER_CONFIG = Symbol('MANAGER_CONFIG');
