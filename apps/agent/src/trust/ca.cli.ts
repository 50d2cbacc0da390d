import { parseArgs } from 'node:util';
import type { Output } from '../apikeys/api-key.cli';
import { createEtcdClient, type EtcdConnection } from '../shared/etcd-client';
import { ETCD_CLI_OPTIONS, ETCD_CLI_USAGE, etcdConnectionFromArgs } from '../shared/etcd-cli';
import { CaRotation } from './ca-rotation.service';
import { ClusterTrustRepository } from './cluster-trust.repository';

export const CA_USAGE = `usage:
  debvisor-agent-admin ca status [--json]
  debvisor-agent-admin ca begin  --issuer-cert <ca.crt> --issuer-key <ca.key>
  debvisor-agent-admin ca finish --issuer-cert <ca.crt> --issuer-key <ca.key> [--force]

A CA rotation with an overlap window. "begin" (on the issuing node, with its tls.issuer files)
makes a new cluster CA, cross-certified by the old one, issues with it from then on, and makes
every agent trust both and renew within seconds. Put the new CA into the manager's remote (its CA
bundle) next. "finish" drops the old CA once "status" shows every node on the new one (--force
skips that check).
${ETCD_CLI_USAGE}`;

const COMMANDS = ['status', 'begin', 'finish'] as const;
type Name = (typeof COMMANDS)[number];

interface Parsed {
  name: Name;
  connection: EtcdConnection;
  json: boolean;
  force: boolean;
  issuer?: { cert: string; key: string };
}

/** Runs `ca <command> …`; answers the exit code (0 done, 1 failed, 2 bad usage). */
export async function runCaCommand(argv: string[], io: Output): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parse(argv);
  } catch (error) {
    io.err(`debvisor-agent-admin: ${(error as Error).message}\n\n${CA_USAGE}`);
    return 2;
  }
  const etcd = createEtcdClient(parsed.connection);
  const rotation = new CaRotation(new ClusterTrustRepository(etcd), parsed.issuer);
  try {
    if (parsed.name === 'status') await status(rotation, parsed.json, io);
    else if (parsed.name === 'begin') await begin(rotation, io);
    else await finish(rotation, parsed.force, io);
    return 0;
  } catch (error) {
    io.err(`debvisor-agent-admin: ${(error as Error).message}`);
    return 1;
  } finally {
    etcd.close();
  }
}

function parse(argv: string[]): Parsed {
  const [name, ...rest] = argv;
  if (!(COMMANDS as readonly string[]).includes(name ?? ''))
    throw new Error(name ? `unknown command "${name}"` : 'name a command: status, begin or finish');
  const { values, positionals } = parseArgs({
    args: rest,
    strict: true,
    allowPositionals: true,
    options: {
      ...ETCD_CLI_OPTIONS,
      'issuer-cert': { type: 'string' },
      'issuer-key': { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length > 0) throw new Error(`${name} takes no positional argument`);
  const connection = etcdConnectionFromArgs(values);
  const base = {
    name: name as Name,
    connection,
    json: values.json ?? false,
    force: values.force ?? false,
  };
  if (name === 'status') return base;
  if (!values['issuer-cert'] || !values['issuer-key'])
    throw new Error(`${name} needs --issuer-cert and --issuer-key (the issuing node's tls.issuer)`);
  return { ...base, issuer: { cert: values['issuer-cert'], key: values['issuer-key'] } };
}

async function status(rotation: CaRotation, json: boolean, io: Output): Promise<void> {
  const { rotating, cas, renewBefore, nodes } = await rotation.status();
  if (json)
    return io.out(
      JSON.stringify(
        {
          rotating,
          cas: cas.map(({ fingerprint, subject }) => ({ fingerprint, subject })),
          renewBefore,
          nodes,
        },
        null,
        2,
      ),
    );
  io.out(
    [
      cas.length === 0
        ? "trusted CAs: those in each agent's tls.ca (no rotation yet)"
        : `trusted CAs${rotating ? ' (rotation under way)' : ''}:`,
      ...cas.map((ca) => `  ${ca.fingerprint}  ${ca.subject}`),
      'node certificates:',
      ...nodes.map((n) => `  ${n.nodeId}  issuer ${n.issuerFingerprint}  valid to ${n.notAfter}`),
    ].join('\n'),
  );
}

async function begin(rotation: CaRotation, io: Output): Promise<void> {
  const { newCaFingerprint } = await rotation.begin();
  io.out(
    `CA rotation begun: new cluster CA ${newCaFingerprint}\n` +
      "Every agent trusts both CAs now and renews within seconds. Add the new CA to the manager's\n" +
      'remote next, then run "ca finish" once "ca status" shows every node on the new CA.',
  );
}

async function finish(rotation: CaRotation, force: boolean, io: Output): Promise<void> {
  const { caFingerprint } = await rotation.finish(force);
  io.out(`CA rotation finished: the cluster trusts only ${caFingerprint} now`);
}
