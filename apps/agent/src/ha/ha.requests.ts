import { nodeIdSchema, uuidSchema } from '@debvisor/common';
import { z } from 'zod';
import { haPolicySchema } from './ha.records';

/** uint64 fields arrive as decimal strings (the loader's longs: String). */
const epochSchema = z
  .union([z.string().regex(/^\d{1,16}$/, 'a whole number'), z.int().min(0)])
  .transform(Number)
  .pipe(z.int().min(1, 'the coordinator fencing epoch is required').max(Number.MAX_SAFE_INTEGER));

export const failoverVmRequestSchema = z.object({
  uuid: uuidSchema,
  targetNodeId: nodeIdSchema,
  fencingEpoch: epochSchema,
  sourceNodeId: nodeIdSchema,
});
export type FailoverVmInput = z.infer<typeof failoverVmRequestSchema>;

/** A policy as it arrives over gRPC: on_no_node '' means wait; preferred nodes unique. */
const protoPolicySchema = z.preprocess(
  (value) =>
    value && typeof value === 'object' && (value as { onNoNode?: unknown }).onNoNode === ''
      ? { ...value, onNoNode: 'wait' }
      : value,
  z.object({
    enabled: z.boolean(),
    priority: haPolicySchema.shape.priority,
    preferredNodes: haPolicySchema.shape.preferredNodes.refine(
      (nodes) => new Set(nodes).size === nodes.length,
      'a node appears twice',
    ),
    nodeGroup: haPolicySchema.shape.nodeGroup,
    maxRestarts: haPolicySchema.shape.maxRestarts,
    maxRelocations: haPolicySchema.shape.maxRelocations,
    onNoNode: haPolicySchema.shape.onNoNode,
  }),
);

export const setHaPolicyRequestSchema = z.object({
  vmUuid: uuidSchema,
  policy: z.preprocess((value) => value ?? undefined, protoPolicySchema),
});
export type SetHaPolicyInput = z.infer<typeof setHaPolicyRequestSchema>;

export const vmRefSchema = z.object({ uuid: uuidSchema });

export const setMaintenanceRequestSchema = z.object({
  nodeId: nodeIdSchema,
  enabled: z.boolean(),
});

export const emptyRequestSchema = z.object({});

export const listHaEventsRequestSchema = z.object({
  after: z.union([
    z.literal(''),
    z.string().regex(/^\d{15}-[a-z0-9-]{1,63}-\d{1,12}$/, 'an HA event id'),
  ]),
  limit: z.int().min(0).max(1000, 'at most 1000'),
});
