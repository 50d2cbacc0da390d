import type { DriverHealth } from './hypervisor.driver';

/** The Ceph cluster's own health, as `ceph health` reports it. */
export const CEPH_HEALTH = ['HEALTH_OK', 'HEALTH_WARN', 'HEALTH_ERR'] as const;
export type CephHealth = (typeof CEPH_HEALTH)[number];

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
  /**
   * The storage cluster's health (exported as debvisor_ceph_health_status): the rbd driver reads it
   * from `ceph health --format json`; the sim driver's simulated cluster is always HEALTH_OK.
   */
  cephHealth(): Promise<CephHealth>;
}
