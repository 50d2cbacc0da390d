import type { RbdImage as ProtoRbdImage } from '@debvisor/proto';
import type { StorageDriver } from '../drivers/storage.driver';

/** Ceph's default pool, used when a request names none. */
export const DEFAULT_POOL = 'rbd';

export class StorageService {
  constructor(private readonly driver: Pick<StorageDriver, 'listImages'>) {}

  async listImages(pool: string): Promise<ProtoRbdImage[]> {
    return this.driver.listImages(pool || DEFAULT_POOL);
  }
}
