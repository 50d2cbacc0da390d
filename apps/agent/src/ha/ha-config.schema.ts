import { ipAddressSchema, labelSchema } from '@debvisor/common';
import { z } from 'zod';

/** The agent's `ha` settings (docs/ha.md): detection, fencing and health scoring. */
export const haConfigSchema = z
  .strictObject({
    /** Take part in HA: campaign for coordinator, publish health, accept FailoverVm. */
    enabled: z.boolean().default(true),
    /** How often the coordinator looks at the cluster (and the node at its own fence). */
    tickMs: z.int().min(100).max(60_000).default(1_000),
    /** The coordinator election's lease TTL: how fast a dead coordinator is replaced. */
    coordinatorTtlSeconds: z.int().min(2).max(600).default(10),
    /** Extra wait after a node's lease expired before it is fenced (0: at once). */
    fenceDelaySeconds: z.number().min(0).max(3600).default(0),
    /** How long one fencing attempt may take before it counts as unconfirmed. */
    fenceTimeoutSeconds: z.int().min(1).max(600).default(30),
    /** After an unconfirmed fence, the next attempt comes this much later. */
    fenceRetrySeconds: z.int().min(1).max(3600).default(10),
    /** How long a Ceph blocklist entry of a fenced node lasts unless released (default 7 days). */
    blocklistSeconds: z
      .int()
      .min(60)
      .max(366 * 86_400)
      .default(7 * 86_400),
    /**
     * The addresses of this node's Ceph clients (its QEMUs', its agent's): fencing blocklists every
     * client from them (`<ip>:0/0`). Default: none, only the clients that have the node's HA disks
     * open are blocklisted (watchers), plus its locks broken.
     */
    fenceAddresses: z.array(ipAddressSchema).max(16).default([]),
    /** Node groups this node belongs to (HaPolicy.node_group). */
    groups: z.array(labelSchema).max(32).default([]),
    /** The gateway the network probe pings (unset: peers only). */
    gateway: ipAddressSchema.optional(),
    /** Health score thresholds (0-100): below degradedBelow "degraded", below failedBelow "failed". */
    degradedBelow: z.number().min(0).max(100).default(80),
    failedBelow: z.number().min(0).max(100).default(40),
    /** Deadline of each health probe. */
    probeTimeoutMs: z.int().min(100).max(60_000).default(2_000),
    /**
     * A node that could not renew its lease for its whole TTL stops its own HA VMs (self-fencing, a
     * software watchdog): the coordinator restarts them elsewhere once the node is fenced.
     */
    selfFence: z.boolean().default(true),
    /** Failovers run at once per coordinator (bounded: a target starts VMs one by one anyway). */
    recoveryConcurrency: z.int().min(1).max(64).default(8),
    /** Live migrations at once when draining nodes for maintenance (each moves a VM's memory). */
    drainConcurrency: z.int().min(1).max(16).default(2),
    /** A drain move that failed (or found no node) is tried again after this, doubling up to 16×. */
    drainRetrySeconds: z.number().min(0.1).max(3600).default(10),
    /**
     * Restarts and relocations of an HA VM count against its policy's max_restarts and
     * max_relocations within this window: a VM that ran this long without one starts afresh.
     */
    restartWindowSeconds: z
      .int()
      .min(10)
      .max(7 * 86_400)
      .default(3_600),
  })
  .refine((c) => c.failedBelow <= c.degradedBelow, {
    message: 'must not exceed degradedBelow',
    path: ['failedBelow'],
  });
export type HaConfig = z.infer<typeof haConfigSchema>;
