import { createCa, crossCertify, splitPemBundle } from '@debvisor/pki';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { Output } from '../apikeys/api-key.cli';
import { writeFileAtomically } from '../shared/atomic-file';
import { createEtcdClient, type EtcdConnection } from '../shared/etcd-client';
import { ETCD_CLI_OPTIONS, ETCD_CLI_USAGE, etcdConnectionFromArgs } from '../shared/etcd-cli';
import { ClusterTrustRepository, type NodeCert } from './cluster-trust.repository';

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
  const store = new ClusterTrustRepository(etcd);
  try {
    if (parsed.name === 'status') await status(store, parsed.json, io);
    else if (parsed.name === 'begin') await begin(store, parsed.issuer!, io);
    else await finish(store, parsed.issuer!, parsed.force, io);
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

/** The new CA's own (self-signed) certificate waits here between begin and finish. */
const nextOf = (issuerCert: string) => `${issuerCert}.next`;

async function status(store: ClusterTrustRepository, json: boolean, io: Output): Promise<void> {
  const [record, nodes] = await Promise.all([store.getCas(), store.listNodeCerts()]);
  const cas = record
    ? splitPemBundle(record.casPem).map((pem) => {
        const ca = new X509Certificate(pem);
        return { fingerprint: ca.fingerprint256, subject: ca.subject.replace(/\n/g, ', ') };
      })
    : [];
  const answer = { rotating: cas.length > 1, cas, renewBefore: record?.renewBefore ?? null, nodes };
  if (json) return io.out(JSON.stringify(answer, null, 2));
  io.out(
    [
      cas.length === 0
        ? "trusted CAs: those in each agent's tls.ca (no rotation yet)"
        : `trusted CAs${answer.rotating ? ' (rotation under way)' : ''}:`,
      ...cas.map((ca) => `  ${ca.fingerprint}  ${ca.subject}`),
      'node certificates:',
      ...nodes.map((n) => `  ${n.nodeId}  issuer ${n.issuerFingerprint}  valid to ${n.notAfter}`),
    ].join('\n'),
  );
}

async function begin(
  store: ClusterTrustRepository,
  issuer: { cert: string; key: string },
  io: Output,
): Promise<void> {
  if (existsSync(nextOf(issuer.cert)))
    throw new Error('a CA rotation is under way already: finish it first');
  const old = {
    certPem: await readFile(issuer.cert, 'utf8'),
    keyPem: await readFile(issuer.key, 'utf8'),
  };
  const oldCa = new X509Certificate(splitPemBundle(old.certPem)[0]);
  if (!oldCa.ca || oldCa.issuer !== oldCa.subject)
    throw new Error(`${issuer.cert} is not a self-signed CA certificate`);
  const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const cn =
    /CN=([^\n]*)/.exec(oldCa.subject)?.[1]?.replace(/ \(\d{4}-.*\)$/, '') ?? 'DebVisor cluster CA';
  const next = await createCa(`${cn} (${stamp})`);
  const cross = await crossCertify(old, next.certPem);
  const record = await store.getCas();
  const trusted = record ? splitPemBundle(record.casPem) : [splitPemBundle(old.certPem)[0]];
  // The new CA's certificate is kept for finish; from now on the issuer signs with the new key and
  // chains to the cross certificate, which clients that know only the old CA can verify.
  await writeFileAtomically(nextOf(issuer.cert), next.certPem);
  await writeFileAtomically(issuer.key, next.keyPem);
  await writeFileAtomically(issuer.cert, cross);
  const now = new Date().toISOString();
  await store.putCas({
    casPem: [...trusted, next.certPem].join(''),
    renewBefore: now,
    updatedAt: now,
  });
  io.out(
    `CA rotation begun: new cluster CA ${new X509Certificate(next.certPem).fingerprint256}\n` +
      "Every agent trusts both CAs now and renews within seconds. Add the new CA to the manager's\n" +
      'remote next, then run "ca finish" once "ca status" shows every node on the new CA.',
  );
}

async function finish(
  store: ClusterTrustRepository,
  issuer: { cert: string; key: string },
  force: boolean,
  io: Output,
): Promise<void> {
  if (!existsSync(nextOf(issuer.cert))) throw new Error('no CA rotation is under way');
  const nextPem = await readFile(nextOf(issuer.cert), 'utf8');
  const next = new X509Certificate(nextPem);
  const behind: NodeCert[] = (await store.listNodeCerts()).filter(
    (node) => node.issuerFingerprint !== next.fingerprint256,
  );
  if (behind.length > 0 && !force)
    throw new Error(
      `nodes still hold a certificate of an old CA: ${behind.map((n) => n.nodeId).join(', ')}; wait for their renewal (or --force)`,
    );
  await writeFileAtomically(issuer.cert, nextPem);
  await rm(nextOf(issuer.cert));
  const now = new Date().toISOString();
  await store.putCas({ casPem: nextPem, renewBefore: null, updatedAt: now });
  io.out(`CA rotation finished: the cluster trusts only ${next.fingerprint256} now`);
}
