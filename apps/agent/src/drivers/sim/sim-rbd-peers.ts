import { Etcd3 } from 'etcd3';
import { etcdClientOptions, type EtcdConnection } from '../../shared/etcd-client';
import { SimRbdRepository } from './sim-rbd.repository';

/**
 * Connections to peer sim clusters' etcds (what a Ceph cluster reaches its peers through: their
 * monitors, named in the bootstrap token). One client per peer, each call bounded by `timeoutMs`
 * so that a dead peer never holds up anything else.
 */
export class SimRbdPeers {
  private readonly clients = new Map<string, Etcd3>();

  constructor(
    private readonly timeoutMs: number,
    /** This agent's etcd TLS files, presented to the peers' etcds too. */
    private readonly connection: Omit<EtcdConnection, 'endpoints' | 'auth'> = {},
  ) {}

  /** The peer's records, reached through `endpoints`; `site` names it in errors. */
  repository(endpoints: readonly string[], site: string): SimRbdRepository {
    const id = [...endpoints].sort().join(',');
    let client = this.clients.get(id);
    if (!client) {
      client = new Etcd3(etcdClientOptions({ ...this.connection, endpoints }, this.timeoutMs));
      this.clients.set(id, client);
    }
    return new SimRbdRepository(client, this.timeoutMs, `the peer site ${site}`);
  }

  /** Drops the connection to a peer that failed, so the next call dials afresh (not a client stuck backing off). */
  reset(endpoints: readonly string[]): void {
    const id = [...endpoints].sort().join(',');
    this.clients.get(id)?.close();
    this.clients.delete(id);
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
