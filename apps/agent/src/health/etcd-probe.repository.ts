import type { Etcd3 } from 'etcd3';
import { ETCD_KEYS } from '../shared/etcd-keys';

/** Whether the cluster etcd answers: one cheap read (the call deadline of the etcd client applies). */
export class EtcdProbeRepository {
  constructor(private readonly etcd: Etcd3) {}

  async reachable(): Promise<boolean> {
    try {
      await this.etcd.get(ETCD_KEYS.nodesPrefix).exec();
      return true;
    } catch {
      return false;
    }
  }
}
