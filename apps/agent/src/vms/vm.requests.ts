import { nodeIdSchema, uuidSchema } from '@debvisor/common';
import { z } from 'zod';
import { protoVmSpecSchema } from '../migration/migration.requests';
import { emptyOr } from '../rpc/request-validation';

export const listVmsRequestSchema = z.object({
  nodeId: emptyOr(nodeIdSchema, 'a node id is 1-63 lower-case letters, digits and inner hyphens'),
});

export const vmRefSchema = z.object({ uuid: uuidSchema });

export const shutdownVmRequestSchema = z.object({
  uuid: uuidSchema,
  timeoutSeconds: z.int().min(0).max(3600, 'at most 3600 seconds'),
  forceStop: z.boolean(),
});

export const defineVmRequestSchema = z.object({
  spec: protoVmSpecSchema,
  nodeId: emptyOr(nodeIdSchema, 'a node id is 1-63 lower-case letters, digits and inner hyphens'),
});
