import { apiKeyIdSchema, permissionSpecSchema } from '@debvisor/common';
import { parseArgs } from 'node:util';
import type { z } from 'zod';
import { AgentError } from '../shared/agent-error';
import { systemClock } from '../shared/clock';
import { ETCD_CLI_OPTIONS, ETCD_CLI_USAGE, etcdConnectionFromArgs } from '../shared/etcd-cli';
import { createEtcdClient, type EtcdConnection } from '../shared/etcd-client';
import { ApiKeyRepository } from './api-key.repository';
import { descriptionSchema, principalSchema, type ApiKeySummary } from './api-key.schema';
import { ApiKeyService, type IssuedApiKey } from './api-key.service';
import { parseExpiresIn } from './duration';

export const API_KEY_USAGE = `usage:
  debvisor-agent-admin apikey create --principal <name> --permissions <spec>[,<spec>…]
                                     [--description <text>] [--expires-in 90d|12h|30m|never] [--json]
  debvisor-agent-admin apikey list [--json]
  debvisor-agent-admin apikey revoke <id>
  debvisor-agent-admin apikey rotate <id> [--json]

${ETCD_CLI_USAGE}
A permission is service:resource:action, service:* or * (e.g. vm:instance:read,node:*).
The key (dvk_…) is printed once, by create and rotate; it is stored only as a SHA-256 hash.`;

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

/** A mistake in the command line: exit code 2. */
export class UsageError extends Error {}

/** Runs `apikey <command> …`; answers the process exit code (0 done, 1 failed, 2 bad usage). */
export async function runApiKeyCommand(argv: string[], io: Output): Promise<number> {
  let command: Command;
  try {
    command = parseCommand(argv);
  } catch (error) {
    io.err(`debvisor-agent-admin: ${(error as Error).message}\n\n${API_KEY_USAGE}`);
    return 2;
  }
  const etcd = createEtcdClient(command.connection);
  const service = new ApiKeyService(new ApiKeyRepository(etcd), systemClock, { cacheTtlMs: 0 });
  try {
    await execute(command, service, io);
    return 0;
  } catch (error) {
    const message =
      error instanceof AgentError
        ? error.message
        : `cannot use etcd at ${command.connection.endpoints.join(',')}: ${(error as Error).message}`;
    io.err(`debvisor-agent-admin: ${message}`);
    return 1;
  } finally {
    etcd.close();
  }
}

type Command =
  | {
      name: 'create';
      connection: EtcdConnection;
      json: boolean;
      principal: string;
      permissions: string[];
      description: string;
      expiresInMs: number | null;
    }
  | { name: 'list'; connection: EtcdConnection; json: boolean }
  | { name: 'revoke' | 'rotate'; connection: EtcdConnection; json: boolean; id: string };

function parseCommand(argv: string[]): Command {
  const [name, ...rest] = argv;
  if (!name) throw new UsageError('name a command: create, list, revoke or rotate');
  if (!isCommandName(name)) throw new UsageError(`unknown command "${name}"`);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    strict: true,
    options: {
      ...ETCD_CLI_OPTIONS,
      principal: { type: 'string' },
      permissions: { type: 'string' },
      description: { type: 'string' },
      'expires-in': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const connection = etcdConnectionFromArgs(values);
  const json = values.json ?? false;
  const allowed: Record<string, string[]> = {
    create: ['principal', 'permissions', 'description', 'expires-in'],
    list: [],
    revoke: [],
    rotate: [],
  };
  for (const option of ['principal', 'permissions', 'description', 'expires-in']) {
    if (values[option as keyof typeof values] !== undefined && !allowed[name].includes(option))
      throw new UsageError(`${name} takes no --${option}`);
  }
  if (name === 'create') {
    if (positionals.length > 0)
      throw new UsageError(`create takes no positional argument (got "${positionals[0]}")`);
    const principal = check('--principal', principalSchema, values.principal);
    if (!values.permissions) throw new UsageError('--permissions is required');
    const permissions = values.permissions
      .split(',')
      .map((p) => check('--permissions', permissionSpecSchema, p.trim()));
    const description = check('--description', descriptionSchema, values.description ?? '');
    const expiresInMs = parseExpiresIn(values['expires-in'] ?? 'never');
    if (expiresInMs === undefined)
      throw new UsageError(
        '--expires-in: give a duration such as 90d, 12h, 30m or 2w (up to 10 years), or never',
      );
    return { name, connection, json, principal, permissions, description, expiresInMs };
  }
  if (name === 'list') {
    if (positionals.length > 0) throw new UsageError('list takes no positional argument');
    return { name, connection, json };
  }
  if (positionals.length !== 1) throw new UsageError(`${name} takes exactly one API key id`);
  return { name, connection, json, id: check('the API key id', apiKeyIdSchema, positionals[0]) };
}

const COMMANDS = ['create', 'list', 'revoke', 'rotate'] as const;

function isCommandName(name: string): name is (typeof COMMANDS)[number] {
  return (COMMANDS as readonly string[]).includes(name);
}

function check<T>(what: string, schema: z.ZodType<T>, value: unknown): T {
  if (value === undefined) throw new UsageError(`${what} is required`);
  const result = schema.safeParse(value);
  if (!result.success)
    throw new UsageError(
      `${what}: ${result.error.issues[0]?.message ?? 'invalid'} (got "${String(value)}")`,
    );
  return result.data;
}

async function execute(command: Command, service: ApiKeyService, io: Output): Promise<void> {
  switch (command.name) {
    case 'create': {
      const issued = await service.create({
        principal: command.principal,
        permissions: command.permissions,
        description: command.description,
        expiresAt: command.expiresInMs === null ? null : new Date(Date.now() + command.expiresInMs),
      });
      return printIssued(io, issued, command.json, 'Created');
    }
    case 'list': {
      const keys = await service.list();
      return io.out(command.json ? JSON.stringify(keys, null, 2) : table(keys));
    }
    case 'revoke': {
      const { summary, alreadyRevoked } = await service.revoke(command.id);
      return io.out(
        alreadyRevoked
          ? `API key ${summary.id} was already revoked at ${summary.revokedAt}`
          : `Revoked API key ${summary.id} (${summary.principal})`,
      );
    }
    case 'rotate':
      return printIssued(io, await service.rotate(command.id), command.json, 'Rotated');
  }
}

function printIssued(
  io: Output,
  { key, summary }: IssuedApiKey,
  json: boolean,
  verb: string,
): void {
  if (json) return io.out(JSON.stringify({ ...summary, key }, null, 2));
  io.err(
    `${verb} API key ${summary.id} for ${summary.principal}\n` +
      `  permissions: ${summary.permissions.join(', ')}\n` +
      `  expires:     ${summary.expiresAt ?? 'never'}\n` +
      'Store the key now; it cannot be shown again:',
  );
  io.out(key);
}

function table(keys: ApiKeySummary[]): string {
  const now = Date.now();
  const rows = keys.map((k) => [
    k.id,
    k.principal,
    k.revokedAt ? 'revoked' : k.expiresAt && Date.parse(k.expiresAt) <= now ? 'expired' : 'active',
    k.permissions.join(','),
    k.createdAt,
    k.expiresAt ?? 'never',
    k.lastUsedAt ?? 'never',
    k.description,
  ]);
  const header = [
    'ID',
    'PRINCIPAL',
    'STATUS',
    'PERMISSIONS',
    'CREATED',
    'EXPIRES',
    'LAST USED',
    'DESCRIPTION',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows]
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
