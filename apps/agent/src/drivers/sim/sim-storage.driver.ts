import type { Etcd3 } from 'etcd3';
import { z } from 'zod';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { Clock } from '../../shared/clock';
import { ETCD_KEYS } from '../../shared/etcd-keys';
import type { DriverHealth } from '../hypervisor.driver';
import type { CephHealth, RbdImage, StorageDriver } from '../storage.driver';

const imageSchema = z.object({ pool: z.string(), image: z.string(), sizeBytes: z.number(), createdAt: z.string() });

/**
 * Simulated Ceph RBD: images live in the cluster's etcd under /debvisor/sim/rbd/<pool>/<image>, so
 * every node of the cluster sees the same images, as with a real Ceph cluster.
 */
export class SimStorageDriver implements StorageDriver {
  readonly name = 'sim';

  constructor(
    private readonly etcd: Etcd3,
    private readonly clock: Clock,
  ) {}

  async listImages(pool: string): Promise<RbdImage[]> {
    const values = await this.etcd.getAll().prefix(ETCD_KEYS.simRbdPool(pool)).strings();
    return Object.entries(values)
      .flatMap(([key, value]) => {
        const parsed = imageSchema.safeParse(JSON.parse(value));
        return parsed.success && !key.slice(ETCD_KEYS.simRbdPool(pool).length).includes('/') ? [parsed.data] : [];
      })
      .sort((a, b) => a.image.localeCompare(b.image));
  }

  async createImage(pool: string, image: string, sizeBytes: number): Promise<RbdImage> {
    const record: RbdImage = { pool, image, sizeBytes, createdAt: this.clock.now().toISOString() };
    const key = ETCD_KEYS.simRbdImage(pool, image);
    const result = await this.etcd.if(key, 'Create', '==', 0).then(this.etcd.put(key).value(JSON.stringify(record))).commit();
    if (!result.succeeded) throw new AgentError(ErrorCode.AlreadyExists, `the RBD image ${pool}/${image} exists already`);
    return record;
  }

  async health(): Promise<DriverHealth> {
    try {
      await this.etcd.get(ETCD_KEYS.simRbdPrefix).exec();
      return { name: 'sim-rbd', status: 'ok', message: 'simulated RBD pool reachable' };
    } catch {
      return { name: 'sim-rbd', status: 'failed', message: 'the cluster etcd holding the simulated RBD images is unreachable' };
    }
  }

  /** The simulated Ceph cluster has no failures of its own (its reachability shows in health()). */
  async cephHealth(): Promise<CephHealth> {
    return 'HEALTH_OK';
  }
}
