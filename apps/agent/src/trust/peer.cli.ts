import { clusterIdSchema } from '@debvisor/common';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Output } from '../apikeys/api-key.cli';
import { AgentError } from '../shared/agent-error';
import { systemClock } from '../shared/clock';
import { createEtcdClient, type EtcdConnection } from '../shared/etcd-client';
import { ETCD_CLI_OPTIONS, ETCD_CLI_USAGE, etcdConnectionFromArgs } from '../shared/etcd-cli';
import { PeerClustersRepository } from './peer-clusters.repository';
import { PeerClusters } from './peer-clusters.service';

export const PEER_USAGE = `usage:
  debvisor-agent-admin peer trust <cluster-id> --ca <ca.pem>
  debvisor-agent-admin peer forget <cluster-id>
  debvisor-agent-admin peer list [--json]

VMs migrate only to and from agents of this cluster and of the peer clusters trusted here; a
migration naming any other CA is refused.
${ETCD_CLI_USAGE}`;

const COMMANDS = ['trust', 'forget', 'list'] as const;

/** Runs `peer <command> …`; answers the exit code (0 done, 1 failed, 2 bad usage). */
export async function runPeerCommand(argv: string[], io: Output): Promise<number> {
  const [name, ...rest] = argv;
  let connection: EtcdConnection;
  let clusterId = '';
  let caPem = '';
  let json = false;
  try {
    if (!(COMMANDS as readonly string[]).includes(name ?? ''))
      throw new Error(name ? `unknown command "${name}"` : 'name a command: trust, forget or list');
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: {
        ...ETCD_CLI_OPTIONS,
        ca: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
    connection = etcdConnectionFromArgs(values);
    json = values.json ?? false;
    if (values.ca !== undefined && name !== 'trust') throw new Error(`${name} takes no --ca`);
    if (name === 'list') {
      if (positionals.length > 0) throw new Error('list takes no positional argument');
    } else {
      if (positionals.length !== 1) throw new Error(`${name} takes exactly one cluster id`);
      const parsed = clusterIdSchema.safeParse(positionals[0]);
      if (!parsed.success) throw new Error(`the cluster id "${positionals[0]}" is not valid`);
      clusterId = parsed.data;
    }
    if (name === 'trust') {
      if (!values.ca) throw new Error('--ca <ca.pem> is required');
      try {
        caPem = readFileSync(values.ca, 'utf8');
      } catch (error) {
        throw new Error(`--ca: cannot read ${values.ca}: ${(error as NodeJS.ErrnoException).code}`);
      }
    }
  } catch (error) {
    io.err(`debvisor-agent-admin: ${(error as Error).message}\n\n${PEER_USAGE}`);
    return 2;
  }
  const etcd = createEtcdClient(connection);
  const peers = new PeerClusters(new PeerClustersRepository(etcd), systemClock);
  try {
    if (name === 'trust') {
      await peers.trust(clusterId, caPem);
      io.out(`Trusting cluster ${clusterId} as a migration peer`);
    } else if (name === 'forget') {
      const removed = await peers.forget(clusterId);
      io.out(
        removed
          ? `No longer trusting cluster ${clusterId}`
          : `Cluster ${clusterId} was not trusted`,
      );
    } else {
      const list = await peers.list();
      io.out(
        json
          ? JSON.stringify(list, null, 2)
          : list.map((p) => `${p.clusterId}  ${p.addedAt}`).join('\n'),
      );
    }
    return 0;
  } catch (error) {
    io.err(
      `debvisor-agent-admin: ${error instanceof AgentError ? error.message : `cannot use etcd at ${connection.endpoints.join(',')}: ${(error as Error).message}`}`,
    );
    return 1;
  } finally {
    etcd.close();
  }
}
