import { Inject, Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { performance } from 'node:perf_hooks';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { AccessPolicy } from '../auth/access-policy.service';
import type { Caller } from '../auth/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { currentTraceId, runWithTraceId } from '../common/trace-context';
import { newTraceId } from '../common/trace-id';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { MetricsService } from '../health/metrics.service';
import { RemoteEvents } from '../remotes/remote-events';
import { RemotesService } from '../remotes/remotes.service';
import { toNodeResource, toVmResource } from './resource-mapping';
import type { NodeResource, RemoteStatus, Resource, ResourceQuery, VmResource } from './resources.dto';

/** What the manager knows about one remote: the last good answer and how the last refresh went. */
interface Snapshot {
  status: RemoteStatus['status'];
  nodes: NodeResource[];
  vms: VmResource[];
  unreachableNodes: Record<string, string>;
  lastRefreshAt: Date | null;
  error: { code: string; message: string } | null;
  since: Date | null;
}

/**
 * The resource cache. Every remote is refreshed on its own (ListNodes and a cluster-wide ListVms,
 * each with the remote timeout as deadline) by the poller and on demand. Requests read only the
 * cache, so a dead or slow remote never delays answers about the others.
 */
@Injectable()
export class ResourcesService implements OnModuleInit, OnModuleDestroy {
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly inflight = new Map<string, Promise<void>>();
  /** Bumped when a remote changes, so that a refresh started before the change does not overwrite fresher state. */
  private readonly generations = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    private readonly remotes: RemotesService,
    private readonly agents: AgentClientRepository,
    private readonly events: RemoteEvents,
    private readonly auth: AccessPolicy,
    private readonly clock: ClockRepository,
    private readonly metrics: MetricsService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext(ResourcesService.name);
  }

  onModuleInit(): void {
    this.unsubscribe = this.events.subscribe((event) => {
      this.generations.set(event.remoteId, (this.generations.get(event.remoteId) ?? 0) + 1);
      if (event.type === 'removed') {
        this.snapshots.delete(event.remoteId);
        this.publishMetrics();
      } else {
        void this.refreshRemote(event.remoteId);
      }
    });
  }

  onModuleDestroy(): void {
    this.stopPolling();
    this.unsubscribe?.();
  }

  /** Starts the poller: a refresh of every remote now (in the background) and every interval after. */
  startPolling(): void {
    if (this.polling) return;
    this.polling = true;
    const tick = () => {
      void this.refreshAll().finally(() => {
        if (this.polling) this.timer = setTimeout(tick, this.config.pollIntervalSeconds * 1000);
      });
    };
    tick();
  }

  stopPolling(): void {
    this.polling = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  isPolling(): boolean {
    return this.polling;
  }

  /** How many remotes the cache knows, by the status of their last refresh (for readiness). */
  remoteCounts(): Record<RemoteStatus['status'], number> {
    const counts = { pending: 0, online: 0, unreachable: 0 };
    for (const snapshot of this.snapshots.values()) counts[snapshot.status] += 1;
    return counts;
  }

  /** Refreshes every remote, each independently; never throws. */
  async refreshAll(): Promise<void> {
    let ids: string[];
    try {
      ids = await this.remotes.listIds();
    } catch (error) {
      this.logger.error({ err: error }, 'cannot list the remotes to refresh');
      return;
    }
    const known = new Set(ids);
    for (const id of [...this.snapshots.keys()]) if (!known.has(id)) this.snapshots.delete(id);
    await Promise.allSettled(ids.map((id) => this.refreshRemote(id)));
  }

  /**
   * Refreshes one remote; concurrent calls share the refresh in flight. Never throws. Its calls to
   * agents carry the current trace id (the request's), or a new one for the poller's refreshes.
   */
  refreshRemote(remoteId: string): Promise<void> {
    const running = this.inflight.get(remoteId);
    if (running) return running;
    const refresh = runWithTraceId(currentTraceId() ?? newTraceId(), () => this.doRefresh(remoteId)).finally(() => this.inflight.delete(remoteId));
    this.inflight.set(remoteId, refresh);
    return refresh;
  }

  /**
   * On-demand refresh of one remote (it must exist) or all: waits for the refreshes, but never
   * longer than the remote timeout; slower remotes keep refreshing in the background.
   */
  async refreshNow(caller: Caller, remoteId?: string): Promise<{ remotes: RemoteStatus[] }> {
    let work: Promise<unknown>;
    if (remoteId) {
      await this.remotes.get(remoteId);
      this.auth.authorize(caller, { privilege: 'remote.audit', path: '/remotes/{remote}', partial: false }, { remote: remoteId });
      work = this.refreshRemote(remoteId);
    } else {
      work = this.refreshAll();
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([work, new Promise((resolve) => (timer = setTimeout(resolve, this.config.remoteTimeoutMs)))]);
    clearTimeout(timer);
    const statuses = this.statuses(caller);
    return { remotes: remoteId ? statuses.filter((s) => s.remote === remoteId) : statuses };
  }

  /** Re-reads one VM after an action on it. Never throws; failures leave the cache as it was. */
  async refreshVm(remoteId: string, uuid: string): Promise<void> {
    const generation = this.generations.get(remoteId) ?? 0;
    try {
      const connection = await this.remotes.connectionFor(remoteId);
      const vm = await this.agents.getVm(connection, uuid);
      const snapshot = this.snapshots.get(remoteId);
      if (!snapshot || generation !== (this.generations.get(remoteId) ?? 0)) return;
      const fresh = toVmResource(remoteId, vm, snapshot.status === 'unreachable');
      const index = snapshot.vms.findIndex((v) => v.id === uuid);
      if (index >= 0) snapshot.vms[index] = fresh;
      else snapshot.vms.push(fresh);
    } catch (error) {
      this.logger.warn({ remote: remoteId, vm: uuid, err: error }, 'cannot re-read a VM after an action');
    }
  }

  /** Nodes and VMs of every remote the caller may see, filtered; with each remote's status. */
  list(caller: Caller, query: ResourceQuery): { items: Resource[]; remotes: RemoteStatus[] } {
    const remotes = this.visibleRemotes(caller).filter((id) => !query.remote || id === query.remote);
    const items: Resource[] = [];
    const name = query.name?.toLowerCase();
    for (const remote of remotes) {
      const snapshot = this.snapshots.get(remote)!;
      const candidates: Resource[] = [
        ...(query.type === 'vm' ? [] : snapshot.nodes),
        ...(query.type === 'node' ? [] : snapshot.vms.filter((vm) => this.auth.holds(caller, 'vm.audit', vmPath(remote, vm.id)))),
      ];
      for (const item of candidates) {
        if (query.status && item.status !== query.status) continue;
        if (name && !item.name.toLowerCase().includes(name)) continue;
        if (query.tenant && (item.type !== 'vm' || item.tenant !== query.tenant)) continue;
        items.push(item);
      }
    }
    return { items, remotes: remotes.map((id) => statusOf(id, this.snapshots.get(id)!)) };
  }

  statuses(caller: Caller): RemoteStatus[] {
    return this.visibleRemotes(caller).map((id) => statusOf(id, this.snapshots.get(id)!));
  }

  async nodesOf(remoteId: string): Promise<{ items: NodeResource[]; remote: RemoteStatus }> {
    const snapshot = await this.snapshotOf(remoteId);
    return { items: snapshot.nodes, remote: statusOf(remoteId, snapshot) };
  }

  async vmsOf(caller: Caller, remoteId: string): Promise<{ items: VmResource[]; remote: RemoteStatus }> {
    const snapshot = await this.snapshotOf(remoteId);
    return {
      items: snapshot.vms.filter((vm) => this.auth.holds(caller, 'vm.audit', vmPath(remoteId, vm.id))),
      remote: statusOf(remoteId, snapshot),
    };
  }

  async vm(remoteId: string, uuid: string): Promise<VmResource> {
    const snapshot = await this.snapshotOf(remoteId);
    const vm = snapshot.vms.find((v) => v.id === uuid);
    if (!vm) throw DomainError.notFound(`VM ${uuid} on remote ${remoteId}`);
    return vm;
  }

  /** The VM from the cache, or undefined when the manager has not seen it. */
  cachedVm(remoteId: string, uuid: string): VmResource | undefined {
    return this.snapshots.get(remoteId)?.vms.find((v) => v.id === uuid);
  }

  private async snapshotOf(remoteId: string): Promise<Snapshot> {
    const snapshot = this.snapshots.get(remoteId);
    if (snapshot) return snapshot;
    await this.remotes.get(remoteId); // 404 for an unknown remote
    return this.ensureSnapshot(remoteId);
  }

  private visibleRemotes(caller: Caller): string[] {
    const ids = [...this.snapshots.keys()].sort();
    const allowed = this.auth.allowedRemotes(caller, 'remote.audit', ids);
    return ids.filter((id) => allowed.has(id));
  }

  private ensureSnapshot(remoteId: string): Snapshot {
    let snapshot = this.snapshots.get(remoteId);
    if (!snapshot) {
      snapshot = { status: 'pending', nodes: [], vms: [], unreachableNodes: {}, lastRefreshAt: null, error: null, since: null };
      this.snapshots.set(remoteId, snapshot);
    }
    return snapshot;
  }

  private async doRefresh(remoteId: string): Promise<void> {
    const generation = this.generations.get(remoteId) ?? 0;
    const started = performance.now();
    this.ensureSnapshot(remoteId);
    try {
      const connection = await this.remotes.connectionFor(remoteId);
      const [nodes, vms] = await Promise.all([this.agents.listNodes(connection), this.agents.listVms(connection)]);
      if (!this.isCurrent(remoteId, generation)) return;
      this.snapshots.set(remoteId, {
        status: 'online',
        nodes: nodes.nodes.map((entry) => toNodeResource(remoteId, entry, false)),
        vms: vms.vms.map((vm) => toVmResource(remoteId, vm, false)),
        unreachableNodes: { ...vms.unreachableNodes },
        lastRefreshAt: this.clock.now(),
        error: null,
        since: null,
      });
      this.metrics.observeRefresh('online', (performance.now() - started) / 1000);
    } catch (error) {
      if (!this.isCurrent(remoteId, generation)) return;
      if (error instanceof DomainError && error.code === ErrorCode.NotFound && !(await this.stillExists(remoteId))) {
        this.snapshots.delete(remoteId);
        return;
      }
      const previous = this.snapshots.get(remoteId)!;
      const described =
        error instanceof DomainError
          ? { code: error.code, message: error.message }
          : { code: ErrorCode.Internal, message: 'refresh failed unexpectedly; see the manager log' };
      if (!(error instanceof DomainError)) this.logger.error({ remote: remoteId, err: error }, 'refresh failed unexpectedly');
      if (previous.status !== 'unreachable') {
        this.logger.warn({ remote: remoteId, error: described.message }, 'remote unreachable');
      }
      this.snapshots.set(remoteId, {
        ...previous,
        status: 'unreachable',
        nodes: previous.nodes.map((n) => ({ ...n, stale: true })),
        vms: previous.vms.map((v) => ({ ...v, stale: true })),
        error: described,
        since: previous.status === 'unreachable' && previous.since ? previous.since : this.clock.now(),
      });
      this.metrics.observeRefresh('unreachable', (performance.now() - started) / 1000);
    } finally {
      this.publishMetrics();
    }
  }

  private isCurrent(remoteId: string, generation: number): boolean {
    return (this.generations.get(remoteId) ?? 0) === generation && this.snapshots.has(remoteId);
  }

  private async stillExists(remoteId: string): Promise<boolean> {
    return (await this.remotes.listIds()).includes(remoteId);
  }

  private publishMetrics(): void {
    this.metrics.publishRemotes(
      [...this.snapshots].map(([remote, snapshot]) => ({
        remote,
        status: snapshot.status,
        nodeStates: snapshot.nodes.map((node) => node.status),
        vmStates: snapshot.vms.map((vm) => vm.status),
      })),
    );
  }
}

function vmPath(remote: string, uuid: string): string {
  return `/remotes/${encodeURIComponent(remote)}/vms/${encodeURIComponent(uuid)}`;
}

function statusOf(remote: string, snapshot: Snapshot): RemoteStatus {
  return {
    remote,
    status: snapshot.status,
    lastRefreshAt: snapshot.lastRefreshAt?.toISOString() ?? null,
    nodes: { total: snapshot.nodes.length, alive: snapshot.nodes.filter((n) => n.alive).length },
    vms: { total: snapshot.vms.length, running: snapshot.vms.filter((v) => v.status === 'running').length },
    unreachableNodes: snapshot.unreachableNodes,
    error: snapshot.error,
    since: snapshot.since?.toISOString() ?? null,
  };
}
