import { nodeIdSchema, remoteIdSchema, uuidSchema } from '@debvisor/common';
import { ALL_PRIVILEGES } from '@debvisor/permissions';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { SEARCH_KEYS } from './resource-search';

/** What the caller holds on an object, from libs/permissions: for the UI to enable or hide actions (the server still checks). */
export const privilegesSchema = z
  .array(z.enum(ALL_PRIVILEGES))
  .meta({ description: 'The privileges the caller holds on this object (libs/permissions)' });

const stale = z.boolean().meta({
  description: 'True when the remote or node does not answer now and this is the last known state',
});

export const NODE_STATES = ['online', 'degraded', 'unreachable', 'down', 'decommissioned'] as const;
export type NodeState = (typeof NODE_STATES)[number];

export const nodeResourceSchema = z
  .object({
    type: z.literal('node'),
    remote: z.string(),
    id: z.string(),
    name: z.string(),
    /** offline when its lease is gone, else the node's health */
    status: z
      .string()
      .meta({ description: '"ok" | "degraded" | "failed" while alive, "offline" when not' }),
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
    state: z.enum(NODE_STATES).meta({
      description:
        'online; degraded (alive, health not ok); unreachable (its lease lives but its agent does not answer); ' +
        'down (its lease expired or the cluster no longer lists it: presumed down, kept until an operator forgets it); ' +
        'decommissioned (taken out of service by an operator: listed, no VMs expected, no alert, online again once it answers)',
    }),
    stateSince: z.iso
      .datetime()
      .nullable()
      .meta({ description: 'When the node entered its state (as seen by this manager)' }),
    lastSeenAt: z.iso
      .datetime()
      .nullable()
      .meta({ description: 'The last refresh that found the node answering' }),
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
    status: z.string().meta({
      description:
        'stopped | starting | running | stopping | rebooting | migrating | paused | crashed; unknown while its node does not answer',
    }),
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
    lastSeenAt: z.iso
      .datetime()
      .nullable()
      .meta({ description: 'The last refresh that listed the VM' }),
    stale,
  })
  .meta({ id: 'VmResource' });
export type VmResource = z.infer<typeof vmResourceSchema>;

export const vmDiskSchema = z
  .object({
    pool: z.string().meta({ description: 'The storage pool (Ceph RBD pool) holding the image' }),
    image: z.string().meta({ description: 'The image name in its pool' }),
    sizeBytes: z.number(),
    bus: z.string().meta({ description: 'virtio | scsi | sata | ide' }),
  })
  .meta({ id: 'VmDisk' });
export type VmDisk = z.infer<typeof vmDiskSchema>;

export const vmNicSchema = z
  .object({
    mac: z.string(),
    bridge: z.string().meta({ description: 'The host bridge the NIC is plugged into' }),
    model: z.string().meta({ description: 'virtio | e1000 | …' }),
    vlan: z.number().int().nullable().meta({ description: 'The VLAN tag; null when untagged' }),
  })
  .meta({ id: 'VmNic' });
export type VmNic = z.infer<typeof vmNicSchema>;

/** The parts of a VM's spec that only its detail shows (the cache keeps them for every VM). */
export interface VmHardware {
  cpuModel: string;
  hugepages: boolean;
  disks: VmDisk[];
  nics: VmNic[];
}

export const vmDetailSchema = vmResourceSchema
  .extend({
    cpuModel: z
      .string()
      .meta({ description: 'The CPU baseline the guest needs ("host-model", "x86-64-v2", …)' }),
    hugepages: z.boolean(),
    disks: z.array(vmDiskSchema),
    nics: z.array(vmNicSchema),
    privileges: privilegesSchema.meta({
      description: "The privileges the caller holds on the VM's ACL path",
    }),
  })
  .meta({ id: 'VmDetail' });
export type VmDetail = z.infer<typeof vmDetailSchema>;

export const resourceSchema = z.discriminatedUnion('type', [nodeResourceSchema, vmResourceSchema]);
export type Resource = z.infer<typeof resourceSchema>;

export const remoteStatusSchema = z
  .object({
    remote: z.string(),
    status: z
      .enum(['pending', 'online', 'unreachable'])
      .meta({ description: 'pending until the first refresh finished' }),
    health: z.enum(['pending', 'online', 'degraded', 'unreachable']).meta({
      description:
        'The worst of the remote and its nodes: unreachable when the remote does not answer, degraded when any known node is not online',
    }),
    lastRefreshAt: z.iso
      .datetime()
      .nullable()
      .meta({ description: 'When the remote last answered' }),
    nodes: z.object({ total: z.number().int(), alive: z.number().int() }),
    vms: z.object({ total: z.number().int(), running: z.number().int() }),
    unreachableNodes: z
      .record(z.string(), z.string())
      .meta({ description: 'Nodes whose VMs the cluster could not list, with the reason' }),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    since: z.iso.datetime().nullable().meta({ description: 'Unreachable since' }),
    privileges: privilegesSchema.meta({
      description: 'The privileges the caller holds on /remotes/{remote}',
    }),
  })
  .meta({ id: 'RemoteStatus' });
export type RemoteStatus = z.infer<typeof remoteStatusSchema>;

export class ResourceListDto extends createZodDto(
  z
    .object({
      items: z
        .array(resourceSchema)
        .meta({ description: 'One page of the matching nodes and VMs' }),
      total: z.number().int().meta({ description: 'How many nodes and VMs match, before paging' }),
      limit: z.number().int(),
      offset: z.number().int(),
      remotes: z
        .array(remoteStatusSchema)
        .meta({ description: 'The status of every remote in scope' }),
    })
    .meta({ id: 'ResourceList' }),
) {}

export const RESOURCE_SORTS = [
  'name',
  '-name',
  'status',
  '-status',
  'remote',
  '-remote',
  'node',
  '-node',
  'cpu',
  '-cpu',
  'memory',
  '-memory',
] as const;
export type ResourceSort = (typeof RESOURCE_SORTS)[number];

export const resourceQuerySchema = z.strictObject({
  remote: remoteIdSchema.optional(),
  type: z.enum(['node', 'vm']).optional(),
  status: z.string().max(32).optional(),
  name: z
    .string()
    .max(128)
    .optional()
    .meta({ description: 'Case-insensitive substring of the name' }),
  tenant: z.string().max(64).optional(),
  q: z
    .string()
    .max(512)
    .optional()
    .meta({
      description:
        `A search: space-separated terms, all of which must match. \`key:value\` with the keys ${SEARCH_KEYS.join(', ')} ` +
        '(`label:env=prod`, or `label:env` for a label that is there); values may be double-quoted (`name:"web 1"`). ' +
        'The same key repeated matches any of its values. A bare word is a case-insensitive substring of the name; ' +
        'name: is a substring too, the other keys compare whole values, ignoring case. tenant: and label: match only VMs.',
      example: 'web remote:dc-east status:running status:paused label:env=prod',
    }),
  limit: z.coerce.number().int().min(1).max(5000).default(1000),
  offset: z.coerce.number().int().min(0).max(10_000_000).default(0),
  sort: z.enum(RESOURCE_SORTS).optional().meta({
    description:
      'The order (`-` for descending); default: by remote, nodes before VMs, then by name. node: by node name; cpu and memory: by use',
  }),
});
export type ResourceQuery = z.infer<typeof resourceQuerySchema>;
export class ResourceQueryDto extends createZodDto(resourceQuerySchema) {}

export class RefreshQueryDto extends createZodDto(
  z.strictObject({ remote: remoteIdSchema.optional() }),
) {}
export class RemoteStatusListDto extends createZodDto(
  z.object({ remotes: z.array(remoteStatusSchema) }),
) {}

export class RemoteNodesDto extends createZodDto(
  z.object({ items: z.array(nodeResourceSchema), remote: remoteStatusSchema }),
) {}
export class RemoteVmsDto extends createZodDto(
  z.object({ items: z.array(vmResourceSchema), remote: remoteStatusSchema }),
) {}
export class VmDetailDto extends createZodDto(vmDetailSchema) {}

export class RemoteResourceParamsDto extends createZodDto(
  z.strictObject({ remote: remoteIdSchema }),
) {}
export class NodeParamsDto extends createZodDto(
  z.strictObject({ remote: remoteIdSchema, node: nodeIdSchema }),
) {}
export class VmParamsDto extends createZodDto(
  z.strictObject({ remote: remoteIdSchema, vmid: uuidSchema }),
) {}
