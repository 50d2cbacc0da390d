import { nodeIdSchema, remoteIdSchema, uuidSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { privilegesSchema } from '../resources/resources.dto';

/**
 * High availability as the manager shows it. The cluster's agents decide everything (coordinator,
 * fencing, recovery); the manager reads their HaService, maps the agents' states to the four the
 * operators watch — protected, recovering, fenced, error — and keeps the agents' own word next to
 * it, so that nothing is lost in the mapping.
 */

/** A node's HA state as the cluster reports it (`unknown`: a value this manager does not know). */
export const HA_NODE_STATES = [
  'online',
  'draining',
  'maintenance',
  'suspect',
  'fencing',
  'fenced',
  'fence-failed',
  'rejoining',
  'unknown',
] as const;
export type HaNodeState = (typeof HA_NODE_STATES)[number];

/**
 * A VM's HA state as the manager shows it: `protected` (runs, will be recovered), `recovering`
 * (being started elsewhere, or waiting for a node that fits), `fenced` (its node is fenced and the
 * VM not yet recovered), `error` (HA gave up: the reason says why), `disabled` (policy switched
 * off), `stopped` (stopped on purpose: not recovered), `unknown`.
 */
export const HA_VM_STATES = [
  'protected',
  'recovering',
  'fenced',
  'error',
  'disabled',
  'stopped',
  'unknown',
] as const;
export type HaVmState = (typeof HA_VM_STATES)[number];

const text = z.string().max(1000);

export const haPolicySchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .meta({ description: 'false keeps the policy but recovers nothing' }),
    priority: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .default(100)
      .meta({ description: 'Higher first when VMs are recovered or drained' }),
    preferredNodes: z
      .array(nodeIdSchema)
      .max(64)
      .default([])
      .meta({ description: 'Nodes tried first, in order' }),
    nodeGroup: z
      .string()
      .regex(
        /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?$/,
        'a node group is empty or 1-63 lower-case letters, digits and inner hyphens',
      )
      .default('')
      .meta({ description: "Only nodes of this group (the agents' ha.groups); empty: any node" }),
    maxRestarts: z
      .number()
      .int()
      .min(0)
      .max(100)
      .default(1)
      .meta({ description: 'Restarts in place per hour of a VM that crashed on a live node' }),
    maxRelocations: z.number().int().min(0).max(100).default(1).meta({
      description: "Recoveries onto another node per hour; beyond, the VM is left in 'error'",
    }),
    onNoNode: z.enum(['wait', 'stop']).default('wait').meta({
      description:
        "When no node fits: wait (keep trying, shown as recovering) or stop (give up, shown as 'error')",
    }),
  })
  .meta({ id: 'HaPolicy' });
export type HaPolicyBody = z.infer<typeof haPolicySchema>;
export class HaPolicyDto extends createZodDto(haPolicySchema) {}

export const haPolicyViewSchema = z
  .object({
    enabled: z.boolean(),
    priority: z.number().int(),
    preferredNodes: z.array(z.string()),
    nodeGroup: z.string(),
    maxRestarts: z.number().int(),
    maxRelocations: z.number().int(),
    onNoNode: z.string(),
  })
  .meta({ id: 'HaPolicyView' });

export const haProbeSchema = z
  .object({
    name: z.string().meta({ description: 'hypervisor, ceph, network or etcd' }),
    result: z.string().meta({ description: 'ok, warn or fail' }),
    penalty: z.number().meta({ description: 'Points this probe takes off the score' }),
    reason: z.string(),
    latencyMs: z.number(),
  })
  .meta({ id: 'HaProbe' });

export const haNodeViewSchema = z
  .object({
    node: z.string(),
    state: z.enum(HA_NODE_STATES),
    reason: z.string(),
    alive: z.boolean().meta({ description: "The node's lease in etcd is alive" }),
    coordinator: z.boolean().meta({ description: 'This node is the HA coordinator' }),
    health: z
      .object({
        score: z.number().meta({ description: '0 … 100; 100 is fully healthy' }),
        state: z.string().meta({ description: 'healthy, degraded or failed' }),
        degradedBelow: z.number(),
        failedBelow: z.number(),
        evaluatedAt: z.string(),
        probes: z.array(haProbeSchema),
      })
      .nullable(),
    fence: z
      .object({
        state: z.string().meta({ description: 'fencing, fenced, unconfirmed or released' }),
        epoch: z.string(),
        blocklisted: z.array(z.string()),
        locksBroken: z.array(z.string()),
        at: z.string(),
        reason: z.string(),
      })
      .nullable()
      .meta({ description: "The node's fence record, when it has one" }),
  })
  .meta({ id: 'HaNodeView' });
export type HaNodeView = z.infer<typeof haNodeViewSchema>;

export const haVmViewSchema = z
  .object({
    vm: z.string(),
    name: z.string(),
    state: z.enum(HA_VM_STATES),
    clusterState: z.string().meta({
      description:
        "The cluster's own word: protected, recovering, pending (no node fits yet), error, disabled, stopped",
    }),
    node: z.string().meta({ description: 'Where the VM runs, or ran while it is recovered' }),
    reason: z.string(),
    policy: haPolicyViewSchema,
    restarts: z.number().int().meta({ description: 'Restarts in place within the last hour' }),
    relocations: z
      .number()
      .int()
      .meta({ description: 'Recoveries elsewhere within the last hour' }),
    epoch: z.string().meta({ description: "The coordinator's fencing epoch of the last change" }),
    updatedAt: z.string(),
  })
  .meta({ id: 'HaVmView' });
export type HaVmView = z.infer<typeof haVmViewSchema>;

const availability = {
  available: z.boolean().meta({
    description:
      "false when the cluster's HA state could not be read (remote unreachable, agents without HA, a credential without ha:status:read): error says why",
  }),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
};

export const remoteHaSchema = z
  .object({
    remote: z.string(),
    ...availability,
    coordinator: z
      .string()
      .nullable()
      .meta({ description: 'The node holding the coordinator lease; null when none is elected' }),
    fencingEpoch: z.string().nullable().meta({
      description: "The coordinator's fencing epoch: every HA action carries it",
    }),
    readAt: z.iso.datetime(),
    nodes: z.array(haNodeViewSchema),
    vms: z.array(haVmViewSchema).meta({ description: 'The HA VMs the caller may see (vm.audit)' }),
    privileges: privilegesSchema.meta({
      description: 'The privileges the caller holds on /remotes/{remote} (node.maintenance …)',
    }),
  })
  .meta({ id: 'RemoteHa' });
export type RemoteHa = z.infer<typeof remoteHaSchema>;
export class RemoteHaDto extends createZodDto(remoteHaSchema) {}

export const vmHaSchema = z
  .object({
    remote: z.string(),
    vm: z.string(),
    ...availability,
    protected: z.boolean().meta({ description: 'The VM is under HA (it has a policy)' }),
    ha: haVmViewSchema.nullable().meta({ description: 'Its HA state; null when not under HA' }),
    node: haNodeViewSchema
      .nullable()
      .meta({ description: 'The HA state of the node the VM runs on (or ran on)' }),
    coordinator: z.string().nullable(),
    fencingEpoch: z.string().nullable(),
    readAt: z.iso.datetime(),
  })
  .meta({ id: 'VmHa' });
export type VmHa = z.infer<typeof vmHaSchema>;
export class VmHaDto extends createZodDto(vmHaSchema) {}

const counts = <T extends readonly string[]>(states: T) =>
  z.object(
    Object.fromEntries(states.map((state) => [state, z.number().int().min(0)])) as Record<
      T[number],
      z.ZodNumber
    >,
  );

export const haRemoteSummarySchema = z
  .object({
    remote: z.string(),
    status: z.enum(['pending', 'ok', 'unreachable', 'unavailable']).meta({
      description:
        "The last HA read: pending (not read yet), ok, unreachable (no agent answered), unavailable (the agents answered without HA: the agent version or the credential's ha:status:read)",
    }),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    readAt: z.iso.datetime().nullable(),
    coordinator: z.string().nullable(),
    fencingEpoch: z.string().nullable(),
    nodes: counts(HA_NODE_STATES).meta({ id: 'HaNodeCounts' }),
    vms: counts(HA_VM_STATES).meta({
      id: 'HaVmCounts',
      description: 'HA VMs by state (all of the remote: the counts hold no names)',
    }),
    alerts: z
      .array(z.object({ severity: z.enum(['critical', 'warning']), message: text }))
      .meta({ description: 'What needs attention: fenced nodes, VMs in error, no coordinator' }),
  })
  .meta({ id: 'HaRemoteSummary' });
export type HaRemoteSummary = z.infer<typeof haRemoteSummarySchema>;

export const haOverviewSchema = z
  .object({
    remotes: z.array(haRemoteSummarySchema).meta({
      description:
        "Every remote the caller may see (remote.audit), from the manager's last HA read",
    }),
  })
  .meta({ id: 'HaOverview' });
export type HaOverview = z.infer<typeof haOverviewSchema>;
export class HaOverviewDto extends createZodDto(haOverviewSchema) {}

export class HaNodeParamsDto extends createZodDto(
  z.strictObject({ remote: remoteIdSchema, node: nodeIdSchema }),
) {}

export class HaRemoteParamsDto extends createZodDto(z.strictObject({ remote: remoteIdSchema })) {}

export class HaVmParamsDto extends createZodDto(
  z.strictObject({ remote: remoteIdSchema, vmid: uuidSchema }),
) {}

export class HaNodeDto extends createZodDto(haNodeViewSchema) {}
