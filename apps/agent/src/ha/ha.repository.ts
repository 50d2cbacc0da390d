import type { Campaign, Etcd3 } from 'etcd3';
import type { z } from 'zod';
import { vmDefinitionSchema, type VmDefinition } from '../drivers/hypervisor.driver';
import { ETCD_KEYS } from '../shared/etcd-keys';
import type { Logger } from '../shared/logger';
import {
  eventRecordSchema,
  fenceRecordSchema,
  healthRecordSchema,
  maintenanceRecordSchema,
  memberRecordSchema,
  policyRecordSchema,
  resourceRecordSchema,
  type EventRecord,
  type FenceRecord,
  type HealthRecord,
  type MaintenanceRecord,
  type MemberRecord,
  type PolicyRecord,
  type ResourceRecord,
} from './ha.records';

/** The coordinator that leads now: its node and its fencing epoch (its election key's create revision). */
export interface Leader {
  nodeId: string;
  epoch: number;
  key: string;
}

/** Everything HA keeps under /debvisor/ha/, read at once (one etcd range). */
export interface HaSnapshot {
  members: Map<string, MemberRecord>;
  policies: Map<string, PolicyRecord>;
  resources: Map<string, ResourceRecord>;
  fences: Map<string, FenceRecord>;
  maintenance: Map<string, MaintenanceRecord>;
  specs: Map<string, VmDefinition>;
}

/** Events kept in etcd; older ones are trimmed by the coordinator. */
const EVENTS_KEPT = 1000;

/**
 * All of HA's etcd I/O (docs/ha.md): the coordinator election, the records per node and VM, and
 * the guarded writes — a coordinator's write applies only while its election key still exists with
 * the create revision that is its epoch, so a coordinator that lost its lease writes nothing.
 */
export class HaRepository {
  private sequence = 0;

  constructor(
    private readonly etcd: Etcd3,
    private readonly logger: Logger,
  ) {}

  /** Campaigns for coordinator with a lease of `ttlSeconds`; the value is this node's id. */
  campaign(nodeId: string, ttlSeconds: number): Campaign {
    return this.etcd
      .namespace('/debvisor/ha/')
      .election('coordinator', ttlSeconds)
      .campaign(nodeId);
  }

  /** The current coordinator: the election key with the lowest create revision. */
  async leader(): Promise<Leader | undefined> {
    const response = await this.etcd
      .getAll()
      .prefix(ETCD_KEYS.haElectionPrefix)
      .sort('Create', 'Ascend')
      .limit(1)
      .exec();
    const kv = response.kvs[0];
    if (!kv) return undefined;
    return {
      nodeId: kv.value.toString(),
      epoch: Number(kv.create_revision),
      key: kv.key.toString(),
    };
  }

  async snapshot(): Promise<HaSnapshot> {
    const values = await this.etcd.getAll().prefix('/debvisor/ha/').strings();
    const snapshot: HaSnapshot = {
      members: new Map(),
      policies: new Map(),
      resources: new Map(),
      fences: new Map(),
      maintenance: new Map(),
      specs: new Map(),
    };
    const sections: [string, z.ZodType, Map<string, unknown>][] = [
      [ETCD_KEYS.haMembersPrefix, memberRecordSchema, snapshot.members],
      [ETCD_KEYS.haPoliciesPrefix, policyRecordSchema, snapshot.policies],
      [ETCD_KEYS.haResourcesPrefix, resourceRecordSchema, snapshot.resources],
      [ETCD_KEYS.haFencesPrefix, fenceRecordSchema, snapshot.fences],
      [ETCD_KEYS.haMaintenancePrefix, maintenanceRecordSchema, snapshot.maintenance],
      [ETCD_KEYS.haSpecsPrefix, vmDefinitionSchema, snapshot.specs],
    ];
    for (const [key, value] of Object.entries(values)) {
      const section = sections.find(([prefix]) => key.startsWith(prefix));
      if (!section) continue;
      const parsed = section[1].safeParse(parseJson(value));
      if (parsed.success) section[2].set(key.slice(section[0].length), parsed.data);
      else this.logger.warn({ key }, 'ignoring a malformed HA record');
    }
    return snapshot;
  }

  /** Every node's published health (the keys vanish with the node's lease). */
  async healths(): Promise<Map<string, HealthRecord>> {
    const values = await this.etcd.getAll().prefix(ETCD_KEYS.nodesPrefix).strings();
    const healths = new Map<string, HealthRecord>();
    for (const [key, value] of Object.entries(values)) {
      const match = /^\/debvisor\/nodes\/([^/]+)\/health$/.exec(key);
      if (!match) continue;
      const parsed = healthRecordSchema.safeParse(parseJson(value));
      if (parsed.success) healths.set(match[1], parsed.data);
    }
    return healths;
  }

  async putHealth(nodeId: string, record: HealthRecord, leaseId: string): Promise<void> {
    await this.etcd.put(ETCD_KEYS.nodeHealth(nodeId)).value(JSON.stringify(record)).lease(leaseId);
  }

  async member(nodeId: string): Promise<MemberRecord | undefined> {
    return this.read(ETCD_KEYS.haMember(nodeId), memberRecordSchema);
  }

  async putMember(record: MemberRecord): Promise<void> {
    await this.etcd.put(ETCD_KEYS.haMember(record.nodeId)).value(JSON.stringify(record));
  }

  async fence(nodeId: string): Promise<FenceRecord | undefined> {
    return this.read(ETCD_KEYS.haFence(nodeId), fenceRecordSchema);
  }

  async policy(uuid: string): Promise<PolicyRecord | undefined> {
    return this.read(ETCD_KEYS.haPolicy(uuid), policyRecordSchema);
  }

  async putPolicy(record: PolicyRecord): Promise<void> {
    await this.etcd.put(ETCD_KEYS.haPolicy(record.vmUuid)).value(JSON.stringify(record));
  }

  /** Removes a VM's policy and its state record; answers whether there was a policy. */
  async deletePolicy(uuid: string): Promise<boolean> {
    const response = await this.etcd
      .if(ETCD_KEYS.haPolicy(uuid), 'Create', '>', 0)
      .then(
        this.etcd.delete().key(ETCD_KEYS.haPolicy(uuid)),
        this.etcd.delete().key(ETCD_KEYS.haResource(uuid)),
      )
      .commit();
    return response.succeeded;
  }

  async resource(uuid: string): Promise<ResourceRecord | undefined> {
    return this.read(ETCD_KEYS.haResource(uuid), resourceRecordSchema);
  }

  async spec(uuid: string): Promise<VmDefinition | undefined> {
    return this.read(ETCD_KEYS.haSpec(uuid), vmDefinitionSchema);
  }

  async putSpec(spec: VmDefinition): Promise<void> {
    await this.etcd.put(ETCD_KEYS.haSpec(spec.uuid)).value(JSON.stringify(spec));
  }

  async maintenance(nodeId: string): Promise<MaintenanceRecord | undefined> {
    return this.read(ETCD_KEYS.haMaintenance(nodeId), maintenanceRecordSchema);
  }

  async putMaintenance(record: MaintenanceRecord): Promise<void> {
    await this.etcd.put(ETCD_KEYS.haMaintenance(record.nodeId)).value(JSON.stringify(record));
  }

  /**
   * The coordinator's update of a drain's progress: written (with its event) only while `leader`
   * leads and the record is still `previous` — an operator who ended the maintenance meanwhile (the
   * record deleted) or asked again wins. False when nothing was written.
   */
  async updateMaintenanceGuarded(
    leader: Leader,
    previous: MaintenanceRecord,
    record: MaintenanceRecord,
    event?: EventRecord,
  ): Promise<boolean> {
    const key = ETCD_KEYS.haMaintenance(record.nodeId);
    const current = await this.etcd.get(key).string();
    if (current === null || !sameMaintenance(current, previous)) return false;
    const response = await this.etcd
      .if(leader.key, 'Create', '==', leader.epoch)
      .and(key, 'Value', '==', current)
      .then(
        this.etcd.put(key).value(JSON.stringify(record)),
        ...(event ? [this.etcd.put(this.eventKey(event)).value(JSON.stringify(event))] : []),
      )
      .commit();
    return response.succeeded;
  }

  async deleteMaintenance(nodeId: string): Promise<void> {
    await this.etcd.delete().key(ETCD_KEYS.haMaintenance(nodeId));
  }

  /** Writes a VM's HA state as the coordinator of `leader`; false when it no longer leads. */
  putResourceGuarded(leader: Leader, record: ResourceRecord): Promise<boolean> {
    return this.guarded(leader, [ETCD_KEYS.haResource(record.vmUuid), record]);
  }

  /**
   * Writes a node's fence record as the coordinator of `leader`, with the event that says what
   * changed in the same transaction (a reader that sees the record also finds its event); false
   * when it no longer leads.
   */
  putFenceGuarded(leader: Leader, record: FenceRecord, event?: EventRecord): Promise<boolean> {
    return this.guarded(
      leader,
      [ETCD_KEYS.haFence(record.nodeId), record],
      ...(event ? [[this.eventKey(event), event] as const] : []),
    );
  }

  async appendEvent(event: EventRecord): Promise<void> {
    await this.etcd.put(this.eventKey(event)).value(JSON.stringify(event));
  }

  private eventKey(event: EventRecord): string {
    const sequence = String(++this.sequence).padStart(9, '0'); // ids sort within a millisecond too
    return `${ETCD_KEYS.haEventsPrefix}${String(Date.parse(event.at)).padStart(15, '0')}-${event.nodeId}-${sequence}`;
  }

  /** Events after the id `after` ('' = from the oldest kept), oldest first, with their ids. */
  async events(after: string, limit: number): Promise<(EventRecord & { id: string })[]> {
    const from = `${ETCD_KEYS.haEventsPrefix}${after}\0`;
    const response = await this.etcd
      .getAll()
      .prefix(ETCD_KEYS.haEventsPrefix)
      .sort('Key', 'Ascend')
      .exec();
    const events: (EventRecord & { id: string })[] = [];
    for (const kv of response.kvs) {
      const key = kv.key.toString();
      if (after && key < from) continue;
      const parsed = eventRecordSchema.safeParse(parseJson(kv.value.toString()));
      if (parsed.success)
        events.push({ ...parsed.data, id: key.slice(ETCD_KEYS.haEventsPrefix.length) });
      if (events.length >= limit) break;
    }
    return events;
  }

  /** Deletes all but the newest EVENTS_KEPT events. */
  async trimEvents(): Promise<void> {
    const keys = await this.etcd.getAll().prefix(ETCD_KEYS.haEventsPrefix).keys();
    if (keys.length <= EVENTS_KEPT) return;
    const old = keys.sort().slice(0, keys.length - EVENTS_KEPT);
    for (const key of old) await this.etcd.delete().key(key);
  }

  /** Writes every [key, record] in one transaction, only while `leader` still leads. */
  private async guarded(
    leader: Leader,
    ...writes: (readonly [key: string, record: object])[]
  ): Promise<boolean> {
    const response = await this.etcd
      .if(leader.key, 'Create', '==', leader.epoch)
      .then(...writes.map(([key, record]) => this.etcd.put(key).value(JSON.stringify(record))))
      .commit();
    return response.succeeded;
  }

  private async read<T>(key: string, schema: z.ZodType<T>): Promise<T | undefined> {
    const value = await this.etcd.get(key).string();
    if (value === null) return undefined;
    const parsed = schema.safeParse(parseJson(value));
    if (!parsed.success) {
      this.logger.warn({ key }, 'ignoring a malformed HA record');
      return undefined;
    }
    return parsed.data;
  }
}

function sameMaintenance(value: string, record: MaintenanceRecord): boolean {
  const parsed = maintenanceRecordSchema.safeParse(parseJson(value));
  return (
    parsed.success &&
    parsed.data.requestedAt === record.requestedAt &&
    parsed.data.state === record.state &&
    parsed.data.reason === record.reason
  );
}

function parseJson(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}
