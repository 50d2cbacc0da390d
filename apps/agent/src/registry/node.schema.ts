import {
  endpointSchema,
  fqdnSchema,
  hostnameSchema,
  ipAddressSchema,
  labelSchema,
  nodeIdSchema,
} from '@debvisor/common';
import { z } from 'zod';
import { cpuFlagSchema } from '../config/agent-config.schema';
import { hasControlCharacters } from '../shared/text';

/** A uint64 as a JSON number or, from gRPC (longs as strings), a decimal string. */
export const uint64Schema = z
  .union([
    z.int().min(0),
    z
      .string()
      .regex(/^\d{1,16}$/, 'expected a decimal number')
      .transform(Number),
  ])
  .pipe(z.int().min(0).max(Number.MAX_SAFE_INTEGER, 'too large'));

const text = (max: number) =>
  z
    .string()
    .max(max)
    .refine((v) => !hasControlCharacters(v), 'no control characters allowed');

const hugepagesSchema = z.object({
  pageSizeBytes: uint64Schema,
  total: uint64Schema,
  free: uint64Schema,
});

/** What a node registers: its identity, where its agent listens, and its hardware facts. */
export const nodeInfoSchema = z.object({
  nodeId: nodeIdSchema,
  hostname: hostnameSchema,
  fqdn: fqdnSchema,
  addresses: z.array(ipAddressSchema).max(64),
  agentEndpoint: endpointSchema,
  cpuModel: text(200).min(1, 'required'),
  cpuFlags: z.array(cpuFlagSchema).max(1024),
  cpuCount: z.int().min(1).max(65536),
  memoryBytes: uint64Schema,
  hugepages: hugepagesSchema
    .nullable()
    .transform((h) => h ?? { pageSizeBytes: 0, total: 0, free: 0 }),
  versions: z
    .record(labelSchema, text(128))
    .refine((v) => Object.keys(v).length <= 32, 'at most 32 versions'),
  hypervisorDriver: labelSchema,
  storageDriver: labelSchema,
  bridges: z.array(labelSchema).max(256),
});
export type NodeInfo = z.infer<typeof nodeInfoSchema>;

/** /debvisor/nodes/<id>/info: the registered info, when it was registered and the lease TTL. */
export const storedNodeInfoSchema = nodeInfoSchema.extend({
  registeredAt: z.iso.datetime({ offset: true }),
  ttlSeconds: z.int().min(1),
});
export type StoredNodeInfo = z.infer<typeof storedNodeInfoSchema>;

export const HEALTH_STATES = ['ok', 'degraded', 'failed'] as const;

/** What a heartbeat reports (the agent stamps heartbeatAt with its own clock). */
export const nodeStatusInputSchema = z.object({
  cpuUsage: z.number().min(0).max(1),
  memoryUsedBytes: uint64Schema,
  memoryTotalBytes: uint64Schema,
  vmCount: z.int().min(0),
  vmsRunning: z.int().min(0),
  drivers: z
    .array(z.object({ name: labelSchema, status: z.enum(HEALTH_STATES), message: text(500) }))
    .max(32),
  health: z.enum(HEALTH_STATES),
});
export type NodeStatusInput = z.infer<typeof nodeStatusInputSchema>;

/** /debvisor/nodes/<id>/status */
export const storedNodeStatusSchema = nodeStatusInputSchema.extend({
  heartbeatAt: z.iso.datetime({ offset: true }),
});
export type StoredNodeStatus = z.infer<typeof storedNodeStatusSchema>;

/** A registry entry as ListNodes reports it. */
export interface NodeEntry {
  info: StoredNodeInfo;
  status: StoredNodeStatus | undefined;
  /** The node's lease is live and it was heard from (heartbeat, or registration) within its TTL. */
  alive: boolean;
}
