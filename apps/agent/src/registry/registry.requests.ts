import { nodeIdSchema } from '@debvisor/common';
import { z } from 'zod';
import { nodeInfoSchema, nodeStatusInputSchema } from './node.schema';

const required = <T extends z.ZodType>(schema: T) =>
  schema
    .nullable()
    .refine((v) => v !== null, 'is required')
    .transform((v) => v!);

export const registerNodeRequestSchema = z.object({
  node: required(nodeInfoSchema),
  ttlSeconds: z.int().min(0).max(3600),
});

export const heartbeatRequestSchema = z.object({
  nodeId: nodeIdSchema,
  leaseId: z
    .string()
    .regex(/^[1-9]\d{0,19}$/, 'a lease id is the decimal number RegisterNode answered'),
  status: required(nodeStatusInputSchema),
});

export const emptyRequestSchema = z.object({});

export const renewCertificateRequestSchema = z.object({
  csrPem: z
    .string()
    .max(16 * 1024, 'a CSR of at most 16 KiB')
    .refine((v) => v.includes('-----BEGIN CERTIFICATE REQUEST-----'), 'a PEM certificate request'),
});
