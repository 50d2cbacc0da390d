import { ipAddressSchema, labelSchema, nodeIdSchema, uuidSchema } from '@debvisor/common';
import { z } from 'zod';
import { cpuFlagSchema } from '../config/agent-config.schema';

/** What the etcd values of HA hold (docs/ha.md); every read is parsed, a malformed value ignored. */

const text = (max: number) => z.string().max(max);
const timestamp = z.iso.datetime({ offset: true });

export const PROBE_NAMES = ['hypervisor', 'ceph', 'network', 'etcd'] as const;
export type ProbeName = (typeof PROBE_NAMES)[number];
export const PROBE_RESULTS = ['ok', 'warn', 'fail'] as const;
export type ProbeResult = (typeof PROBE_RESULTS)[number];
export const HEALTH_STATES = ['healthy', 'degraded', 'failed'] as const;

export const probeSchema = z.object({
  name: z.enum(PROBE_NAMES),
  result: z.enum(PROBE_RESULTS),
  penalty: z.number().min(0).max(100),
  reason: text(500),
  latencyMs: z.int().min(0),
});
export type Probe = z.infer<typeof probeSchema>;

/** /debvisor/nodes/<id>/health, bound to the node's lease. */
export const healthRecordSchema = z.object({
  score: z.number().min(0).max(100),
  state: z.enum(HEALTH_STATES),
  probes: z.array(probeSchema).max(16),
  evaluatedAt: timestamp,
  degradedBelow: z.number(),
  failedBelow: z.number(),
});
export type HealthRecord = z.infer<typeof healthRecordSchema>;

/**
 * /debvisor/ha/members/<id>: what the coordinator must know of a node after its lease (and its
 * registry entry) is gone: where to fence it, its groups and capacity facts, and whether it cleaned
 * up after a fence (its old VMs gone).
 */
export const memberRecordSchema = z.object({
  nodeId: nodeIdSchema,
  fenceAddresses: z.array(ipAddressSchema).max(16),
  groups: z.array(labelSchema).max(32),
  /** The node's CPU (placement checks a host-model VM's baseline against it once the node is gone). */
  cpuModel: text(200),
  cpuFlags: z.array(cpuFlagSchema).max(1024),
  updatedAt: timestamp,
  /** The fence epoch after which the node stopped every old VM (it may be released from that fence). */
  cleanAfterEpoch: z.number().int().min(0).default(0),
  /**
   * Which fence that was (its detectedAt): a coordinator may fence the same node twice in one
   * epoch, and a clean report for the first must not let the second's VMs start elsewhere.
   */
  cleanAfterFence: z.union([z.literal(''), timestamp]).default(''),
  /** When its watchdog last stopped its HA VMs ('' never): the coordinator fences it and recovers them. */
  selfFencedAt: z.union([z.literal(''), timestamp]).default(''),
  /**
   * Its HA VMs that are defined here but not running (docs/ha.md, restarts): `crashed` ones (the
   * process died: QEMU killed, a guest panic) are restarted by the coordinator; `stopped` ones were
   * stopped on purpose (StopVm, ShutdownVm, the guest powering off) and are left alone.
   */
  downVms: z
    .array(
      z.object({ vmUuid: uuidSchema, state: z.enum(['crashed', 'stopped']), since: timestamp }),
    )
    .max(10_000)
    .default([]),
});
export type MemberRecord = z.infer<typeof memberRecordSchema>;

export const ON_NO_NODE = ['wait', 'stop'] as const;

export const haPolicySchema = z.strictObject({
  enabled: z.boolean(),
  priority: z.int().min(0).max(1000),
  preferredNodes: z.array(nodeIdSchema).max(64),
  nodeGroup: z.union([z.literal(''), labelSchema]),
  maxRestarts: z.int().min(0).max(100),
  maxRelocations: z.int().min(0).max(100),
  onNoNode: z.enum(ON_NO_NODE),
});
export type HaPolicy = z.infer<typeof haPolicySchema>;

/** Has the node reported its old VMs gone after this very fence? */
export function cleanAfter(member: MemberRecord | undefined, fence: FenceRecord): boolean {
  return (
    member !== undefined &&
    member.cleanAfterEpoch >= fence.epoch &&
    member.cleanAfterFence === fence.detectedAt
  );
}

/** /debvisor/ha/policies/<uuid> */
export const policyRecordSchema = z.object({
  vmUuid: uuidSchema,
  vmName: text(128),
  policy: haPolicySchema,
  updatedAt: timestamp,
});
export type PolicyRecord = z.infer<typeof policyRecordSchema>;

export const RESOURCE_STATES = [
  'protected',
  'recovering',
  'pending',
  'error',
  'disabled',
  'stopped',
] as const;
export type ResourceState = (typeof RESOURCE_STATES)[number];

/** /debvisor/ha/resources/<uuid>, written by the coordinator only. */
export const resourceRecordSchema = z.object({
  vmUuid: uuidSchema,
  vmName: text(128),
  state: z.enum(RESOURCE_STATES),
  nodeId: z.union([z.literal(''), nodeIdSchema]),
  reason: text(1000),
  /** When each relocation / restart happened (the last hour's count against the policy). */
  relocations: z.array(timestamp).max(200),
  restarts: z.array(timestamp).max(200),
  epoch: z.number().int().min(0),
  updatedAt: timestamp,
});
export type ResourceRecord = z.infer<typeof resourceRecordSchema>;

export const FENCE_STATES = ['fencing', 'fenced', 'unconfirmed', 'released'] as const;
export type FenceState = (typeof FENCE_STATES)[number];

/** /debvisor/ha/fences/<node>, written by the coordinator only. */
export const fenceRecordSchema = z.object({
  nodeId: nodeIdSchema,
  state: z.enum(FENCE_STATES),
  epoch: z.number().int().min(0),
  blocklisted: z.array(text(200)).max(1000),
  locksBroken: z.array(text(200)).max(1000),
  /** The HA VMs the node held when it was fenced. */
  vms: z.array(uuidSchema).max(10_000),
  at: timestamp,
  reason: text(1000),
  /** When the node's lease was first seen gone (detection). */
  detectedAt: timestamp,
  /** Confirmation time ('' until fenced). */
  fencedAt: z.union([z.literal(''), timestamp]),
});
export type FenceRecord = z.infer<typeof fenceRecordSchema>;

export const MAINTENANCE_STATES = ['draining', 'maintenance', 'failed'] as const;

/** /debvisor/ha/maintenance/<node> */
export const maintenanceRecordSchema = z.object({
  nodeId: nodeIdSchema,
  state: z.enum(MAINTENANCE_STATES),
  reason: text(1000),
  requestedAt: timestamp,
});
export type MaintenanceRecord = z.infer<typeof maintenanceRecordSchema>;

export const EVENT_KINDS = [
  'coordinator-elected',
  'node-suspect',
  'fence-started',
  'fenced',
  'fence-unconfirmed',
  'fence-released',
  'vm-recovering',
  'vm-recovered',
  'vm-recovery-failed',
  'node-rejoining',
  'node-self-fenced',
  'drain-started',
  'drain-finished',
  'drain-failed',
  'drain-stopped',
  /** A drain's moves: nodeId is the draining node, vmUuid the VM (the drain's journal). */
  'drain-vm-moving',
  'drain-vm-moved',
  'drain-vm-failed',
  'vm-crashed',
  'vm-restarted',
  'vm-restart-failed',
  'vm-relocated',
  'vm-gave-up',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

/** /debvisor/ha/events/<ms>-<node>-<seq> */
export const eventRecordSchema = z.object({
  at: timestamp,
  epoch: z.number().int().min(0),
  kind: z.enum(EVENT_KINDS),
  nodeId: text(63),
  vmUuid: z.string().optional(),
  message: text(1000),
});
export type EventRecord = z.infer<typeof eventRecordSchema>;

/** An event the coordinator of `epoch` records at `at` (the message cut to the record's limit). */
export function haEvent(
  at: Date,
  epoch: number,
  kind: EventKind,
  nodeId: string,
  vmUuid: string | undefined,
  message: string,
): EventRecord {
  return {
    at: at.toISOString(),
    epoch,
    kind,
    nodeId,
    ...(vmUuid ? { vmUuid } : {}),
    message: message.slice(0, 1000),
  };
}
