import { nodeIdSchema } from '@debvisor/common';
import type { Etcd3, Watcher } from 'etcd3';
import { z } from 'zod';
import { ETCD_KEYS } from '../shared/etcd-keys';

export const clusterCasSchema = z.object({
  /** PEM bundle of every cluster CA trusted now. */
  casPem: z
    .string()
    .min(1)
    .max(256 * 1024),
  /** Certificates issued before this instant are renewed at once (a CA rotation's start). */
  renewBefore: z.string().nullable(),
  updatedAt: z.string(),
});
export type ClusterCas = z.infer<typeof clusterCasSchema>;

export const nodeCertSchema = z.object({
  nodeId: nodeIdSchema,
  /** SHA-256 fingerprint of the cluster CA that issued the node's current certificate. */
  issuerFingerprint: z.string(),
  notBefore: z.string(),
  notAfter: z.string(),
});
export type NodeCert = z.infer<typeof nodeCertSchema>;

/** The cluster's trust in etcd: its CA bundle and which CA each node's certificate comes from. */
export class ClusterTrustRepository {
  constructor(private readonly etcd: Etcd3) {}

  async getCas(): Promise<ClusterCas | undefined> {
    const text = await this.etcd.get(ETCD_KEYS.clusterCas).string();
    return text === null ? undefined : parse(clusterCasSchema, text);
  }

  async putCas(record: ClusterCas): Promise<void> {
    await this.etcd.put(ETCD_KEYS.clusterCas).value(JSON.stringify(record));
  }

  /** Calls `onChange` with every new version of the CA bundle record. */
  async watchCas(onChange: (record: ClusterCas) => void): Promise<Watcher> {
    const watcher = await this.etcd.watch().key(ETCD_KEYS.clusterCas).create();
    watcher.on('put', (kv) => {
      const record = parse(clusterCasSchema, kv.value.toString());
      if (record) onChange(record);
    });
    return watcher;
  }

  async putNodeCert(record: NodeCert): Promise<void> {
    await this.etcd.put(ETCD_KEYS.nodeCert(record.nodeId)).value(JSON.stringify(record));
  }

  async listNodeCerts(): Promise<NodeCert[]> {
    const response = await this.etcd.getAll().prefix(ETCD_KEYS.nodeCertsPrefix).exec();
    return response.kvs.flatMap((kv) => {
      const record = parse(nodeCertSchema, kv.value.toString());
      return record ? [record] : [];
    });
  }
}

function parse<T>(schema: z.ZodType<T>, text: string): T | undefined {
  try {
    const result = schema.safeParse(JSON.parse(text));
    return result.success ? result.data : undefined;
  } catch {
    return undefined;
  }
}
