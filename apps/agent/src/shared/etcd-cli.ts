import { loadAgentConfig } from '../config/agent-config.loader';
import { etcdConnectionOf, type EtcdConnection } from './etcd-client';

/** The etcd options every admin command takes (for parseArgs). */
export const ETCD_CLI_OPTIONS = {
  etcd: { type: 'string' },
  config: { type: 'string' },
  'etcd-ca': { type: 'string' },
  'etcd-cert': { type: 'string' },
  'etcd-key': { type: 'string' },
} as const;

export const ETCD_CLI_USAGE = `Every command needs the cluster's etcd: --config <agent.json> (its etcd section), or
--etcd <url>[,<url>…] with --etcd-ca <ca.pem> --etcd-cert <client.pem> --etcd-key <client.key>
for etcd's mutual TLS.`;

/** The etcd connection from --config, or from --etcd and the --etcd-* files. */
export function etcdConnectionFromArgs(values: {
  etcd?: string;
  config?: string;
  'etcd-ca'?: string;
  'etcd-cert'?: string;
  'etcd-key'?: string;
}): EtcdConnection {
  const files = [values['etcd-ca'], values['etcd-cert'], values['etcd-key']];
  if (values.etcd && values.config) throw new Error('give either --etcd or --config, not both');
  if (values.config) {
    if (files.some((f) => f !== undefined))
      throw new Error('--etcd-ca, --etcd-cert and --etcd-key go with --etcd, not --config');
    return etcdConnectionOf(loadAgentConfig(values.config).etcd);
  }
  if (!values.etcd) throw new Error('--etcd <url>[,<url>…] or --config <agent.json> is required');
  const endpoints = values.etcd.split(',').map((u) => u.trim());
  for (const url of endpoints)
    if (!/^https?:\/\/[^\s/]+(:\d+)?\/?$/.test(url))
      throw new Error(`--etcd: "${url}" is not an http(s)://host:port URL`);
  if (files.some((f) => f !== undefined) && files.some((f) => f === undefined))
    throw new Error('--etcd-ca, --etcd-cert and --etcd-key go together');
  const [ca, cert, key] = files;
  return { endpoints, ...(ca && cert && key ? { tls: { ca, cert, key } } : {}) };
}
