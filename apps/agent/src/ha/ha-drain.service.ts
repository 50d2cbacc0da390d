import type { VmSpec__Output } from '@debvisor/proto';
import type { NodeEntry } from '../registry/node.schema';
import { peerTargetOf, type PeerTarget } from '../rpc/peer-client.repository';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { VmLocation } from '../vms/vm-index.repository';
import { drainOrder, drainState, retryDelayMs } from './drain-plan';
import type { HaConfig } from './ha-config.schema';
import {
  haEvent,
  type EventKind,
  type EventRecord,
  type HaPolicy,
  type MaintenanceRecord,
} from './ha.records';
import type { HaRepository, HaSnapshot, Leader } from './ha.repository';
import { placeVm, type PlacementCandidate } from './placement';
import type { VmMove } from './vm-mover.repository';

/** A VM without an HA policy is placed like an HA VM without preferences. */
const NO_POLICY: HaPolicy = {
  enabled: false,
  priority: 0,
  preferredNodes: [],
  nodeGroup: '',
  maxRestarts: 0,
  maxRelocations: 0,
  onNoNode: 'wait',
};

/** The coordinator's look at the cluster, as the drain uses it. */
export interface DrainView {
  leader: Leader;
  ha: HaSnapshot;
  nodes: Map<string, NodeEntry>;
  alive: Set<string>;
  index: Map<string, VmLocation>;
}

export interface HaDrainDeps {
  config: HaConfig;
  repository: Pick<HaRepository, 'updateMaintenanceGuarded' | 'appendEvent'>;
  mover: {
    get(
      node: PeerTarget,
      uuid: string,
    ): Promise<{ spec: VmSpec__Output | null; runtime: { state: string } | null }>;
    stop(node: PeerTarget, uuid: string): Promise<unknown>;
    move(move: VmMove, spec: VmSpec__Output): Promise<string>;
  };
  /** Placement's view of the nodes (the coordinator's), `reserved` memory added per node. */
  candidates(view: DrainView, source: string, reserved: Map<string, number>): PlacementCandidate[];
  /** The coordinator's VMs under way (recoveries, restarts, moves): one action per VM at a time. */
  inFlight: Set<string>;
  /** Is the VM an HA VM whose process died? The restart policy moves those, not the drain. */
  crashedHaVm(view: DrainView, uuid: string, nodeId: string): boolean;
  clock: Clock;
  logger: Logger;
}

interface Attempt {
  failures: number;
  nextAt: number;
  reason: string;
}

/**
 * Maintenance drains (docs/ha.md): the coordinator live-migrates the VMs of every node in
 * maintenance away — HA VMs by priority, then the others — to nodes placement chooses,
 * `drainConcurrency` at a time, over the agents' own intra-cluster migration. A VM that cannot move
 * (no node fits, the migration fails) stays where it runs, its reason in the node's record, and is
 * tried again with back-off. Ending the maintenance starts no further move (moves under way finish:
 * a live migration either completes or leaves the VM running where it was). The node turns to
 * `maintenance` once no VM is placed on it.
 */
export class HaDrain {
  private readonly attempts = new Map<string, Attempt>();
  private readonly moving = new Map<string, { name: string; source: string; target: string }>();
  private readonly reserved = new Map<string, number>();
  /** Nodes this coordinator saw in maintenance (to tell when a drain is called off). */
  private readonly known = new Set<string>();
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly deps: HaDrainDeps) {}

  /** Waits for the moves under way (at shutdown). */
  async settle(): Promise<void> {
    await Promise.all([...this.running]);
  }

  async step(view: DrainView): Promise<void> {
    for (const record of view.ha.maintenance.values()) await this.drainNode(view, record);
    for (const nodeId of [...this.known]) {
      if (view.ha.maintenance.has(nodeId)) continue;
      this.known.delete(nodeId);
      const left = [...view.index.values()].filter((l) => l.nodeId === nodeId).length;
      const moving = [...this.moving.values()].filter((m) => m.source === nodeId).length;
      await this.event(
        view.leader,
        'drain-stopped',
        nodeId,
        undefined,
        `maintenance ended: no further VM is moved; ${left} VM(s) on the node${moving ? `, ${moving} move(s) under way finish` : ''}`,
      );
    }
  }

  private async drainNode(view: DrainView, record: MaintenanceRecord): Promise<void> {
    const nodeId = record.nodeId;
    const here = [...view.index]
      .filter(([, location]) => location.nodeId === nodeId)
      .map(([uuid, location]) => ({
        uuid,
        name: location.name,
        priority: view.ha.policies.get(uuid)?.policy.enabled
          ? view.ha.policies.get(uuid)!.policy.priority
          : undefined,
      }));
    let started: EventRecord | undefined;
    if (!this.known.has(nodeId)) {
      this.known.add(nodeId);
      if (record.state === 'draining')
        started = this.eventRecord(
          view.leader,
          'drain-started',
          nodeId,
          undefined,
          `${here.length} VM(s) on the node; live-migrating them away, ${this.deps.config.drainConcurrency} at a time`,
        );
    }
    const alive = view.alive.has(nodeId);
    const now = this.deps.clock.now().getTime();
    if (alive) {
      for (const vm of drainOrder(here)) {
        if (this.moving.size >= this.deps.config.drainConcurrency) break;
        if (this.deps.inFlight.has(`vm:${vm.uuid}`)) continue;
        if ((this.attempts.get(vm.uuid)?.nextAt ?? 0) > now) continue;
        if (this.deps.crashedHaVm(view, vm.uuid, nodeId)) continue;
        this.launch(view, nodeId, vm.uuid, vm.name);
      }
    }
    const progress = drainState({
      left: here.length,
      nodeAlive: alive,
      moving: [...this.moving.values()]
        .filter((m) => m.source === nodeId)
        .map((m) => ({ name: m.name, target: m.target || 'a node being chosen' })),
      waiting: here.flatMap((vm) => {
        const attempt = this.attempts.get(vm.uuid);
        if (!attempt || this.moving.has(vm.uuid)) return [];
        return [
          { name: vm.name, reason: attempt.reason, retryInMs: Math.max(0, attempt.nextAt - now) },
        ];
      }),
    });
    // The retry countdown alone does not rewrite the record (every tick would).
    const stable = (reason: string) => reason.replace(/tried again in \d+ s/g, '');
    const finished =
      progress.state === 'maintenance' && record.state === 'draining'
        ? this.eventRecord(view.leader, 'drain-finished', nodeId, undefined, progress.reason)
        : undefined;
    if (
      !started &&
      record.state === progress.state &&
      stable(record.reason) === stable(progress.reason)
    )
      return;
    const next: MaintenanceRecord = { ...record, ...progress };
    const event = started ?? finished;
    const written = await this.deps.repository.updateMaintenanceGuarded(
      view.leader,
      record,
      next,
      event,
    );
    if (written) view.ha.maintenance.set(nodeId, next);
    if (written && started && finished) await this.append(finished);
  }

  private launch(view: DrainView, nodeId: string, uuid: string, name: string): void {
    const key = `vm:${uuid}`;
    this.deps.inFlight.add(key);
    this.moving.set(uuid, { name, source: nodeId, target: '' });
    const run = this.moveOne(view, nodeId, uuid, name).finally(() => {
      this.deps.inFlight.delete(key);
      this.moving.delete(uuid);
      this.running.delete(run);
    });
    this.running.add(run);
  }

  private async moveOne(
    view: DrainView,
    nodeId: string,
    uuid: string,
    name: string,
  ): Promise<void> {
    const source = peerOf(view.nodes.get(nodeId));
    let reservedOn: { node: string; bytes: number } | undefined;
    try {
      if (!source) throw new Error(`node ${nodeId} is not in the registry`);
      const vm = await this.deps.mover.get(source, uuid);
      const spec = vm.spec;
      const state = vm.runtime?.state ?? '';
      if (!spec) throw new Error('its node answered no definition');
      if (!['running', 'stopped', 'crashed'].includes(state))
        throw new Error(`it is ${state}; it is moved once that settles`);
      const member = view.ha.members.get(nodeId);
      const node = view.nodes.get(nodeId)!;
      const placement = placeVm(
        { name: spec.name, cpuModel: spec.cpuModel, memoryBytes: Number(spec.memoryBytes) },
        view.ha.policies.get(uuid)?.policy ?? NO_POLICY,
        {
          cpuModel: member?.cpuModel || node.info.cpuModel,
          cpuFlags: member?.cpuFlags.length ? member.cpuFlags : node.info.cpuFlags,
        },
        this.deps.candidates(view, nodeId, this.reserved),
      );
      if (placement.nodeId === undefined) throw new Error(placement.reason);
      const target = peerOf(view.nodes.get(placement.nodeId))!;
      reservedOn = { node: target.nodeId, bytes: Number(spec.memoryBytes) };
      this.reserved.set(target.nodeId, (this.reserved.get(target.nodeId) ?? 0) + reservedOn.bytes);
      this.moving.set(uuid, { name, source: nodeId, target: target.nodeId });
      const mode = state === 'running' ? 'live' : 'offline';
      await this.event(
        view.leader,
        'drain-vm-moving',
        nodeId,
        uuid,
        `${name} to ${target.nodeId} (${mode === 'live' ? 'live migration' : 'offline: the VM is not running'})`,
      );
      // A crashed VM (no HA policy: the restart policy has none for it) holds its disks until stopped.
      if (state === 'crashed') await this.deps.mover.stop(source, uuid);
      const said = await this.deps.mover.move({ uuid, source, target, mode }, spec);
      this.attempts.delete(uuid);
      await this.event(
        view.leader,
        'drain-vm-moved',
        nodeId,
        uuid,
        `${name} runs on ${target.nodeId}: ${said}`,
      );
    } catch (error) {
      const reason = (error as Error).message.slice(0, 500);
      const failures = (this.attempts.get(uuid)?.failures ?? 0) + 1;
      const delay = retryDelayMs(failures, this.deps.config.drainRetrySeconds * 1000);
      this.attempts.set(uuid, {
        failures,
        nextAt: this.deps.clock.now().getTime() + delay,
        reason,
      });
      this.deps.logger.warn(
        { vm: uuid, node: nodeId, reason },
        'drain: a VM could not be moved; retrying',
      );
      await this.event(
        view.leader,
        'drain-vm-failed',
        nodeId,
        uuid,
        `${name} stays on ${nodeId}: ${reason}; tried again in ${Math.ceil(delay / 1000)} s (attempt ${failures})`,
      );
    } finally {
      if (reservedOn)
        this.reserved.set(
          reservedOn.node,
          (this.reserved.get(reservedOn.node) ?? 0) - reservedOn.bytes,
        );
    }
  }

  private eventRecord(
    leader: Leader,
    kind: EventKind,
    nodeId: string,
    vmUuid: string | undefined,
    message: string,
  ): EventRecord {
    return haEvent(this.deps.clock.now(), leader.epoch, kind, nodeId, vmUuid, message);
  }

  private event(
    leader: Leader,
    kind: EventKind,
    nodeId: string,
    vmUuid: string | undefined,
    message: string,
  ): Promise<void> {
    return this.append(this.eventRecord(leader, kind, nodeId, vmUuid, message));
  }

  private async append(event: EventRecord): Promise<void> {
    await this.deps.repository
      .appendEvent(event)
      .catch((error: unknown) =>
        this.deps.logger.warn({ err: error }, 'could not record an HA event'),
      );
  }
}

function peerOf(entry: NodeEntry | undefined): PeerTarget | undefined {
  return entry && peerTargetOf(entry);
}
