import type { Etcd3 } from 'etcd3';
import { z } from 'zod';
import { ETCD_KEYS } from '../shared/etcd-keys';

const recordSchema = z.object({
  consistency: z.enum(['application', 'crash']),
  consistencyReason: z.string(),
  group: z.boolean(),
  createdAt: z.string(),
});

/** How a VM snapshot was taken: what the images' snapshots cannot tell. */
export type VmSnapshotRecord = z.infer<typeof recordSchema>;

/**
 * /debvisor/vm-snapshots/<uuid>/<snapshot> in the cluster's etcd → how that VM snapshot was taken.
 * The images' snapshots are the truth of what exists; a record only adds its consistency.
 */
export class VmSnapshotRepository {
  constructor(private readonly etcd: Etcd3) {}

  async list(uuid: string): Promise<Map<string, VmSnapshotRecord>> {
    const prefix = ETCD_KEYS.vmSnapshots(uuid);
    const values = await this.etcd.getAll().prefix(prefix).strings();
    const records = new Map<string, VmSnapshotRecord>();
    for (const [key, value] of Object.entries(values)) {
      const record = decode(value);
      if (record) records.set(key.slice(prefix.length), record);
    }
    return records;
  }

  async put(uuid: string, snapshot: string, record: VmSnapshotRecord): Promise<void> {
    await this.etcd.put(ETCD_KEYS.vmSnapshot(uuid, snapshot)).value(JSON.stringify(record));
  }

  async remove(uuid: string, snapshot: string): Promise<void> {
    await this.etcd.delete().key(ETCD_KEYS.vmSnapshot(uuid, snapshot));
  }
}

function decode(value: string): VmSnapshotRecord | undefined {
  try {
    const parsed = recordSchema.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
