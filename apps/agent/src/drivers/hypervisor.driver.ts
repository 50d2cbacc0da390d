import type { Duplex } from 'node:stream';
import { labelSchema, uuidSchema, vmNameSchema } from '@debvisor/common';
import { z } from 'zod';

export const VM_STATES = [
  'stopped',
  'starting',
  'running',
  'stopping',
  'rebooting',
  'migrating',
  'paused',
  'crashed',
] as const;
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
        mac: z
          .string()
          .regex(
            /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/,
            'a MAC address is six lower-case hex pairs separated by colons',
          ),
        bridge: labelSchema,
        model: z.enum(['virtio', 'e1000', 'rtl8139']),
        vlan: z.int().min(0).max(4094),
      }),
    )
    .max(32),
  cpuModel: z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
      'a CPU model is a name such as host-model or x86-64-v3',
    ),
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
 * Where a migration stream goes: a unix socket on this host, host:port over the network, or (the
 * libvirt driver, which migrates peer-to-peer itself) the target libvirtd's URI.
 */
export type MigrationAddress =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'libvirt'; uri: string };

/**
 * QEMU-native TLS with a pre-shared key (tls-creds-psk): the direct transport. Both ends derive the
 * key from the one-time cookie, so only the holder of the cookie can connect, and only once.
 */
export interface MigrationPsk {
  identity: string;
  /** 32 bytes. */
  key: Buffer;
}

export interface IncomingOptions {
  migrationId: string;
  /** 'tunnel': listen on a unix socket only the agent reaches; 'direct': listen on `listenHost` with TLS-PSK. */
  transport: 'tunnel' | 'direct';
  /** Direct transport: the address to listen on (the agent's advertised host). */
  listenHost?: string;
  psk?: MigrationPsk;
  /** Enable post-copy on the incoming side (the source may switch to it). */
  allowPostcopy: boolean;
  /** QEMU multifd channels besides the main one (0 or absent: none); the source must use as many. */
  multifdChannels?: number;
}

export interface OutgoingOptions {
  migrationId: string;
  destination: MigrationAddress;
  /** Direct transport only. */
  psk?: MigrationPsk;
  /** Maximum downtime QEMU aims for at switchover. */
  downtimeLimitMs: number;
  /** Bytes per second; 0: unlimited. */
  bandwidthLimitBytes: number;
  autoConverge: boolean;
  /** Enable the postcopy-ram capability, so that switchToPostcopy is possible. */
  allowPostcopy: boolean;
  /** QEMU multifd channels besides the main one, as the target prepared (0 or absent: none). */
  multifdChannels?: number;
}

/** QEMU's own migration status names (query-migrate), plus 'none' before anything started. */
export const MIGRATION_STATUSES = [
  'none',
  'setup',
  'active',
  'pre-switchover',
  'device',
  'postcopy-active',
  'postcopy-paused',
  'completed',
  'failed',
  'cancelling',
  'cancelled',
] as const;
export type MigrationStatus = (typeof MIGRATION_STATUSES)[number];

/** A snapshot of an outgoing migration, as query-migrate answers it. */
export interface MigrationStats {
  status: MigrationStatus;
  transferredBytes: number;
  remainingBytes: number;
  totalBytes: number;
  /** Bytes per second the guest dirties (0 until QEMU measured it). */
  dirtyRateBytes: number;
  /** QEMU's estimate of the downtime if it switched over now. */
  expectedDowntimeMs: number;
  /** Pre-copy iterations (dirty-sync-count). */
  iteration: number;
  /** Bytes per second of the last iteration. */
  throughputBytes: number;
  /** Once completed: the downtime QEMU measured. */
  downtimeMs?: number;
  /** Once completed: QEMU's own total time. */
  totalTimeMs?: number;
  /** When failed: QEMU's reason. */
  error?: string;
}

/** What freezing a guest's filesystems achieved (the snapshot's consistency follows from it). */
export interface FreezeResult {
  frozen: boolean;
  /** Why not, when not frozen (no guest agent answered within N ms, VM not running, ...); else what froze. */
  reason: string;
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

  // Live migration. The agent's MigrationService drives these in this order; each end holds the
  // VM's lock as operation 'migration' from prepareIncoming / startOutgoing until it is settled.

  /**
   * Target: start the VM paused, waiting for an incoming migration (QEMU -incoming defer +
   * migrate-incoming), and answer where to send the stream. ALREADY_EXISTS when the VM is here.
   */
  prepareIncoming(spec: VmDefinition, options: IncomingOptions): Promise<MigrationAddress>;
  /** Target: the incoming side's status ('completed' once all state arrived; 'postcopy-active' while pages are pulled). */
  incomingStatus(uuid: string): Promise<MigrationStatus>;
  /** Target, after the source saw 'completed' (or switched to post-copy): run the VM here; it becomes an ordinary VM of this host. */
  commitIncoming(uuid: string): Promise<VmInstance>;
  /** Target, on failure or cancel: kill the incoming QEMU and forget the VM. Idempotent. */
  abortIncoming(uuid: string): Promise<void>;
  /** Source: start migrating a running VM to `destination`; returns once QEMU accepted the command. */
  startOutgoing(uuid: string, options: OutgoingOptions): Promise<void>;
  /** Source: the migration's current figures. */
  outgoingStats(uuid: string): Promise<MigrationStats>;
  /**
   * Either end: resolves at the next change of the VM's migration (QEMU's MIGRATION and
   * MIGRATION_PASS events: true), or after `timeoutMs` (false), whichever comes first. Call it
   * before reading the status, so that a change in between is not missed. Drivers without events
   * leave it out (the caller then waits `timeoutMs`).
   */
  migrationEvent?(uuid: string, timeoutMs: number): Promise<boolean>;
  /**
   * Source, post-copy: cut the migration stream on purpose (QEMU's migrate-pause). Both ends then
   * pause in 'postcopy-paused' (as when the link breaks) and keep every page until a recovery.
   */
  pauseOutgoing?(uuid: string): Promise<void>;
  /**
   * Target, post-copy paused (the link broke): listen again for the source (QEMU's
   * migrate-recover) and answer where. Over a unix socket, as the tunnel transport delivers it.
   */
  recoverIncoming?(uuid: string): Promise<MigrationAddress>;
  /** Source, post-copy paused: resume sending the missing pages to the target's new address. */
  recoverOutgoing?(uuid: string, destination: MigrationAddress): Promise<void>;
  /** Source: switch a running pre-copy migration to post-copy (needs allowPostcopy on both ends). */
  switchToPostcopy(uuid: string): Promise<void>;
  /** Source: cancel; the VM keeps running here (resumed if QEMU had paused it). Idempotent. */
  cancelOutgoing(uuid: string): Promise<void>;
  /** Source, after the target runs the VM: stop this side's QEMU and undefine the VM here. */
  finishOutgoing(uuid: string): Promise<void>;
  /** Removes a stopped VM from this host (offline migration's source, after the target defined it). */
  undefine(uuid: string): Promise<void>;

  // Guest filesystems, for application-consistent snapshots (QEMU guest agent: guest-fsfreeze-*).

  /**
   * Freezes the running guest's filesystems, waiting at most `timeoutMs` for its guest agent. A
   * guest without an agent (or a stopped VM) is not an error: frozen false, with the reason.
   * The caller thaws in any case (thawFilesystems is safe on a guest that is not frozen).
   */
  freezeFilesystems(uuid: string, timeoutMs: number): Promise<FreezeResult>;
  /** Thaws the guest's filesystems; never throws for a guest that is not frozen or has no agent. */
  thawFilesystems(uuid: string): Promise<void>;

  // Console.

  /**
   * Connects to the VM's console: the RFB (VNC) byte stream of its VNC server, which listens on a
   * unix socket of this host (never a network port). FAILED_PRECONDITION when the VM is not running.
   * The stream ends when the VM stops or leaves this node.
   */
  openConsole(uuid: string): Promise<Duplex>;
}
