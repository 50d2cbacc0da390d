import type { Watcher } from 'etcd3';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { RevokedNode, RevokedNodesRepository } from './revoked-nodes.repository';

/**
 * The nodes this cluster refuses: revoked or decommissioned, read at start and then kept current
 * by a watch, so that a node put on the list is refused by every agent at once (no cache to
 * expire). A node on the list is refused even when its certificate is still valid.
 */
export class RevokedNodes {
  private readonly denied = new Set<string>();
  private watcher: Watcher | undefined;

  constructor(
    private readonly store: Pick<RevokedNodesRepository, 'list' | 'watch' | 'put' | 'remove'>,
    private readonly clock: Clock,
    private readonly logger?: Logger,
  ) {}

  async start(): Promise<void> {
    const { entries, revision } = await this.store.list();
    for (const entry of entries) this.denied.add(entry.nodeId);
    this.watcher = await this.store.watch(revision, (nodeId, revoked) => {
      if (revoked) this.denied.add(nodeId);
      else this.denied.delete(nodeId);
      this.logger?.warn({ peerNode: nodeId, revoked }, 'node deny list changed');
    });
  }

  async stop(): Promise<void> {
    await this.watcher?.cancel();
    this.watcher = undefined;
  }

  isRevoked(nodeId: string): boolean {
    return this.denied.has(nodeId);
  }

  /** The admin CLI's revoke: the node is refused by every agent from now on. */
  async revoke(nodeId: string, reason: string): Promise<RevokedNode> {
    const entry = { nodeId, reason, revokedAt: this.clock.now().toISOString() };
    await this.store.put(entry);
    return entry;
  }

  async reinstate(nodeId: string): Promise<boolean> {
    return this.store.remove(nodeId);
  }

  async list(): Promise<RevokedNode[]> {
    return (await this.store.list()).entries;
  }
}
