import { nodeIdSchema } from '@debvisor/common';
import type { Etcd3, Watcher } from 'etcd3';
import { z } from 'zod';
import { ETCD_KEYS } from '../shared/etcd-keys';

export const revokedNodeSchema = z.object({
  nodeId: nodeIdSchema,
  revokedAt: z.string(),
  reason: z.string().max(500),
});
export type RevokedNode = z.infer<typeof revokedNodeSchema>;

/** The deny list of nodes in etcd (/debvisor/trust/revoked-nodes/<node-id>). */
export class RevokedNodesRepository {
  constructor(private readonly etcd: Etcd3) {}

  async put(entry: RevokedNode): Promise<void> {
    await this.etcd.put(ETCD_KEYS.revokedNode(entry.nodeId)).value(JSON.stringify(entry));
  }

  /** True when the node was on the list. */
  async remove(nodeId: string): Promise<boolean> {
    const result = await this.etcd.delete().key(ETCD_KEYS.revokedNode(nodeId)).exec();
    return Number(result.deleted) > 0;
  }

  /** The list and the etcd revision it was read at (to watch from the next one). */
  async list(): Promise<{ entries: RevokedNode[]; revision: string }> {
    const response = await this.etcd.getAll().prefix(ETCD_KEYS.revokedNodesPrefix).exec();
    const entries = response.kvs.flatMap((kv) => {
      const parsed = parseEntry(kv.value.toString());
      return parsed ? [parsed] : [];
    });
    return { entries, revision: response.header.revision };
  }

  /**
   * Watches the list from `revision` on: `onChange` hears each node id added (true) or removed
   * (false). etcd3 re-establishes the watch after a disconnection from the last revision seen.
   */
  async watch(
    revision: string,
    onChange: (nodeId: string, revoked: boolean) => void,
  ): Promise<Watcher> {
    const watcher = await this.etcd
      .watch()
      .prefix(ETCD_KEYS.revokedNodesPrefix)
      .startRevision(String(BigInt(revision) + 1n))
      .create();
    watcher.on('put', (kv) => {
      const parsed = parseEntry(kv.value.toString());
      onChange(parsed?.nodeId ?? nodeIdOf(kv.key.toString()), true);
    });
    watcher.on('delete', (kv) => onChange(nodeIdOf(kv.key.toString()), false));
    return watcher;
  }
}

function parseEntry(text: string): RevokedNode | undefined {
  try {
    const parsed = revokedNodeSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function nodeIdOf(key: string): string {
  return key.slice(ETCD_KEYS.revokedNodesPrefix.length);
}
