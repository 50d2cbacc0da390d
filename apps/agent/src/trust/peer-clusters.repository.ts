import { clusterIdSchema } from '@debvisor/common';
import type { Etcd3 } from 'etcd3';
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { ETCD_KEYS } from '../shared/etcd-keys';

export const peerClusterSchema = z.object({
  clusterId: clusterIdSchema,
  /** The peer cluster's CA certificate(s), PEM (two during the peer's CA rotation). */
  caPem: z.string().max(64 * 1024),
  addedAt: z.string(),
});
export type PeerCluster = z.infer<typeof peerClusterSchema>;

/** Peer clusters the operator trusts for migrations (/debvisor/trust/peer-clusters/<cluster-id>). */
export class PeerClustersRepository {
  constructor(private readonly etcd: Etcd3) {}

  async put(entry: PeerCluster): Promise<void> {
    await this.etcd.put(ETCD_KEYS.peerCluster(entry.clusterId)).value(JSON.stringify(entry));
  }

  async remove(clusterId: string): Promise<boolean> {
    const result = await this.etcd.delete().key(ETCD_KEYS.peerCluster(clusterId)).exec();
    return Number(result.deleted) > 0;
  }

  async list(): Promise<PeerCluster[]> {
    const response = await this.etcd.getAll().prefix(ETCD_KEYS.peerClustersPrefix).exec();
    return response.kvs.flatMap((kv) => {
      try {
        const parsed = peerClusterSchema.safeParse(JSON.parse(kv.value.toString()));
        return parsed.success ? [parsed.data] : [];
      } catch {
        return [];
      }
    });
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** SHA-256 fingerprints (as Node prints them) of every CA certificate in `pem`; [] when none reads. */
export function caFingerprints(pem: string): string[] {
  return (pem.match(PEM_CERT) ?? []).flatMap((one) => {
    try {
      const cert = new X509Certificate(one);
      return cert.ca ? [cert.fingerprint256] : [];
    } catch {
      return [];
    }
  });
}
