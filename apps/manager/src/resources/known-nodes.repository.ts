import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { KnownNodeEntity } from './known-node.entity';
import type { KnownNode } from './known-nodes';

/** The known_nodes table (owned by resources/): the nodes the manager remembers across leases and restarts. */
@Injectable()
export class KnownNodesRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  private get table() {
    return this.dataSource.getRepository(KnownNodeEntity);
  }

  async all(): Promise<KnownNode[]> {
    const rows = await this.table.find();
    return rows.map((row) => ({
      remote: row.remoteId,
      nodeId: row.nodeId,
      state: row.state,
      since: row.since,
      lastSeenAt: row.lastSeenAt,
      node: row.node,
      vms: row.vms,
    }));
  }

  async save(nodes: readonly KnownNode[]): Promise<void> {
    if (nodes.length === 0) return;
    await this.table.upsert(
      nodes.map((n) => ({
        remoteId: n.remote,
        nodeId: n.nodeId,
        state: n.state,
        since: n.since,
        lastSeenAt: n.lastSeenAt,
        node: n.node,
        vms: [...n.vms],
      })),
      ['remoteId', 'nodeId'],
    );
  }

  /** Forgets one node; answers whether it was known. */
  async forget(remote: string, nodeId: string): Promise<boolean> {
    return ((await this.table.delete({ remoteId: remote, nodeId })).affected ?? 0) > 0;
  }

  async forgetRemote(remote: string): Promise<void> {
    await this.table.delete({ remoteId: remote });
  }
}
