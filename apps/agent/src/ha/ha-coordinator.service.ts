import type { Vm } from '@debvisor/proto';
import { randomUUID } from 'node:crypto';
import type { Campaign } from 'etcd3';
import type { VmDefinition } from '../drivers/hypervisor.driver';
import type { NodeEntry } from '../registry/node.schema';
import type { CallContext } from '../rpc/call-context';
import type { Clock } from '../shared/clock';
import { forEachLimit } from '../shared/concurrency';
import type { Logger } from '../shared/logger';
import type { VmLocation } from '../vms/vm-index.repository';
import type { HaConfig } from './ha-config.schema';
import {
  cleanAfter,
  haEvent,
  type EventKind,
  type EventRecord,
  type FenceRecord,
  type HealthRecord,
  type PolicyRecord,
  type ResourceRecord,
  type ResourceState,
} from './ha.records';
import type { HaRepository, HaSnapshot, Leader } from './ha.repository';
import type { NodeFencer } from './node-fencer';
import { HaDrain, type DrainView, type HaDrainDeps } from './ha-drain.service';
import { HaRestarts, type HaRestartsDeps } from './ha-restarts.service';
import { placeVm, type PlacementCandidate } from './placement';
import { GAVE_UP, gaveUp, UNTIL_AN_OPERATOR, withinWindow } from './restart-policy';

/** The reason of a VM left on a lost node because no definition of it was kept (docs/ha.md). */
const NOT_KEPT = 'not started elsewhere: no definition of the VM was kept in etcd';
/**
 * The reason of a VM of a fenced node that goes back to that node, which came back clean
 * (docs/ha.md, a node that comes back): it is started there once the node's fence is lifted.
 */
const RETURNS = 'returns to its node';
const START_FAILED = 'starting it there failed';

export interface FailoverCall {
  uuid: string;
  targetNodeId: string;
  fencingEpoch: number;
  sourceNodeId: string;
}

export interface HaCoordinatorDeps {
  nodeId: string;
  config: HaConfig;
  repository: HaRepository;
  registry: { list(): Promise<NodeEntry[]> };
  index: { list(): Promise<Map<string, VmLocation>> };
  fencer: NodeFencer;
  /** FailoverVm on the target node's agent (a peer call as this agent). */
  failover(target: NodeEntry, call: FailoverCall, context: CallContext): Promise<Vm>;
  /** VM moves, starts and stops on the agents (maintenance drains, the restart policy). */
  mover: HaDrainDeps['mover'] & HaRestartsDeps['mover'];
  clock: Clock;
  logger: Logger;
}

/** One look at the cluster, taken at the start of a tick. */
interface ClusterView {
  leader: Leader;
  ha: HaSnapshot;
  nodes: Map<string, NodeEntry>;
  alive: Set<string>;
  healths: Map<string, HealthRecord>;
  index: Map<string, VmLocation>;
}

/**
 * The cluster's HA coordinator (docs/ha.md). Every agent campaigns through etcd; the one elected
 * looks at the cluster every tick: a node holding HA VMs whose lease is gone (or whose watchdog
 * stopped its VMs) is fenced first — its Ceph clients blocklisted and its disks' locks broken —
 * and only once the fence is confirmed are its HA VMs started elsewhere through FailoverVm. Every
 * record it writes is guarded by its election key (its fencing epoch), and every FailoverVm
 * carries the epoch, which the target checks against etcd: a coordinator that lost its lease (paused,
 * partitioned) can change nothing.
 */
export class HaCoordinator {
  private campaign: Campaign | undefined;
  /** The campaign etcd3 reported elected (once); leadership itself is read from etcd every tick. */
  private elected: Campaign | undefined;
  /** The election key this agent announced itself coordinator for. */
  private announced: string | undefined;
  private leading: Leader | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** When each node was first seen lost (for fenceDelaySeconds). */
  private readonly lostSince = new Map<string, number>();
  private readonly inFlight = new Set<string>();
  private ticks = 0;
  private readonly drain: HaDrain;
  private readonly restarts: HaRestarts;

  constructor(private readonly deps: HaCoordinatorDeps) {
    const candidates = (view: DrainView, source: string, reserved: Map<string, number>) =>
      this.candidates(view as ClusterView, source, reserved);
    this.restarts = new HaRestarts({
      config: deps.config,
      mover: deps.mover,
      candidates,
      inFlight: this.inFlight,
      setResource: (view, policy, state, nodeId, reason, change) =>
        this.setResource(view as ClusterView, policy, state, nodeId, reason, change),
      event: (leader, kind, nodeId, vmUuid, message) =>
        this.event(leader, kind, nodeId, vmUuid, message),
      troubled: (view, nodeId) => {
        const fence = view.ha.fences.get(nodeId);
        return (
          (fence !== undefined && fence.state !== 'released') ||
          this.lostNode(view as ClusterView, nodeId) !== undefined
        );
      },
      clock: deps.clock,
      logger: deps.logger,
    });
    this.drain = new HaDrain({
      config: deps.config,
      repository: deps.repository,
      mover: deps.mover,
      candidates,
      inFlight: this.inFlight,
      crashedHaVm: (view, uuid, nodeId) => this.restarts.crashed(view, uuid, nodeId),
      clock: deps.clock,
      logger: deps.logger,
    });
  }

  start(): void {
    this.campaignOnce();
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    await Promise.all([this.drain.settle(), this.restarts.settle()]);
    this.leading = undefined;
    await this.campaign?.resign().catch(() => undefined);
  }

  /** The epoch this agent leads with, undefined when it does not lead. */
  get epoch(): number | undefined {
    return this.leading?.epoch;
  }

  private campaignOnce(): void {
    if (this.stopped) return;
    const campaign = this.deps.repository.campaign(
      this.deps.nodeId,
      this.deps.config.coordinatorTtlSeconds,
    );
    this.campaign = campaign;
    campaign.on('elected', () => {
      if (this.campaign !== campaign) return;
      this.elected = campaign;
      void this.adopt(campaign).catch((error: unknown) =>
        this.deps.logger.warn({ err: error }, 'could not read the HA election after winning it'),
      );
    });
    campaign.on('error', (error: Error) => {
      if (this.campaign !== campaign) return;
      this.elected = undefined;
      this.leading = undefined;
      this.deps.logger.warn({ err: error }, 'HA coordinator campaign lost; campaigning again');
      setTimeout(() => this.campaignOnce(), 1_000).unref();
    });
  }

  /**
   * Leads when this campaign's key is the election's lowest: checked when etcd3 reports the
   * campaign elected, and again at every tick while it does not lead — the 'elected' event fires
   * once, and a failed read after it (or a write refused once) must not leave the cluster with a
   * coordinator in etcd that does nothing.
   */
  private async adopt(campaign: Campaign): Promise<void> {
    const key = await campaign.getCampaignKey();
    const leader = await this.deps.repository.leader();
    if (!leader || leader.key !== key || this.campaign !== campaign || this.stopped) return;
    this.leading = leader;
    if (this.announced === leader.key) return;
    this.announced = leader.key;
    this.deps.logger.info({ epoch: leader.epoch }, 'elected HA coordinator');
    await this.event(
      leader,
      'coordinator-elected',
      this.deps.nodeId,
      undefined,
      `epoch ${leader.epoch}`,
    );
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick()
        .catch((error: unknown) =>
          this.deps.logger.warn({ err: error }, 'HA coordinator tick failed; retrying'),
        )
        .finally(() => this.schedule());
    }, this.deps.config.tickMs);
  }

  /** One look at the cluster and the actions it calls for. */
  async tick(): Promise<void> {
    if (!this.leading && this.elected && this.elected === this.campaign)
      await this.adopt(this.elected);
    const mine = this.leading;
    if (!mine) return;
    // Still the leader? (a paused coordinator wakes up to find its key gone)
    const leader = await this.deps.repository.leader();
    if (!leader || leader.key !== mine.key) {
      this.leading = undefined;
      return;
    }
    const [ha, entries, healths, index] = await Promise.all([
      this.deps.repository.snapshot(),
      this.deps.registry.list(),
      this.deps.repository.healths(),
      this.deps.index.list(),
    ]);
    const view: ClusterView = {
      leader,
      ha,
      nodes: new Map(entries.map((e) => [e.info.nodeId, e])),
      alive: new Set(entries.filter((e) => e.alive).map((e) => e.info.nodeId)),
      healths,
      index,
    };
    const policies = [...ha.policies.values()];
    await this.trackResources(view, policies);
    await this.fenceLostNodes(view, policies);
    const returning = await this.recover(view, policies);
    await this.releaseFences(view, returning);
    await this.startOnReturnedNodes(view, policies);
    if (++this.ticks % 300 === 0) await this.deps.repository.trimEvents();
    await this.restarts.step(view, policies);
    await this.drain.step(view);
  }

  /**
   * An HA VM its user stopped (the restart policy recorded it `stopped`): it runs nowhere, so its
   * node's loss neither fences for it nor starts it elsewhere; it stays defined on its node.
   */
  private stoppedOnPurpose(view: ClusterView, uuid: string): boolean {
    return view.ha.resources.get(uuid)?.state === 'stopped';
  }

  private locationOf(view: ClusterView, uuid: string): string {
    return view.index.get(uuid)?.nodeId ?? view.ha.resources.get(uuid)?.nodeId ?? '';
  }

  /**
   * A state record for every HA VM, following the location index while nothing is wrong. A VM is
   * recorded `protected` on its node only once the node has kept its definition in etcd (what
   * another node starts it from): until then it could not be recovered, and its record says so.
   */
  private async trackResources(view: ClusterView, policies: PolicyRecord[]): Promise<void> {
    for (const policy of policies) {
      const current = view.ha.resources.get(policy.vmUuid);
      const nodeId = view.index.get(policy.vmUuid)?.nodeId ?? current?.nodeId ?? '';
      if (!policy.policy.enabled) {
        if (current?.state !== 'disabled')
          await this.setResource(view, policy, 'disabled', nodeId, 'HA is disabled for this VM');
        continue;
      }
      const fence = view.ha.fences.get(nodeId);
      const nodeTrouble = fence && fence.state !== 'released';
      const kept = view.ha.specs.has(policy.vmUuid);
      const lost = Boolean(nodeId) && this.lostNode(view, nodeId) !== undefined;
      // Left on a lost node without a definition (fenceLostNodes said so): back once it lives.
      const back = current?.state === 'error' && current.reason.startsWith(NOT_KEPT) && !lost;
      const fresh = !current || (current.state === 'disabled' && !nodeTrouble) || back;
      if (!kept) {
        if (lost) continue; // fenceLostNodes records why it is not started elsewhere
        // Not recoverable yet: recorded on no node, so that nothing reads it as protected there.
        const waiting = `waiting for ${nodeId || 'its node'} to keep the VM's definition in etcd; until then it cannot be started elsewhere`;
        if (fresh || (current.state === 'protected' && current.reason !== waiting))
          await this.setResource(view, policy, 'protected', '', waiting);
      } else if (fresh || (current.state === 'protected' && current.nodeId !== nodeId && nodeId))
        await this.setResource(view, policy, 'protected', nodeId, `runs on ${nodeId || 'no node'}`);
      else if (
        current.state === 'recovering' &&
        current.epoch !== view.leader.epoch &&
        nodeId &&
        nodeId !== current.nodeId &&
        !nodeTrouble &&
        !lost
      )
        await this.recoveredEarlier(view, policy, current, nodeId);
    }
  }

  /**
   * A recovery that an earlier coordinator started (FailoverVm names the target in the location
   * index before it starts the VM there) and did not live to record: the VM is where the index
   * places it now. Were the start to fail there, the target names the source again and the VM is
   * recovered anew.
   */
  private async recoveredEarlier(
    view: ClusterView,
    policy: PolicyRecord,
    current: ResourceRecord,
    nodeId: string,
  ): Promise<void> {
    const now = this.deps.clock.now();
    const relocations = [
      ...withinWindow(current.relocations, now, this.windowMs),
      now.toISOString(),
    ];
    const reason = `recovered from ${current.nodeId} (by the coordinator of epoch ${current.epoch})`;
    if (!(await this.setResource(view, policy, 'protected', nodeId, reason, { relocations })))
      return;
    await this.event(
      view.leader,
      'vm-recovered',
      nodeId,
      policy.vmUuid,
      `${policy.vmName} runs on ${nodeId}`,
    );
  }

  /**
   * Why a node counts as lost — its lease expired, or its watchdog stopped its HA VMs after its
   * last fence — or undefined while it lives.
   */
  private lostNode(view: ClusterView, nodeId: string): 'lease' | 'watchdog' | undefined {
    if (!view.alive.has(nodeId)) return 'lease';
    const fence = view.ha.fences.get(nodeId);
    const stoppedAt = view.ha.members.get(nodeId)?.selfFencedAt;
    const selfFenced =
      stoppedAt && (!fence || (fence.state === 'released' && fence.at < stoppedAt));
    return selfFenced ? 'watchdog' : undefined;
  }

  private async fenceLostNodes(view: ClusterView, policies: PolicyRecord[]): Promise<void> {
    const now = this.deps.clock.now().getTime();
    const holders = new Map<string, string[]>();
    for (const policy of policies.filter((p) => p.policy.enabled)) {
      const nodeId = this.locationOf(view, policy.vmUuid);
      if (!nodeId || this.stoppedOnPurpose(view, policy.vmUuid)) continue;
      // A VM whose definition was never kept cannot start elsewhere: it stays, and says why.
      if (!view.ha.specs.has(policy.vmUuid)) await this.leftWithoutDefinition(view, policy, nodeId);
      else holders.set(nodeId, [...(holders.get(nodeId) ?? []), policy.vmUuid]);
    }
    for (const [nodeId, vms] of holders) {
      const fence = view.ha.fences.get(nodeId);
      const why = this.lostNode(view, nodeId);
      if (!why) {
        this.lostSince.delete(nodeId);
        continue;
      }
      if (this.inFlight.has(`fence:${nodeId}`)) continue;
      const active = fence && fence.state !== 'released';
      // HA VMs on the node that its fence does not name (it was recorded by an earlier tick or
      // coordinator before they were known): fenced too, or they would never be recovered.
      const unnamed = active ? vms.filter((uuid) => !fence.vms.includes(uuid)) : [];
      if (active && fence.state === 'fenced' && unnamed.length === 0) continue;
      if (active && fence.state === 'unconfirmed' && unnamed.length === 0) {
        if (now - Date.parse(fence.at) < this.deps.config.fenceRetrySeconds * 1000) continue;
      }
      if (!active) {
        const since = this.lostSince.get(nodeId) ?? now;
        if (!this.lostSince.has(nodeId)) {
          this.lostSince.set(nodeId, now);
          await this.event(
            view.leader,
            'node-suspect',
            nodeId,
            undefined,
            why === 'watchdog'
              ? `its watchdog stopped its HA VMs at ${view.ha.members.get(nodeId)?.selfFencedAt}`
              : 'its lease expired (no heartbeat within its TTL)',
          );
        }
        if (now - since < this.deps.config.fenceDelaySeconds * 1000) continue;
      }
      await this.fence(view, nodeId, {
        vms: active ? [...fence.vms, ...unnamed] : vms,
        holding: vms,
        detectedAt: active ? fence.detectedAt : undefined,
      });
    }
  }

  /** An HA VM on a lost node of which no definition was kept: in error, with the reason. */
  private async leftWithoutDefinition(
    view: ClusterView,
    policy: PolicyRecord,
    nodeId: string,
  ): Promise<void> {
    const why = this.lostNode(view, nodeId);
    if (!why) return;
    const current = view.ha.resources.get(policy.vmUuid);
    if (current?.state === 'error' && current.reason.startsWith(NOT_KEPT)) return;
    const message = `${NOT_KEPT} before node ${nodeId} was lost (${why === 'lease' ? 'its lease expired' : 'its watchdog stopped its HA VMs'}); it stays on ${nodeId}, see docs/ha.md`;
    if (!(await this.setResource(view, policy, 'error', nodeId, message))) return;
    this.deps.logger.error({ vm: policy.vmUuid, node: nodeId }, message);
    await this.event(view.leader, 'vm-recovery-failed', nodeId, policy.vmUuid, message);
  }

  /**
   * Fences a lost node: `vms` are the HA VMs its fence record names, `holding` those of them (and
   * any others) that are still placed on it — only their disks are fenced, never those of a VM that
   * was already recovered elsewhere.
   */
  private async fence(
    view: ClusterView,
    nodeId: string,
    target: { vms: string[]; holding: string[]; detectedAt: string | undefined },
  ): Promise<void> {
    const { vms, holding, detectedAt } = target;
    const key = `fence:${nodeId}`;
    this.inFlight.add(key);
    try {
      const now = this.deps.clock.now().toISOString();
      const base: FenceRecord = {
        nodeId,
        state: 'fencing',
        epoch: view.leader.epoch,
        blocklisted: [],
        locksBroken: [],
        vms,
        at: now,
        reason: 'fencing started',
        detectedAt: detectedAt ?? this.detection(view, nodeId),
        fencedAt: '',
      };
      const started = this.eventRecord(
        view.leader,
        'fence-started',
        nodeId,
        undefined,
        `${vms.length} HA VM(s)`,
      );
      if (!(await this.deps.repository.putFenceGuarded(view.leader, base, started)))
        return this.lostLead();
      const images = holding.flatMap((uuid) =>
        (view.ha.specs.get(uuid)?.disks ?? []).map((d) => ({ pool: d.pool, image: d.image })),
      );
      const member = view.ha.members.get(nodeId);
      const outcome = await withTimeout(
        this.deps.fencer.fence({ nodeId, addresses: member?.fenceAddresses ?? [], images }),
        this.deps.config.fenceTimeoutSeconds * 1000,
        'fencing',
      ).catch((error: unknown) => ({
        confirmed: false,
        blocklisted: [],
        locksBroken: [],
        reason: `fencing failed: ${(error as Error).message}`.slice(0, 900),
      }));
      const record: FenceRecord = {
        ...base,
        state: outcome.confirmed ? 'fenced' : 'unconfirmed',
        blocklisted: outcome.blocklisted,
        locksBroken: outcome.locksBroken,
        reason: outcome.reason,
        at: this.deps.clock.now().toISOString(),
        fencedAt: outcome.confirmed ? this.deps.clock.now().toISOString() : '',
      };
      const ended = this.eventRecord(
        view.leader,
        outcome.confirmed ? 'fenced' : 'fence-unconfirmed',
        nodeId,
        undefined,
        outcome.reason,
      );
      if (!(await this.deps.repository.putFenceGuarded(view.leader, record, ended)))
        return this.lostLead();
      view.ha.fences.set(nodeId, record);
      if (outcome.confirmed) {
        this.deps.logger.warn({ node: nodeId, ...outcome }, 'node fenced');
      } else {
        this.deps.logger.error({ node: nodeId, reason: outcome.reason }, 'fencing not confirmed');
        for (const uuid of holding) {
          const policy = view.ha.policies.get(uuid);
          if (policy)
            await this.setResource(
              view,
              policy,
              'error',
              nodeId,
              `not started elsewhere: fencing node ${nodeId} is not confirmed (${outcome.reason}); see docs/ha.md`,
            );
        }
      }
    } finally {
      this.inFlight.delete(key);
    }
  }

  /**
   * When a new fence's node was first seen lost: it names the fence, and tells it from the node's
   * previous fence (a clean report names the fence it follows).
   */
  private detection(view: ClusterView, nodeId: string): string {
    const at = new Date(this.lostSince.get(nodeId) ?? this.deps.clock.now().getTime());
    const previous = view.ha.fences.get(nodeId)?.detectedAt;
    return previous && Date.parse(previous) >= at.getTime()
      ? new Date(Date.parse(previous) + 1).toISOString()
      : at.toISOString();
  }

  /** May a VM of `nodeId` start elsewhere? Only once that node is fenced, or reported itself clean. */
  private fencedFor(view: ClusterView, nodeId: string, uuid: string): FenceRecord | undefined {
    const fence = view.ha.fences.get(nodeId);
    if (!fence || fence.state === 'released' || !fence.vms.includes(uuid)) return undefined;
    const clean = cleanAfter(view.ha.members.get(nodeId), fence);
    return fence.state === 'fenced' || clean ? fence : undefined;
  }

  /**
   * Recovers the HA VMs of fenced nodes elsewhere; answers those placed back on their own node,
   * which came back clean (they start there once its fence is lifted, startOnReturnedNodes).
   */
  private async recover(view: ClusterView, policies: PolicyRecord[]): Promise<Set<string>> {
    const returning = new Set<string>();
    const due: { policy: PolicyRecord; source: string }[] = [];
    for (const policy of policies.filter((p) => p.policy.enabled)) {
      const location = view.index.get(policy.vmUuid)?.nodeId;
      const resource = view.ha.resources.get(policy.vmUuid);
      const source = location ?? resource?.nodeId ?? '';
      if (!source || this.inFlight.has(`vm:${policy.vmUuid}`)) continue;
      if (this.stoppedOnPurpose(view, policy.vmUuid)) continue;
      // A VM whose node is alive, not fenced, is where it should be.
      if (location && !this.fencedFor(view, location, policy.vmUuid)) continue;
      if (!this.fencedFor(view, source, policy.vmUuid)) continue;
      if (gaveUp(resource)) {
        // It waited there, stopped, for its operator; its node drops that copy when it returns.
        if (resource.reason.includes(UNTIL_AN_OPERATOR))
          await this.setResource(
            view,
            policy,
            'error',
            source,
            `${GAVE_UP}: it was stopped on ${source}, waiting for an operator, when ${source} was lost; HA does not start it elsewhere`,
          );
        continue;
      }
      due.push({ policy, source });
    }
    if (due.length === 0) return returning;
    due.sort((a, b) => b.policy.policy.priority - a.policy.policy.priority);
    const reserved = new Map<string, number>();
    const plans: { policy: PolicyRecord; source: string; target: NodeEntry; spec: VmDefinition }[] =
      [];
    for (const { policy, source } of due) {
      const resource = view.ha.resources.get(policy.vmUuid);
      const recent = withinWindow(
        resource?.relocations ?? [],
        this.deps.clock.now(),
        this.windowMs,
      );
      if (recent.length >= policy.policy.maxRelocations) {
        await this.setResource(
          view,
          policy,
          'error',
          source,
          `gave up: ${recent.length} relocation(s) within ${this.deps.config.restartWindowSeconds} s reached max_relocations ${policy.policy.maxRelocations}`,
        );
        continue;
      }
      const spec = view.ha.specs.get(policy.vmUuid);
      if (!spec) {
        await this.setResource(
          view,
          policy,
          'error',
          source,
          'no definition of the VM was kept in etcd; it cannot be started elsewhere',
        );
        continue;
      }
      const member = view.ha.members.get(source);
      // Its own node, back and clean after the fence that named it, may take it again.
      const back = this.returnedClean(view, source, policy.vmUuid) ? source : undefined;
      const placement = placeVm(
        spec,
        policy.policy,
        { cpuModel: member?.cpuModel ?? '', cpuFlags: member?.cpuFlags ?? [] },
        this.candidates(view, source, reserved, back),
      );
      if (placement.nodeId === undefined) {
        const stop = policy.policy.onNoNode === 'stop';
        await this.setResource(
          view,
          policy,
          stop ? 'error' : 'pending',
          source,
          stop ? `gave up: ${placement.reason}` : placement.reason,
        );
        continue;
      }
      reserved.set(placement.nodeId, (reserved.get(placement.nodeId) ?? 0) + spec.memoryBytes);
      if (placement.nodeId === source) {
        returning.add(policy.vmUuid);
        const reason = `${RETURNS} ${source}, which came back clean: it starts there once the node's fence is lifted`;
        const current = view.ha.resources.get(policy.vmUuid);
        if (current?.state !== 'pending' || current.reason !== reason || current.nodeId !== source)
          await this.setResource(view, policy, 'pending', source, reason);
        continue;
      }
      plans.push({ policy, source, target: view.nodes.get(placement.nodeId)!, spec });
    }
    for (const plan of plans) this.inFlight.add(`vm:${plan.policy.vmUuid}`);
    try {
      await forEachLimit(plans, this.deps.config.recoveryConcurrency, (plan) =>
        this.failoverOne(view, plan.policy, plan.source, plan.target),
      );
    } finally {
      for (const plan of plans) this.inFlight.delete(`vm:${plan.policy.vmUuid}`);
    }
    return returning;
  }

  /**
   * Has this VM's node come back clean after the fence that named the VM (alive, its old copies
   * gone, the fence not lifted yet)? Then it may take the VM again.
   */
  private returnedClean(view: ClusterView, nodeId: string, uuid: string): boolean {
    const fence = view.ha.fences.get(nodeId);
    return (
      fence !== undefined &&
      (fence.state === 'fenced' || fence.state === 'unconfirmed') &&
      fence.vms.includes(uuid) &&
      view.alive.has(nodeId) &&
      cleanAfter(view.ha.members.get(nodeId), fence)
    );
  }

  /**
   * Placement's view of the nodes for a VM leaving `source`; `back` is the VM's own fenced node
   * when it came back clean (returnedClean): it is a candidate like any other.
   */
  private candidates(
    view: ClusterView,
    source: string,
    reserved: Map<string, number>,
    back?: string,
  ): PlacementCandidate[] {
    return [...view.nodes.values()].map((node) => {
      const nodeId = node.info.nodeId;
      const fence = view.ha.fences.get(nodeId);
      const reason =
        nodeId === source && nodeId !== back
          ? 'the VM moves away from it'
          : !view.alive.has(nodeId)
            ? 'its lease is not alive'
            : this.lostNode(view, nodeId) === 'watchdog'
              ? 'its watchdog stopped its HA VMs (it is fenced first)'
              : fence && fence.state !== 'released' && nodeId !== back
                ? `fenced (${fence.state})`
                : view.ha.maintenance.has(nodeId)
                  ? 'in maintenance'
                  : !view.ha.members.has(nodeId)
                    ? 'it does not take part in HA'
                    : undefined;
      return {
        nodeId,
        eligible: reason === undefined,
        ineligibleReason: reason,
        health: view.healths.get(nodeId),
        groups: view.ha.members.get(nodeId)?.groups ?? [],
        cpuModel: node.info.cpuModel,
        cpuFlags: node.info.cpuFlags,
        memoryBytes: node.info.memoryBytes,
        memoryUsedBytes: (node.status?.memoryUsedBytes ?? 0) + (reserved.get(nodeId) ?? 0),
      };
    });
  }

  private async failoverOne(
    view: ClusterView,
    policy: PolicyRecord,
    source: string,
    target: NodeEntry,
  ): Promise<void> {
    const targetId = target.info.nodeId;
    if (!(await this.setResource(view, policy, 'recovering', source, `starting on ${targetId}`)))
      return;
    await this.event(
      view.leader,
      'vm-recovering',
      targetId,
      policy.vmUuid,
      `${policy.vmName} from ${source}`,
    );
    try {
      await this.deps.failover(
        target,
        {
          uuid: policy.vmUuid,
          targetNodeId: targetId,
          fencingEpoch: view.leader.epoch,
          sourceNodeId: source,
        },
        this.context(),
      );
      const now = this.deps.clock.now();
      const relocations = [
        ...withinWindow(
          view.ha.resources.get(policy.vmUuid)?.relocations ?? [],
          now,
          this.windowMs,
        ),
        now.toISOString(),
      ];
      await this.setResource(view, policy, 'protected', targetId, `recovered from ${source}`, {
        relocations,
      });
      await this.event(
        view.leader,
        'vm-recovered',
        targetId,
        policy.vmUuid,
        `${policy.vmName} runs on ${targetId}`,
      );
    } catch (error) {
      const message = `recovery on ${targetId} failed: ${(error as Error).message}`.slice(0, 900);
      this.deps.logger.warn({ vm: policy.vmUuid, err: error }, 'HA recovery failed; retrying');
      await this.setResource(view, policy, 'pending', source, message);
      await this.event(view.leader, 'vm-recovery-failed', targetId, policy.vmUuid, message);
    }
  }

  /**
   * A fenced node that came back and reported its old VMs gone: the fence is lifted once each HA VM
   * it held runs elsewhere, is placed back on it (`returning`: started there right after the lift,
   * startOnReturnedNodes), is out of HA, or was given up by HA (nothing starts it anywhere). Until
   * then the fence is what lets a VM be recovered elsewhere.
   */
  private async releaseFences(view: ClusterView, returning: ReadonlySet<string>): Promise<void> {
    for (const fence of view.ha.fences.values()) {
      if (fence.state === 'released' || fence.state === 'fencing') continue;
      if (!view.alive.has(fence.nodeId)) continue;
      if (!cleanAfter(view.ha.members.get(fence.nodeId), fence)) continue;
      const settled = (uuid: string): boolean => {
        const at = view.index.get(uuid)?.nodeId;
        const resource = view.ha.resources.get(uuid);
        return (
          (at !== undefined && at !== fence.nodeId) ||
          !view.ha.policies.get(uuid)?.policy.enabled ||
          returning.has(uuid) ||
          gaveUp(resource)
        );
      };
      if (!fence.vms.every(settled)) continue;
      const kept = await this.deps.fencer.release(fence.blocklisted);
      const back = fence.vms.filter((uuid) => returning.has(uuid)).length;
      const record: FenceRecord = {
        ...fence,
        state: 'released',
        at: this.deps.clock.now().toISOString(),
        reason:
          (kept.length
            ? `the node is clean; these blocklist entries could not be removed and expire by themselves: ${kept.join(', ')}`
            : 'the node is clean; fence lifted') +
          (back ? `; ${back} HA VM(s) that no other node took start on it again` : ''),
      };
      const released = this.eventRecord(
        view.leader,
        'fence-released',
        fence.nodeId,
        undefined,
        record.reason,
      );
      if (!(await this.deps.repository.putFenceGuarded(view.leader, record, released)))
        return this.lostLead();
      view.ha.fences.set(fence.nodeId, record);
    }
  }

  /**
   * HA VMs placed back on their own node (recover answered them `returning`), started there once
   * its fence is lifted: through FailoverVm with the node as both source and target, which that
   * node accepts only for a VM of its last fence, lifted after it came back clean. Tried again
   * every tick until it runs (a coordinator that died meanwhile leaves the record to its successor).
   */
  private async startOnReturnedNodes(view: ClusterView, policies: PolicyRecord[]): Promise<void> {
    const due = policies.flatMap((policy) => {
      const nodeId = this.returnsTo(view, policy);
      return nodeId && !this.inFlight.has(`vm:${policy.vmUuid}`) ? [{ policy, nodeId }] : [];
    });
    if (due.length === 0) return;
    due.sort((a, b) => b.policy.policy.priority - a.policy.policy.priority);
    for (const { policy } of due) this.inFlight.add(`vm:${policy.vmUuid}`);
    try {
      await forEachLimit(due, this.deps.config.recoveryConcurrency, ({ policy, nodeId }) =>
        this.startOnReturned(view, policy, nodeId),
      );
    } finally {
      for (const { policy } of due) this.inFlight.delete(`vm:${policy.vmUuid}`);
    }
  }

  /**
   * The node a waiting VM returns to: its record says so, the location index still places it
   * there (it was started nowhere else), and that node's fence — the last one, naming the VM — was
   * lifted after the node reported itself clean. Undefined otherwise.
   */
  private returnsTo(view: ClusterView, policy: PolicyRecord): string | undefined {
    const uuid = policy.vmUuid;
    const resource = view.ha.resources.get(uuid);
    if (!policy.policy.enabled || !resource || !resource.reason.startsWith(RETURNS)) return;
    if (resource.state !== 'pending' && resource.state !== 'recovering') return;
    const nodeId = resource.nodeId;
    const at = view.index.get(uuid)?.nodeId;
    if (!nodeId || (at !== undefined && at !== nodeId)) return;
    const fence = view.ha.fences.get(nodeId);
    if (fence?.state !== 'released' || !fence.vms.includes(uuid)) return;
    if (!cleanAfter(view.ha.members.get(nodeId), fence)) return;
    if (!view.alive.has(nodeId) || this.lostNode(view, nodeId) || !view.ha.specs.has(uuid)) return;
    // A start that failed there is tried again after fenceRetrySeconds, not at every tick.
    const since = this.deps.clock.now().getTime() - Date.parse(resource.updatedAt);
    if (resource.reason.includes(START_FAILED) && since < this.deps.config.fenceRetrySeconds * 1000)
      return;
    return nodeId;
  }

  private async startOnReturned(
    view: ClusterView,
    policy: PolicyRecord,
    nodeId: string,
  ): Promise<void> {
    const target = view.nodes.get(nodeId);
    if (!target) return;
    const starting = `${RETURNS} ${nodeId}, which came back clean: starting it there`;
    if (!(await this.setResource(view, policy, 'recovering', nodeId, starting))) return;
    await this.event(
      view.leader,
      'vm-recovering',
      nodeId,
      policy.vmUuid,
      `${policy.vmName} on its own node ${nodeId}, which came back clean`,
    );
    try {
      await this.deps.failover(
        target,
        {
          uuid: policy.vmUuid,
          targetNodeId: nodeId,
          fencingEpoch: view.leader.epoch,
          sourceNodeId: nodeId,
        },
        this.context(),
      );
      // Not a relocation: it runs where it ran (max_relocations counts moves to another node).
      await this.setResource(
        view,
        policy,
        'protected',
        nodeId,
        `recovered on ${nodeId}, its own node, after it came back clean (no other node took it)`,
      );
      await this.event(
        view.leader,
        'vm-recovered',
        nodeId,
        policy.vmUuid,
        `${policy.vmName} runs on ${nodeId} again`,
      );
    } catch (error) {
      const message = `${RETURNS} ${nodeId}, which came back clean: ${START_FAILED}: ${(error as Error).message}`;
      this.deps.logger.warn({ vm: policy.vmUuid, err: error }, 'HA restart on its node failed');
      await this.setResource(view, policy, 'pending', nodeId, message);
      await this.event(view.leader, 'vm-recovery-failed', nodeId, policy.vmUuid, message);
    }
  }

  private async setResource(
    view: ClusterView,
    policy: PolicyRecord,
    state: ResourceState,
    nodeId: string,
    reason: string,
    change: Partial<ResourceRecord> = {},
  ): Promise<boolean> {
    const current = view.ha.resources.get(policy.vmUuid);
    const record: ResourceRecord = {
      vmUuid: policy.vmUuid,
      vmName: policy.vmName,
      state,
      nodeId,
      reason: reason.slice(0, 1000),
      relocations: current?.relocations ?? [],
      restarts: current?.restarts ?? [],
      epoch: view.leader.epoch,
      updatedAt: this.deps.clock.now().toISOString(),
      ...change,
    };
    if (!(await this.deps.repository.putResourceGuarded(view.leader, record))) {
      this.lostLead();
      return false;
    }
    view.ha.resources.set(policy.vmUuid, record);
    return true;
  }

  /** The window within which restarts and relocations count against the policy. */
  private get windowMs(): number {
    return this.deps.config.restartWindowSeconds * 1000;
  }

  private lostLead(): void {
    this.deps.logger.warn('no longer the HA coordinator (the election key is gone)');
    this.leading = undefined;
  }

  private context(): CallContext {
    return {
      caller: { principal: `agent:${this.deps.nodeId}`, permissions: ['migration:vm:failover'] },
      forwarded: false,
      deadline: undefined,
      traceId: randomUUID(),
    };
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

  private async event(
    leader: Leader,
    kind: EventKind,
    nodeId: string,
    vmUuid: string | undefined,
    message: string,
  ): Promise<void> {
    await this.deps.repository
      .appendEvent(this.eventRecord(leader, kind, nodeId, vmUuid, message))
      .catch((error: unknown) =>
        this.deps.logger.warn({ err: error }, 'could not record an HA event'),
      );
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms / 1000} s`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
