import { nodeIdSchema } from '@debvisor/common';
import { parseArgs } from 'node:util';
import type { Output } from '../apikeys/api-key.cli';
import { systemClock } from '../shared/clock';
import { createEtcdClient, type EtcdConnection } from '../shared/etcd-client';
import { ETCD_CLI_OPTIONS, ETCD_CLI_USAGE, etcdConnectionFromArgs } from '../shared/etcd-cli';
import { RevokedNodesRepository } from './revoked-nodes.repository';
import { RevokedNodes } from './revoked-nodes.service';

export const NODE_USAGE = `usage:
  debvisor-agent-admin node revoke <node-id> [--reason <text>]
  debvisor-agent-admin node reinstate <node-id>
  debvisor-agent-admin node revoked [--json]

A revoked (or decommissioned) node is refused by every agent of the cluster at once, whatever
certificate it presents: its forwarded calls, its API-key calls and its migration tunnels.
${ETCD_CLI_USAGE}`;

const COMMANDS = ['revoke', 'reinstate', 'revoked'] as const;
type CommandName = (typeof COMMANDS)[number];

/** Runs `node <command> …`; answers the exit code (0 done, 1 failed, 2 bad usage). */
export async function runNodeCommand(argv: string[], io: Output): Promise<number> {
  const [name, ...rest] = argv;
  let parsed: { nodeId?: string; reason: string; json: boolean; connection: EtcdConnection };
  try {
    if (!(COMMANDS as readonly string[]).includes(name ?? ''))
      throw new Error(
        name ? `unknown command "${name}"` : 'name a command: revoke, reinstate or revoked',
      );
    parsed = parse(name as CommandName, rest);
  } catch (error) {
    io.err(`debvisor-agent-admin: ${(error as Error).message}\n\n${NODE_USAGE}`);
    return 2;
  }
  const etcd = createEtcdClient(parsed.connection);
  const nodes = new RevokedNodes(new RevokedNodesRepository(etcd), systemClock);
  try {
    if (name === 'revoke') {
      const entry = await nodes.revoke(parsed.nodeId!, parsed.reason);
      io.out(
        `Revoked node ${entry.nodeId} at ${entry.revokedAt}: every agent refuses it from now on`,
      );
    } else if (name === 'reinstate') {
      const removed = await nodes.reinstate(parsed.nodeId!);
      io.out(
        removed
          ? `Node ${parsed.nodeId} is no longer revoked`
          : `Node ${parsed.nodeId} was not revoked`,
      );
    } else {
      const entries = await nodes.list();
      io.out(
        parsed.json
          ? JSON.stringify(entries, null, 2)
          : entries.map((e) => `${e.nodeId}  ${e.revokedAt}  ${e.reason}`).join('\n'),
      );
    }
    return 0;
  } catch (error) {
    io.err(
      `debvisor-agent-admin: cannot use etcd at ${parsed.connection.endpoints.join(',')}: ${(error as Error).message}`,
    );
    return 1;
  } finally {
    etcd.close();
  }
}

function parse(
  name: CommandName,
  argv: string[],
): { nodeId?: string; reason: string; json: boolean; connection: EtcdConnection } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      ...ETCD_CLI_OPTIONS,
      reason: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const connection = etcdConnectionFromArgs(values);
  if (values.reason !== undefined && name !== 'revoke')
    throw new Error(`${name} takes no --reason`);
  const reason = values.reason ?? '';
  if (reason.length > 500) throw new Error('--reason: at most 500 characters');
  if (name === 'revoked') {
    if (positionals.length > 0) throw new Error('revoked takes no positional argument');
    return { reason, json: values.json ?? false, connection };
  }
  if (positionals.length !== 1) throw new Error(`${name} takes exactly one node id`);
  const nodeId = nodeIdSchema.safeParse(positionals[0]);
  if (!nodeId.success)
    throw new Error(
      `the node id: ${nodeId.error.issues[0]?.message ?? 'invalid'} (got "${positionals[0]}")`,
    );
  return { nodeId: nodeId.data, reason, json: values.json ?? false, connection };
}
