import type { Etcd3 } from 'etcd3';
import { z } from 'zod';
import { ETCD_KEYS } from '../shared/etcd-keys';

const locationSchema = z.object({ nodeId: z.string(), name: z.string() });
export type VmLocation = z.infer<typeof locationSchema>;

/** /debvisor/vms/<uuid> → the node that owns the VM, so that any agent can forward to it. */
export class VmIndexRepository {
  constructor(private readonly etcd: Etcd3) {}

  async get(uuid: string): Promise<VmLocation | undefined> {
    const value = await this.etcd.get(ETCD_KEYS.vm(uuid)).string();
    return value === null ? undefined : decode(value);
  }

  async put(uuid: string, location: VmLocation): Promise<void> {
    await this.etcd.put(ETCD_KEYS.vm(uuid)).value(JSON.stringify(location));
  }

  async list(): Promise<Map<string, VmLocation>> {
    const values = await this.etcd.getAll().prefix(ETCD_KEYS.vmsPrefix).strings();
    const index = new Map<string, VmLocation>();
    for (const [key, value] of Object.entries(values)) {
      const location = decode(value);
      if (location) index.set(key.slice(ETCD_KEYS.vmsPrefix.length), location);
    }
    return index;
  }

  /** Removes an entry if it still names `nodeId` (another node may have taken the VM over meanwhile). */
  async removeIfOwnedBy(uuid: string, location: VmLocation): Promise<void> {
    const key = ETCD_KEYS.vm(uuid);
    await this.etcd
      .if(key, 'Value', '==', JSON.stringify(location))
      .then(this.etcd.delete().key(key))
      .commit();
  }
}

function decode(value: string): VmLocation | undefined {
  try {
    const parsed = locationSchema.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
