import { labelSchema, uuidSchema, vmNameSchema } from '@debvisor/common';
import { z } from 'zod';

export const VM_STATES = ['stopped', 'starting', 'running', 'stopping', 'rebooting', 'migrating', 'paused', 'crashed'] as const;
export type VmState = (typeof VM_STATES)[number];

const byteCount = z.int().min(0).max(Number.MAX_SAFE_INTEGER);

export const vmDefinitionSchema = z.strictObject({
  uuid: uuidSchema,
  name: vmNameSchema,
  vcpus: z.int().min(1).max(1024),
  memoryBytes: byteCount.min(16 * 1024 * 1024),
  disks: z
    .array(
      z.strictObject({
        pool: labelSchema,
        image: labelSchema,
        sizeBytes: byteCount,
        bus: z.enum(['virtio', 'scsi', 'sata', 'ide']),
      }),
    )
    .max(64),
  nics: z
    .array(
      z.strictObject({
        mac: z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, 'a MAC address is six lower-case hex pairs separated by colons'),
        bridge: labelSchema,
        model: z.enum(['virtio', 'e1000', 'rtl8139']),
        vlan: z.int().min(0).max(4094),
      }),
    )
    .max(32),
  cpuModel: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a CPU model is a name such as host-model or x86-64-v3'),
  hugepages: z.boolean(),
  tenant: z.union([z.literal(''), labelSchema]),
  labels: z.record(labelSchema, z.string().max(256)),
});

/** What defines a VM (its configuration), as the hypervisor keeps it. */
export type VmDefinition = z.infer<typeof vmDefinitionSchema>;

export interface VmRuntime {
  state: VmState;
  /** Fraction (0-1) of the VM's vCPUs in use. */
  cpuUsage: number;
  memoryUsedBytes: number;
  uptimeSeconds: number;
  stateChangedAt: string;
  /** The operation holding the VM's lock, '' when free. */
  lockedBy: string;
}

export interface VmInstance {
  spec: VmDefinition;
  runtime: VmRuntime;
}

export interface ShutdownOptions {
  /** Seconds to wait for the guest; 0 or absent: the driver's default. */
  timeoutSeconds?: number;
  /** Power off when the guest does not shut down in time. */
  forceStop?: boolean;
}

export interface Hugepages {
  pageSizeBytes: number;
  total: number;
  free: number;
}

/** Facts about the host that the node registry publishes. */
export interface HostFacts {
  hostname: string;
  fqdn: string;
  addresses: string[];
  cpuModel: string;
  cpuFlags: string[];
  cpuCount: number;
  memoryBytes: number;
  hugepages: Hugepages;
  bridges: string[];
  /** Versions of what the driver runs on (hypervisor, kernel, …). */
  versions: Record<string, string>;
}

export interface HostUsage {
  /** Fraction (0-1) of the host's CPUs in use. */
  cpuUsage: number;
  memoryUsedBytes: number;
}

export type HealthStatus = 'ok' | 'degraded' | 'failed';

export interface DriverHealth {
  name: string;
  status: HealthStatus;
  message: string;
}

/**
 * A hypervisor as the agent drives it: sim today, qemu and libvirt later. Operations return once
 * the VM reached its new state; each VM takes one operation at a time (a second one is refused
 * with FAILED_PRECONDITION while the first holds the VM's lock).
 */
export interface HypervisorDriver {
  readonly name: string;
  list(): Promise<VmInstance[]>;
  get(uuid: string): Promise<VmInstance | undefined>;
  /** Defines a new, stopped VM. */
  define(spec: VmDefinition): Promise<VmInstance>;
  start(uuid: string): Promise<VmInstance>;
  /** ACPI shutdown: the guest decides; fails after the timeout unless forceStop. */
  shutdown(uuid: string, options?: ShutdownOptions): Promise<VmInstance>;
  reboot(uuid: string): Promise<VmInstance>;
  /** Hard power-off. */
  stop(uuid: string): Promise<VmInstance>;
  facts(): Promise<HostFacts>;
  usage(): Promise<HostUsage>;
  health(): Promise<DriverHealth>;
  close(): Promise<void>;
}
