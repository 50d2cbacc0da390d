import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from './agent-config.loader';
import type { AgentConfig } from './agent-config.schema';

/** The organisational unit every agent certificate carries. */
export const AGENT_OU = 'debvisor-agent';

export interface TlsMaterial {
  /** The cluster CA: the only issuer trusted for agent (peer) certificates (the first of clusterCas). */
  readonly clusterCa: X509Certificate;
  /** Every cluster CA trusted now: one, or the old and the new during a CA rotation. */
  readonly clusterCas: readonly X509Certificate[];
  /** clusterCas as a PEM bundle. */
  readonly clusterCaPem: string;
  /** This agent's certificate chain (leaf, then the cluster CA) as served to clients. */
  readonly certChainPem: string;
  readonly keyPem: string;
  /** Every CA whose client certificates the server accepts: the cluster CA and tls.clientCas. */
  readonly trustedClientCasPem: string;
  /** tls.clientCas alone (the manager's client CA and the like). */
  readonly clientCaPems: readonly string[];
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Reads and checks the certificate files named in the configuration; problems name the setting. */
export function loadTlsMaterial(
  config: Pick<AgentConfig, 'nodeId'> & {
    tls: Pick<AgentConfig['tls'], 'cert' | 'key' | 'ca' | 'clientCas'>;
  },
): TlsMaterial {
  const caPems = readCertificates('tls.ca', config.tls.ca);
  const clusterCas = caPems.map((pem) => parse('tls.ca', pem));
  if (clusterCas.some((ca) => !ca.ca))
    throw new ConfigError(`tls.ca: ${config.tls.ca} is not a CA certificate`);
  const clusterCa = clusterCas[0];

  const chain = readCertificates('tls.cert', config.tls.cert);
  const leaf = parse('tls.cert', chain[0]);
  if (!clusterCas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey))) {
    throw new ConfigError(`tls.cert: ${config.tls.cert} is not issued by the cluster CA in tls.ca`);
  }
  const now = Date.now();
  if (Date.parse(leaf.validTo) < now || Date.parse(leaf.validFrom) > now) {
    throw new ConfigError(
      `tls.cert: ${config.tls.cert} is not valid now (valid ${leaf.validFrom} to ${leaf.validTo})`,
    );
  }
  const subject = subjectFields(leaf.subject);
  if (subject.CN !== `agent:${config.nodeId}` || subject.OU !== AGENT_OU) {
    throw new ConfigError(
      `tls.cert: the subject must be CN=agent:${config.nodeId}, OU=${AGENT_OU} (found CN=${subject.CN ?? ''}, OU=${subject.OU ?? ''})`,
    );
  }

  let keyPem: string;
  try {
    keyPem = readFileSync(config.tls.key, 'utf8');
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem)))
      throw new ConfigError(`tls.key: ${config.tls.key} does not belong to tls.cert`);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`tls.key: cannot use ${config.tls.key}: ${describe(error)}`);
  }

  const clientCaPems = config.tls.clientCas.flatMap((file, i) => {
    const pems = readCertificates(`tls.clientCas[${i}]`, file);
    for (const pem of pems)
      if (!parse(`tls.clientCas[${i}]`, pem).ca)
        throw new ConfigError(`tls.clientCas[${i}]: ${file} holds a certificate that is not a CA`);
    return pems;
  });

  // A file with the leaf only gets its issuer appended (a renewed chain names its issuer already).
  const issuer = caPems.find((pem) => {
    const ca = parse('tls.ca', pem);
    return leaf.checkIssued(ca) && leaf.verify(ca.publicKey);
  })!;
  const servedChain = chain.length > 1 ? chain : [...chain, issuer];
  return {
    clusterCa,
    clusterCas,
    clusterCaPem: caPems.join(''),
    certChainPem: servedChain.join('\n') + '\n',
    keyPem,
    trustedClientCasPem: [...caPems, ...clientCaPems].join('\n') + '\n',
    clientCaPems,
  };
}

/** `CN=agent:node-1\nOU=debvisor-agent\nO=DebVisor` → { CN: 'agent:node-1', OU: …, O: … } (first value of each). */
export function subjectFields(subject: string): Record<string, string | undefined> {
  const fields: Record<string, string> = {};
  for (const line of subject.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0 && !(line.slice(0, at) in fields)) fields[line.slice(0, at)] = line.slice(at + 1);
  }
  return fields;
}

function readCertificates(setting: string, file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`${setting}: cannot read ${file}: ${describe(error)}`);
  }
  const pems = text.match(PEM_CERT);
  if (!pems) throw new ConfigError(`${setting}: ${file} holds no PEM certificate`);
  return pems.map((pem) => pem + '\n');
}

function parse(setting: string, pem: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new ConfigError(`${setting}: not a valid certificate: ${describe(error)}`);
  }
}

function describe(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
}
