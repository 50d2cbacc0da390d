import type { DriverHealth } from './hypervisor.driver';

export interface RbdImage {
  pool: string;
  image: string;
  sizeBytes: number;
  createdAt: string;
}

/** Block storage as the agent drives it: sim today (shared through etcd), rbd later. */
export interface StorageDriver {
  readonly name: string;
  listImages(pool: string): Promise<RbdImage[]>;
  /** Creates an image; ALREADY_EXISTS when the pool has one of that name. */
  createImage(pool: string, image: string, sizeBytes: number): Promise<RbdImage>;
  health(): Promise<DriverHealth>;
}
