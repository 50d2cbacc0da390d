import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { CliError } from '../cli-error';
import { EXIT } from '../exit-codes';

/** A SHA-256 fingerprint: 64 hex digits, optionally in colon-separated pairs. */
export function normalizeFingerprint(value: string): string | undefined {
  const hex = value.replace(/:/g, '').toUpperCase();
  return /^[0-9A-F]{64}$/.test(hex) ? hex : undefined;
}

const nameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a context name is 1-63 letters, digits, . _ -');

const serverSchema = z
  .url({ protocol: /^https$/, error: 'the manager URL must be https://host[:port]' })
  .refine((value) => ['', '/'].includes(new URL(value).pathname), 'no path after host:port');

const fingerprintSchema = z.string().refine((value) => normalizeFingerprint(value) !== undefined, {
  message: 'a SHA-256 fingerprint is 64 hex digits, optionally in colon-separated pairs',
});

/** One manager to talk to, as kubectl's contexts: where, whom to trust, and as whom. */
export const contextSchema = z.strictObject({
  name: nameSchema,
  server: serverSchema,
  'ca-file': z.string().min(1).optional(),
  'ca-fingerprint': fingerprintSchema.optional(),
  token: z.string().min(1).optional(),
});
export type CliContext = z.infer<typeof contextSchema>;

const configSchema = z
  .strictObject({
    'current-context': z.string().optional(),
    contexts: z.array(contextSchema).default([]),
  })
  .refine((c) => new Set(c.contexts.map((x) => x.name)).size === c.contexts.length, {
    message: 'context names must be unique',
    path: ['contexts'],
  });
export type CliConfigFile = z.infer<typeof configSchema>;

/** The settings the CLI reads from its environment (main.ts hands over process.env, tests their own). */
export interface CliEnv {
  readonly DEBVISOR_CONFIG?: string;
  readonly DEBVISOR_CONTEXT?: string;
  readonly DEBVISOR_TOKEN?: string;
  readonly DEBVISOR_SERVER?: string;
  readonly DEBVISOR_CA_FILE?: string;
  readonly DEBVISOR_CA_FINGERPRINT?: string;
  /** An agent API key for `remotes add` (else --key-stdin): never an argument. */
  readonly DEBVISOR_AGENT_KEY?: string;
  readonly XDG_CONFIG_HOME?: string;
  readonly HOME?: string;
}

/** Where the config file lives: DEBVISOR_CONFIG, else $XDG_CONFIG_HOME/debvisor/config.yaml, else ~/.config/…. */
export function configPath(env: CliEnv, override?: string): string {
  if (override) return override;
  if (env.DEBVISOR_CONFIG) return env.DEBVISOR_CONFIG;
  const base = env.XDG_CONFIG_HOME || (env.HOME ? join(env.HOME, '.config') : undefined);
  if (!base) throw CliError.usage('cannot find the config file: set HOME or DEBVISOR_CONFIG');
  return join(base, 'debvisor', 'config.yaml');
}

/**
 * The config file, or an empty one when there is none. It holds tokens: it must belong to the
 * user and be readable by nobody else (0600), or the CLI refuses it.
 */
export function readConfigFile(path: string): CliConfigFile {
  if (!existsSync(path)) return { contexts: [] };
  const stat = statSync(path);
  if (!stat.isFile()) throw CliError.usage(`${path} is not a file`);
  if ((stat.mode & 0o077) !== 0)
    throw new CliError(
      `refusing ${path}: it holds tokens and is open to others (mode ${(stat.mode & 0o777).toString(8)}); run chmod 600 ${path}`,
      EXIT.usage,
    );
  if (typeof process.getuid === 'function' && stat.uid !== process.getuid())
    throw CliError.usage(`refusing ${path}: it belongs to another user`);
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8')) ?? {};
  } catch (error) {
    throw CliError.usage(`${path} is not YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw CliError.usage(`${path}: ${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  return parsed.data;
}

/** Writes the config file atomically with mode 0600 (its folder 0700 when created). */
export function writeConfigFile(path: string, config: CliConfigFile): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, stringify(config), { mode: 0o600 });
  chmodSync(temp, 0o600);
  renameSync(temp, path);
}

/** How to reach the manager for one command: the chosen context, with the environment on top. */
export interface Connection {
  readonly context: string | undefined;
  readonly server: string;
  readonly token: string | undefined;
  readonly caFile: string | undefined;
  readonly caFingerprint: string | undefined;
}

/**
 * Picks the context (--context, else DEBVISOR_CONTEXT, else current-context) and lays the
 * environment over it: DEBVISOR_SERVER, DEBVISOR_TOKEN, DEBVISOR_CA_FILE, DEBVISOR_CA_FINGERPRINT.
 */
export function resolveConnection(
  env: CliEnv,
  options: { config?: string; context?: string },
): Connection {
  const wanted = options.context ?? env.DEBVISOR_CONTEXT;
  const needFile = wanted !== undefined || !env.DEBVISOR_SERVER;
  const file = needFile ? readConfigFile(configPath(env, options.config)) : { contexts: [] };
  const name = wanted ?? file['current-context'];
  const context = name === undefined ? undefined : file.contexts.find((c) => c.name === name);
  if (name !== undefined && !context && (wanted !== undefined || !env.DEBVISOR_SERVER))
    throw CliError.usage(
      `no context named ${JSON.stringify(name)} in ${configPath(env, options.config)}`,
    );
  const server = env.DEBVISOR_SERVER ?? context?.server;
  if (!server)
    throw CliError.usage(
      'no manager to talk to: add a context (debvisor config set-context) or set DEBVISOR_SERVER',
    );
  const parsedServer = serverSchema.safeParse(server);
  if (!parsedServer.success)
    throw CliError.usage(`DEBVISOR_SERVER: ${parsedServer.error.issues[0].message}`);
  const fingerprint = env.DEBVISOR_CA_FINGERPRINT ?? context?.['ca-fingerprint'];
  if (fingerprint !== undefined && !normalizeFingerprint(fingerprint))
    throw CliError.usage('DEBVISOR_CA_FINGERPRINT: not a SHA-256 fingerprint (64 hex digits)');
  return {
    context: context?.name,
    server: server.replace(/\/$/, ''),
    token: env.DEBVISOR_TOKEN || context?.token,
    caFile: env.DEBVISOR_CA_FILE ?? context?.['ca-file'],
    caFingerprint: fingerprint,
  };
}
