import type { Etcd3 } from 'etcd3';
import { ETCD_KEYS } from '../shared/etcd-keys';
import { RESOURCE_STATES, resourceRecordSchema, type ResourceState } from './ha.records';
import type { HaRepository } from './ha.repository';

/** What the HA metrics read at scrape time. */
export interface CoordinatorView {
  /** Is this node the coordinator? */
  leader: boolean;
  /** The coordinator's fencing epoch (0: none elected). */
  epoch: number;
  /** HA VMs by state: read on the coordinator only. */
  resources?: Record<ResourceState, number>;
}

/** The etcd reads behind the HA metrics (ha-metrics.ts): leadership, resource states, fence times. */
export class HaMetricsRepository {
  constructor(
    private readonly etcd: Etcd3,
    private readonly ha: Pick<HaRepository, 'leader' | 'fence'>,
  ) {}

  async coordinatorView(nodeId: string): Promise<CoordinatorView> {
    const leader = await this.ha.leader();
    if (leader?.nodeId !== nodeId) return { leader: false, epoch: leader?.epoch ?? 0 };
    const counts = Object.fromEntries(RESOURCE_STATES.map((s) => [s, 0])) as Record<
      ResourceState,
      number
    >;
    const values = await this.etcd.getAll().prefix(ETCD_KEYS.haResourcesPrefix).strings();
    for (const value of Object.values(values)) {
      const parsed = resourceRecordSchema.safeParse(parseJson(value));
      if (parsed.success) counts[parsed.data.state] += 1;
    }
    return { leader: true, epoch: leader.epoch, resources: counts };
  }

  /** When the loss of `nodeId` was detected, if its current fence names the VM. */
  async detectedAt(nodeId: string, vmUuid: string): Promise<Date | undefined> {
    const fence = await this.ha.fence(nodeId);
    if (!fence || fence.state === 'released' || !fence.vms.includes(vmUuid)) return undefined;
    return new Date(fence.detectedAt);
  }
}

function parseJson(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}
