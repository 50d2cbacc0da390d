import { remoteIdSchema, uuidSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';

const stale = z.boolean().meta({ description: 'True when the remote is unreachable now and this is the last known state' });

export const nodeResourceSchema = z
  .object({
    type: z.literal('node'),
    remote: z.string(),
    id: z.string(),
    name: z.string(),
    /** offline when its lease is gone, else the node's health */
    status: z.string().meta({ description: '"ok" | "degraded" | "failed" while alive, "offline" when not' }),
    alive: z.boolean(),
    fqdn: z.string(),
    agentEndpoint: z.string(),
    cpuCount: z.number().int(),
    cpuUsage: z.number(),
    memoryTotalBytes: z.number(),
    memoryUsedBytes: z.number(),
    vmCount: z.number().int(),
    vmsRunning: z.number().int(),
    hypervisorDriver: z.string(),
    storageDriver: z.string(),
    heartbeatAt: z.string().nullable(),
    stale,
  })
  .meta({ id: 'NodeResource' });
export type NodeResource = z.infer<typeof nodeResourceSchema>;

export const vmResourceSchema = z
  .object({
    type: z.literal('vm'),
    remote: z.string(),
    id: z.string().meta({ description: 'The VM uuid' }),
    name: z.string(),
    status: z.string().meta({ description: 'stopped | starting | running | stopping | rebooting | migrating | paused | crashed' }),
    node: z.string(),
    tenant: z.string().nullable(),
    vcpus: z.number().int(),
    memoryBytes: z.number(),
    cpuUsage: z.number(),
    memoryUsedBytes: z.number(),
    uptimeSeconds: z.number(),
    stateChangedAt: z.string().nullable(),
    lockedBy: z.string().nullable(),
    labels: z.record(z.string(), z.string()),
    stale,
  });
export type VmResource = z.infer<typeof vmResourceSchema>;

export const resourceSchema = z.discriminatedUnion('type', [nodeResourceSchema, vmResourceSchema]);
export type Resource = z.infer<typeof resourceSchema>;

export const remoteStatusSchema = z
  .object({
    remote: z.string(),
    status: z.enum(['pending', 'online', 'unreachable']).meta({ description: 'pending until the first refresh finished' }),
    lastRefreshAt: z.iso.datetime().nullable().meta({ description: 'When the remote last answered' }),
    nodes: z.object({ total: z.number().int(), alive: z.number().int() }),
    vms: z.object({ total: z.number().int(), running: z.number().int() }),
    unreachableNodes: z.record(z.string(), z.string()).meta({ description: 'Nodes whose VMs the cluster could not list, with the reason' }),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    since: z.iso.datetime().nullable().meta({ description: 'Unreachable since' }),
  })
  .meta({ id: 'RemoteStatus' });
export type RemoteStatus = z.infer<typeof remoteStatusSchema>;

export class ResourceListDto extends createZodDto(
  z.object({ items: z.array(resourceSchema), remotes: z.array(remoteStatusSchema) }),
) {}

export const resourceQuerySchema = z.strictObject({
  remote: remoteIdSchema.optional(),
  type: z.enum(['node', 'vm']).optional(),
  status: z.string().max(32).optional(),
  name: z.string().max(128).optional().meta({ description: 'Case-insensitive substring of the name' }),
  tenant: z.string().max(64).optional(),
});
export type ResourceQuery = z.infer<typeof resourceQuerySchema>;
export class ResourceQueryDto extends createZodDto(resourceQuerySchema) {}

export class RefreshQueryDto extends createZodDto(z.strictObject({ remote: remoteIdSchema.optional() })) {}
export class RemoteStatusListDto extends createZodDto(z.object({ remotes: z.array(remoteStatusSchema) })) {}

export class RemoteNodesDto extends createZodDto(z.object({ items: z.array(nodeResourceSchema), remote: remoteStatusSchema })) {}
export class RemoteVmsDto extends createZodDto(z.object({ items: z.array(vmResourceSchema), remote: remoteStatusSchema })) {}
export class VmResourceDto extends createZodDto(vmResourceSchema) {}

export class RemoteResourceParamsDto extends createZodDto(z.strictObject({ remote: remoteIdSchema })) {}
export class VmParamsDto extends createZodDto(z.strictObject({ remote: remoteIdSchema, vmid: uuidSchema })) {}
