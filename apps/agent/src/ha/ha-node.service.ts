import type { HypervisorDriver, VmDefinition, VmInstance } from '../drivers/hypervisor.driver';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { VmIndexRepository } from '../vms/vm-index.repository';
import type { HaConfig } from './ha-config.schema';
import { cleanAfter, type FenceRecord, type MemberRecord } from './ha.records';
import type { HaRepository } from './ha.repository';
import { scoreHealth } from './health-score';
import { gaveUp } from './restart-policy';
import type { WatchdogGate } from './watchdog-gate';
import type { HealthProbesRepository, ProbeContext } from './health-probes.repository';

/** States in which a VM's QEMU (or simulated VM) exists and may write. */
const LIVE_STATES = new Set([
  'starting',
  'running',
  'stopping',
  'rebooting',
  'migrating',
  'paused',
]);

export interface HaNodeDeps {
  nodeId: string;
  config: HaConfig;
  leaseTtlMs: number;
  healthIntervalMs: number;
  driver: Pick<HypervisorDriver, 'list' | 'stop' | 'undefine' | 'define' | 'facts'>;
  index: Pick<VmIndexRepository, 'get' | 'put'>;
  repository: HaRepository;
  probes: HealthProbesRepository;
  /** The node's lease and when it was last renewed (NodePresence). */
  presence: { currentLeaseId: string; sinceRenewedMs(): number };
  /** The live peers for the network probe. */
  peers: () => Promise<ProbeContext['peers']>;
  /** The watchdog's gate in front of the hypervisor (the driver here is the ungated one). */
  gate: WatchdogGate;
  /** Is a migration bringing this VM here (MigrationTargetService.arriving)? */
  arriving: (uuid: string) => boolean;
  clock: Clock;
  logger: Logger;
}

/**
 * This node's part in HA (docs/ha.md): publishes its health score next to its heartbeat and the
 * definitions of its HA VMs; a software watchdog stops its HA VMs when its lease could not be
 * renewed for the lease TTL (it is presumed dead and its VMs restarted elsewhere); and a node that
 * finds itself fenced stops and drops its copies of the fenced VMs before it serves or registers,
 * then reports itself clean so that the coordinator lifts the fence.
 */
export class HaNodeService {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private lastHealthAt = -Infinity;
  private haVms = new Set<string>();
  private publishedSpecs = new Map<string, string>();
  private selfFenced = false;
  private publishedDown: string | undefined;
  /** The lifted fence (its detectedAt) whose VMs HA gave up on were defined here again. */
  private restoredAfter: string | undefined;

  constructor(private readonly deps: HaNodeDeps) {
    if (deps.config.selfFence) deps.gate.onStall((reason) => this.selfFence(reason));
  }

  /**
   * Before the agent serves or registers: publishes the member record and, when this node is
   * fenced, stops and drops its copies of the fenced VMs. Rejects when etcd does not answer.
   */
  async start(): Promise<void> {
    await this.loadPolicies();
    await this.publishMember();
    await this.enforceFence();
    this.deps.gate.beat();
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** Runs before every (re-)registration publishes this node's VMs: drops what is not ours any more. */
  async beforePublish(): Promise<void> {
    await this.enforceFence();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => this.schedule());
    }, this.deps.config.tickMs);
  }

  private async tick(): Promise<void> {
    const now = performance.now();
    try {
      // The watchdog first, before any etcd round trip: a node paused past its lease acts at once.
      await this.deps.gate.check();
      this.deps.gate.beat();
      const sinceRenewed = this.deps.presence.sinceRenewedMs();
      const leaseLost = Number.isFinite(sinceRenewed) && sinceRenewed > this.deps.leaseTtlMs;
      if (this.deps.config.selfFence && leaseLost)
        await this.selfFence(`the lease was not renewed for ${Math.round(sinceRenewed)} ms`);
      else if (!leaseLost) this.selfFenced = false;
      await this.enforceFence();
      await this.publishDown(await this.publishSpecs());
      if (now - this.lastHealthAt >= this.deps.healthIntervalMs) {
        this.lastHealthAt = now;
        await this.publishHealth();
      }
    } catch (error) {
      this.deps.logger.warn({ err: error }, 'HA node check failed; retrying at the next tick');
    }
  }

  /** Stops every HA VM running here at once (hard stop), and says so in the member record. */
  private async selfFence(reason: string): Promise<void> {
    if (this.haVms.size === 0) return; // nothing of this node's is recovered elsewhere
    const live = (await this.deps.driver.list()).filter(
      (vm) => this.haVms.has(vm.spec.uuid) && LIVE_STATES.has(vm.runtime.state),
    );
    // Nothing of this node's ran: nothing can run twice, and the coordinator need not fence it.
    if (live.length === 0) return;
    await Promise.all(live.map((vm) => this.hardStop(vm)));
    if (this.selfFenced) return;
    this.selfFenced = true;
    this.deps.logger.warn(
      { reason, vms: live.map((vm) => vm.spec.uuid) },
      'HA watchdog: stopped the HA VMs of this node; the coordinator restarts them elsewhere',
    );
    // Recorded in the background: etcd may be what is gone, and the caller waits for the gate.
    void this.publishMember({ selfFencedAt: this.deps.clock.now().toISOString() })
      .then(() => this.event('node-self-fenced', `${reason}: stopped ${live.length} HA VM(s) here`))
      .catch(() => undefined);
  }

  /**
   * When a fence record names this node (and is not released): every copy of a fenced VM here is
   * stopped and undefined (its definition lives on in etcd for the node that runs it now), and
   * every local VM that the location index places on another node is dropped likewise; then the
   * member record says the node is clean after that fence's epoch.
   *
   * A VM of the fence found here makes the node read its fence again after listing its VMs: a
   * fence lifted meanwhile no longer names it (the coordinator started it here again after this
   * node reported itself clean, docs/ha.md), and such a copy is never taken for an old one.
   */
  private async enforceFence(): Promise<void> {
    let fence = await this.deps.repository.fence(this.deps.nodeId);
    const local = await this.deps.driver.list();
    const named = (record: FenceRecord | undefined) =>
      record && record.state !== 'released' ? new Set(record.vms) : new Set<string>();
    let fenced = named(fence);
    if (local.some((vm) => fenced.has(vm.spec.uuid))) {
      fence = await this.deps.repository.fence(this.deps.nodeId);
      fenced = named(fence);
    }
    for (const vm of local) {
      const elsewhere =
        fenced.has(vm.spec.uuid) ||
        // A VM migrating here is placed on its source until the move commits and indexes it here.
        (!this.deps.arriving(vm.spec.uuid) && (await this.placedElsewhere(vm)));
      if (!elsewhere) continue;
      if (LIVE_STATES.has(vm.runtime.state)) await this.hardStop(vm);
      // Undefined here only once its definition is kept in etcd (the node that runs it has it).
      if (!(await this.deps.repository.spec(vm.spec.uuid))) continue;
      await this.deps.driver.undefine(vm.spec.uuid);
      this.deps.logger.warn(
        { vm: vm.spec.uuid, fenceEpoch: fence?.epoch },
        'dropped a copy of a VM that runs (or will run) on another node',
      );
    }
    if (fence && fence.state !== 'released') await this.reportClean(fence);
    else if (fence) await this.restoreGivenUp(fence, local);
  }

  /**
   * Once this node's fence is lifted, each VM of it that HA gave up on (docs/ha.md: it stays in
   * error and is not started) is defined here again from its kept definition, stopped, so that
   * its operator finds it on its node and starts it. Only a VM given up here (its record names
   * this node) that the location index places on no other node; the node reports it down before it names itself in the index (the coordinator then
   * never takes it for running). Looked at once per fence.
   */
  private async restoreGivenUp(fence: FenceRecord, local: readonly VmInstance[]): Promise<void> {
    if (this.restoredAfter === fence.detectedAt) return;
    const member = await this.deps.repository.member(this.deps.nodeId);
    if (!cleanAfter(member, fence)) return;
    const here = new Set(local.map((vm) => vm.spec.uuid));
    const restored: VmDefinition[] = [];
    for (const uuid of fence.vms.filter((u) => !here.has(u))) {
      const [resource, location, spec] = await Promise.all([
        this.deps.repository.resource(uuid),
        this.deps.index.get(uuid),
        this.deps.repository.spec(uuid),
      ]);
      if (!gaveUp(resource) || !spec) continue;
      // Given up here (its record names this node) and placed on no other node since.
      if (resource.nodeId !== this.deps.nodeId) continue;
      if (location && location.nodeId !== this.deps.nodeId) continue;
      await this.deps.driver.define(spec);
      restored.push(spec);
    }
    if (restored.length) {
      await this.publishDown(await this.deps.driver.list());
      for (const spec of restored)
        await this.deps.index.put(spec.uuid, { nodeId: this.deps.nodeId, name: spec.name });
      this.deps.logger.warn(
        { vms: restored.map((spec) => spec.uuid), fenceEpoch: fence.epoch },
        'defined the VMs HA gave up on here again, stopped: they wait for an operator',
      );
    }
    this.restoredAfter = fence.detectedAt;
  }

  private async placedElsewhere(vm: VmInstance): Promise<boolean> {
    if (!this.haVms.has(vm.spec.uuid)) return false;
    const location = await this.deps.index.get(vm.spec.uuid);
    return location !== undefined && location.nodeId !== this.deps.nodeId;
  }

  private async reportClean(fence: FenceRecord): Promise<void> {
    const member = await this.deps.repository.member(this.deps.nodeId);
    if (cleanAfter(member, fence)) return;
    const remaining = (await this.deps.driver.list()).filter((vm) =>
      fence.vms.includes(vm.spec.uuid),
    );
    if (remaining.length) return;
    await this.publishMember({ cleanAfterEpoch: fence.epoch, cleanAfterFence: fence.detectedAt });
    await this.event(
      'node-rejoining',
      `fenced at epoch ${fence.epoch}; its old VMs are gone, waiting for the fence to be lifted`,
    );
    this.deps.logger.warn(
      { fenceEpoch: fence.epoch },
      'this node was fenced; its old VMs are gone',
    );
  }

  private async hardStop(vm: VmInstance): Promise<void> {
    await this.deps.driver.stop(vm.spec.uuid).catch((error: unknown) => {
      this.deps.logger.error({ err: error, vm: vm.spec.uuid }, 'could not stop a fenced VM');
      throw error;
    });
  }

  /** Keeps the definitions of this node's HA VMs in etcd (what another node starts them from). */
  private async loadPolicies(): Promise<void> {
    const { policies } = await this.deps.repository.snapshot();
    this.haVms = new Set(
      [...policies.values()].filter((p) => p.policy.enabled).map((p) => p.vmUuid),
    );
  }

  /** Publishes the definitions of this node's HA VMs; answers the node's VMs. */
  private async publishSpecs(): Promise<VmInstance[]> {
    await this.loadPolicies();
    const local = await this.deps.driver.list();
    for (const vm of local) {
      if (!this.haVms.has(vm.spec.uuid)) continue;
      const json = JSON.stringify(vm.spec);
      if (this.publishedSpecs.get(vm.spec.uuid) === json) continue;
      await this.deps.repository.putSpec(vm.spec);
      this.publishedSpecs.set(vm.spec.uuid, json);
    }
    return local;
  }

  /**
   * Tells the coordinator which HA VMs here are down, and how (the restart policy, docs/ha.md):
   * `crashed` (the process died) is restarted, `stopped` (on purpose) is not. Written on change.
   */
  private async publishDown(local: readonly VmInstance[]): Promise<void> {
    const down = local
      .filter((vm) => this.haVms.has(vm.spec.uuid))
      .flatMap((vm) =>
        vm.runtime.state === 'crashed' || vm.runtime.state === 'stopped'
          ? [{ vmUuid: vm.spec.uuid, state: vm.runtime.state, since: this.since(vm) }]
          : [],
      )
      .sort((a, b) => a.vmUuid.localeCompare(b.vmUuid));
    const json = JSON.stringify(down);
    if (json === this.publishedDown) return;
    await this.publishMember({ downVms: down });
    this.publishedDown = json;
  }

  /** When the VM changed state, as an ISO time (a driver that does not say: now). */
  private since(vm: VmInstance): string {
    const at = Date.parse(vm.runtime.stateChangedAt);
    return new Date(Number.isNaN(at) ? this.deps.clock.now().getTime() : at).toISOString();
  }

  private async publishHealth(): Promise<void> {
    const leaseId = this.deps.presence.currentLeaseId;
    const outcomes = await this.deps.probes.probe({ peers: await this.deps.peers() });
    const record = scoreHealth(outcomes, this.deps.config, this.deps.clock.now());
    // A lease that just expired is replaced at the next registration; the score waits for it.
    if (leaseId)
      await this.deps.repository
        .putHealth(this.deps.nodeId, record, leaseId)
        .catch((error: unknown) =>
          this.deps.logger.debug({ err: error }, 'health score not published (lease renewing)'),
        );
  }

  private async publishMember(change: Partial<MemberRecord> = {}): Promise<void> {
    const [current, facts] = await Promise.all([
      this.deps.repository.member(this.deps.nodeId),
      this.deps.driver.facts(),
    ]);
    await this.deps.repository.putMember({
      nodeId: this.deps.nodeId,
      fenceAddresses: this.deps.config.fenceAddresses,
      groups: this.deps.config.groups,
      cpuModel: facts.cpuModel,
      cpuFlags: facts.cpuFlags,
      cleanAfterEpoch: current?.cleanAfterEpoch ?? 0,
      cleanAfterFence: current?.cleanAfterFence ?? '',
      selfFencedAt: current?.selfFencedAt ?? '',
      downVms: current?.downVms ?? [],
      ...change,
      updatedAt: this.deps.clock.now().toISOString(),
    });
  }

  private async event(kind: 'node-self-fenced' | 'node-rejoining', message: string): Promise<void> {
    const leader = await this.deps.repository.leader();
    await this.deps.repository.appendEvent({
      at: this.deps.clock.now().toISOString(),
      epoch: leader?.epoch ?? 0,
      kind,
      nodeId: this.deps.nodeId,
      message,
    });
  }
}
