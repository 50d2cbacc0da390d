import { ALL_PRIVILEGES, type Privilege } from '@debvisor/permissions';
import { Inject, Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { performance } from 'node:perf_hooks';
import { AgentClientRepository } from '../agents/agent-client.repository';
import { preferEndpoint } from '../agents/agent-connection';
import { AccessPolicy } from '../authz/access-policy.service';
import { remoteAclPath, vmAclPath } from '../authz/acl-paths';
import type { Caller } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { currentTraceId, runWithTraceId } from '../common/trace-context';
import { newTraceId } from '../common/trace-id';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { MetricsService } from '../health/metrics.service';
import { SchedulerService } from '../scheduler/scheduler.service';
import { RemoteEvents } from '../remotes/remote-events';
import { RemotesService } from '../remotes/remotes.service';
import {
  nameSortKey,
  nodeFigures,
  usageSample,
  vmCounts,
  type NodeFigures,
  type RemoteOverview,
  type UsageSample,
  type VmCounts,
} from './resource-figures';
import { answering, reconcile, type KnownNode } from './known-nodes';
import { KnownNodesRepository } from './known-nodes.repository';
import { toNodeResource, toVmHardware, toVmResource } from './resource-mapping';
import {
  parseResourceSearch,
  searchMatches,
  searchScope,
  SearchSyntaxError,
  withClauses,
  type ResourceSearch,
  type SearchClause,
} from './resource-search';
import type {
  NodeResource,
  RemoteStatus,
  Resource,
  ResourceQuery,
  ResourceSort,
  VmDetail,
  VmHardware,
  VmResource,
} from './resources.dto';

/** The scheduler job of the resource poller. */
export const RESOURCE_POLL_JOB = 'resources.poll';

/** How many usage samples (one per successful refresh) each remote keeps for the dashboard. */
export const HISTORY_SAMPLES = 60;

/** The nodes and VMs of a remote, sorted by name, with what requests would otherwise recompute per item. */
interface Inventory {
  nodes: NodeResource[];
  vms: VmResource[];
  /** nameSortKey of each node and VM, in the same order. */
  nodeKeys: string[];
  vmKeys: string[];
  /** Disks, NICs and CPU baseline of each VM, by uuid: only the VM detail shows them. */
  hardware: Map<string, VmHardware>;
  /** Node id → name, for VMs searched or sorted by their node. */
  nodeNames: Map<string, string>;
  figures: NodeFigures;
  /** Over every VM: what a caller who may see all of them is answered without counting again. */
  vmCounts: VmCounts;
}

/** What the manager knows about one remote: the last good answer and how the last refresh went. */
interface Snapshot extends Inventory {
  status: RemoteStatus['status'];
  unreachableNodes: Record<string, string>;
  lastRefreshAt: Date | null;
  error: { code: string; message: string } | null;
  since: Date | null;
  /** Oldest first, at most HISTORY_SAMPLES. */
  history: UsageSample[];
}

/** Which of a remote's VMs a caller may see: all of them, or these (in the snapshot's order, with their sort keys). */
type VisibleVms = 'all' | { vms: VmResource[]; keys: string[] };

/**
 * The resource cache. Every remote is refreshed on its own (ListNodes and a cluster-wide ListVms,
 * each with the remote timeout as deadline) by the poller and on demand. Requests read only the
 * cache, so a dead or slow remote never delays answers about the others.
 */
@Injectable()
export class ResourcesService implements OnModuleInit, OnModuleDestroy {
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly inflight = new Map<string, Promise<void>>();
  /** Every node ever seen on each remote, by remote and node id (persisted in known_nodes). */
  private readonly known = new Map<string, Map<string, KnownNode>>();
  /** Nodes an operator forgot, per remote, while the cluster may still list them (see withoutForgotten). */
  private readonly forgotten = new Map<string, Set<string>>();
  /** Resolves once the known nodes were read from the database (refreshes merge with them). */
  private loaded: Promise<void> = Promise.resolve();
  /** Bumped when a remote changes, so that a refresh started before the change does not overwrite fresher state. */
  private readonly generations = new Map<string, number>();
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
    private readonly knownNodes: KnownNodesRepository,
    private readonly scheduler: SchedulerService,
  ) {
    logger.setContext(ResourcesService.name);
  }

  onModuleInit(): void {
    this.unsubscribe = this.events.subscribe((event) => {
      this.generations.set(event.remoteId, (this.generations.get(event.remoteId) ?? 0) + 1);
      if (event.type === 'removed') {
        this.snapshots.delete(event.remoteId);
        this.forgetRemote(event.remoteId);
        this.publishMetrics();
      } else {
        void this.refreshRemote(event.remoteId);
      }
    });
    this.loaded = this.loadKnownNodes();
    // The poller: every remote at the start, then each interval after the previous round ended.
    this.scheduler.register({
      name: RESOURCE_POLL_JOB,
      timing: { everyMs: this.config.pollIntervalSeconds * 1000, immediately: true },
      run: () => this.refreshAll(newTraceId),
    });
  }

  private async loadKnownNodes(): Promise<void> {
    try {
      for (const entry of await this.knownNodes.all()) {
        let nodes = this.known.get(entry.remote);
        if (!nodes) this.known.set(entry.remote, (nodes = new Map()));
        nodes.set(entry.nodeId, entry);
      }
    } catch (error) {
      this.logger.error(
        { err: error },
        'cannot read the known nodes; nodes that are down now will show once seen again',
      );
    }
  }

  private forgetRemote(remoteId: string): void {
    this.known.delete(remoteId);
    this.forgotten.delete(remoteId);
    this.knownNodes
      .forgetRemote(remoteId)
      .catch((error: unknown) =>
        this.logger.error(
          { remote: remoteId, err: error },
          'cannot forget the nodes of a removed remote',
        ),
      );
  }

  /** The known node, which must not answer (409 otherwise): what an operator may decommission or forget. */
  private async silentNode(remoteId: string, nodeId: string, action: string) {
    const snapshot = await this.snapshotOf(remoteId);
    await this.loaded;
    const entry = this.known.get(remoteId)?.get(nodeId);
    if (!entry) throw DomainError.notFound(`node ${nodeId} on remote ${remoteId}`);
    if (answering(entry.state))
      throw new DomainError(
        ErrorCode.Conflict,
        `node ${nodeId} is ${entry.state}: only a node that does not answer can be ${action}`,
      );
    return { snapshot, entry };
  }

  /**
   * Takes a node that does not answer out of service (an operator's decision): it stays listed as
   * decommissioned, its unknown VMs leave the lists, and it raises no alert. It is online again
   * once it answers.
   */
  async decommissionNode(remoteId: string, nodeId: string): Promise<void> {
    const { snapshot, entry } = await this.silentNode(remoteId, nodeId, 'decommissioned');
    if (entry.state === 'decommissioned') return;
    const now = this.clock.now();
    const decommissioned = { ...entry, state: 'decommissioned' as const, since: now, vms: [] };
    await this.knownNodes.save([decommissioned]);
    this.known.get(remoteId)?.set(nodeId, decommissioned);
    this.generations.set(remoteId, (this.generations.get(remoteId) ?? 0) + 1);
    const nodes = snapshot.nodes.map((n) =>
      n.id === nodeId ? { ...n, state: decommissioned.state, stateSince: now.toISOString() } : n,
    );
    const vms = snapshot.vms.filter((v) => !(v.node === nodeId && v.status === 'unknown'));
    Object.assign(snapshot, inventory(nodes, vms, snapshot.hardware));
    this.publishMetrics();
    this.logger.info({ remote: remoteId, node: nodeId, was: entry.state }, 'node decommissioned');
  }

  /**
   * Forgets a node that does not answer (an operator's decision: it will not return): it and its
   * unknown VMs leave the lists.
   */
  async forgetNode(remoteId: string, nodeId: string): Promise<void> {
    const { snapshot, entry } = await this.silentNode(remoteId, nodeId, 'forgotten');
    await this.knownNodes.forget(remoteId, nodeId);
    this.known.get(remoteId)?.delete(nodeId);
    this.forgotten.set(remoteId, new Set([...(this.forgotten.get(remoteId) ?? []), nodeId]));
    this.generations.set(remoteId, (this.generations.get(remoteId) ?? 0) + 1);
    const nodes = snapshot.nodes.filter((n) => n.id !== nodeId);
    const vms = snapshot.vms.filter((v) => !(v.node === nodeId && v.status === 'unknown'));
    Object.assign(snapshot, inventory(nodes, vms, snapshot.hardware));
    this.publishMetrics();
    this.logger.info({ remote: remoteId, node: nodeId, state: entry.state }, 'node forgotten');
  }

  onModuleDestroy(): void {
    this.unsubscribe?.();
  }

  /** Whether the poller runs (the scheduler started and has its job). */
  isPolling(): boolean {
    return this.scheduler.isActive(RESOURCE_POLL_JOB);
  }

  /** How many remotes the cache knows, by the status of their last refresh (for readiness). */
  remoteCounts(): Record<RemoteStatus['status'], number> {
    const counts = { pending: 0, online: 0, unreachable: 0 };
    for (const snapshot of this.snapshots.values()) counts[snapshot.status] += 1;
    return counts;
  }

  /**
   * Refreshes every remote, each independently; never throws. Each remote's refresh runs under
   * `traceIdOf()` when given (the poller: a new trace id per remote and refresh), else under the
   * current trace id.
   */
  async refreshAll(traceIdOf?: () => string): Promise<void> {
    let ids: string[];
    try {
      ids = await this.remotes.listIds();
    } catch (error) {
      this.logger.error({ err: error }, 'cannot list the remotes to refresh');
      return;
    }
    const known = new Set(ids);
    for (const id of [...this.snapshots.keys()]) if (!known.has(id)) this.snapshots.delete(id);
    for (const id of [...this.known.keys()]) if (!known.has(id)) this.forgetRemote(id);
    await Promise.allSettled(ids.map((id) => this.refreshRemote(id, traceIdOf?.())));
  }

  /**
   * Refreshes one remote; concurrent calls share the refresh in flight. Never throws. Its calls to
   * agents carry `traceId`: the current one (the request's) by default, else a new one.
   */
  refreshRemote(
    remoteId: string,
    traceId: string = currentTraceId() ?? newTraceId(),
  ): Promise<void> {
    const running = this.inflight.get(remoteId);
    if (running) return running;
    const refresh = runWithTraceId(traceId, () => this.doRefresh(remoteId)).finally(() =>
      this.inflight.delete(remoteId),
    );
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
      this.auth.authorize(
        caller,
        { privilege: 'remote.audit', path: '/remotes/{remote}', partial: false },
        { remote: remoteId },
      );
      work = this.refreshRemote(remoteId);
    } else {
      work = this.refreshAll();
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      work,
      new Promise((resolve) => (timer = setTimeout(resolve, this.config.remoteTimeoutMs))),
    ]);
    clearTimeout(timer);
    const statuses = this.statuses(caller);
    return { remotes: remoteId ? statuses.filter((s) => s.remote === remoteId) : statuses };
  }

  /**
   * Re-reads one VM after an action on it (asking `nodeId`, when given, first: the node that has it).
   * Never throws; failures leave the cache as it was.
   */
  async refreshVm(remoteId: string, uuid: string, nodeId?: string): Promise<void> {
    const generation = this.generations.get(remoteId) ?? 0;
    try {
      const connection = preferEndpoint(
        await this.remotes.connectionFor(remoteId),
        nodeId === undefined ? undefined : this.cachedAgentEndpoint(remoteId, nodeId),
      );
      const vm = await this.agents.getVm(connection, uuid);
      const snapshot = this.snapshots.get(remoteId);
      if (!snapshot || generation !== (this.generations.get(remoteId) ?? 0)) return;
      const fresh = {
        ...toVmResource(remoteId, vm, snapshot.status === 'unreachable'),
        lastSeenAt: this.clock.now().toISOString(),
      };
      const vms = snapshot.vms.filter((v) => v.id !== uuid);
      vms.push(fresh);
      const hardware = new Map(snapshot.hardware).set(uuid, toVmHardware(vm));
      Object.assign(snapshot, inventory(snapshot.nodes, vms, hardware));
    } catch (error) {
      this.logger.warn(
        { remote: remoteId, vm: uuid, err: error },
        'cannot re-read a VM after an action',
      );
    }
  }

  /**
   * Nodes and VMs of every remote the caller may see that match the query, one page of them in the
   * query's order, with how many match and the status of each remote in scope. Reads only the cache.
   */
  list(
    caller: Caller,
    query: ResourceQuery,
  ): { items: Resource[]; total: number; limit: number; offset: number; remotes: RemoteStatus[] } {
    const search = searchOf(query);
    const scope = searchScope(search);
    const remotes = this.visibleRemotes(caller).filter(
      (id) => (!query.remote || id === query.remote) && (!scope.remotes || scope.remotes.has(id)),
    );
    const sort = query.sort ? sortField(query.sort) : undefined;
    const statuses: RemoteStatus[] = [];
    // Without a sort, items arrive in the default order and only the page is kept.
    const page: Resource[] = [];
    const matched: Resource[] = [];
    const sortKeys: (string | number)[] = [];
    let total = 0;
    const take = (item: Resource, nameKey: string, nodeName: string) => {
      if (sort) {
        matched.push(item);
        sortKeys.push(sortKey(sort.field, item, nameKey, nodeName));
      } else if (total >= query.offset && total < query.offset + query.limit) {
        page.push(item);
      }
      total += 1;
    };
    for (const remote of remotes) {
      const snapshot = this.snapshots.get(remote)!;
      const visible = this.visibleVms(caller, remote, snapshot);
      statuses.push(this.statusFor(caller, remote, snapshot, visible));
      const nodeName = (id: string) => snapshot.nodeNames.get(id);
      if (scope.nodes && this.auth.holds(caller, 'remote.audit', remotePath(remote))) {
        snapshot.nodes.forEach((node, i) => {
          if (searchMatches(search, node, nodeName)) take(node, snapshot.nodeKeys[i], node.name);
        });
      }
      if (scope.vms) {
        const { vms, keys } =
          visible === 'all' ? { vms: snapshot.vms, keys: snapshot.vmKeys } : visible;
        vms.forEach((vm, i) => {
          if (searchMatches(search, vm, nodeName)) take(vm, keys[i], nodeName(vm.node) ?? vm.node);
        });
      }
    }
    let items = page;
    if (sort) {
      const order = Array.from(matched, (_, i) => i);
      const direction = sort.descending ? -1 : 1;
      // Equal keys keep the default order (ascending), whichever the direction.
      order.sort((a, b) => {
        const x = sortKeys[a];
        const y = sortKeys[b];
        return (x < y ? -direction : x > y ? direction : 0) || a - b;
      });
      items = order.slice(query.offset, query.offset + query.limit).map((i) => matched[i]);
    }
    return { items, total, limit: query.limit, offset: query.offset, remotes: statuses };
  }

  statuses(caller: Caller): RemoteStatus[] {
    return this.visibleRemotes(caller).map((id) => {
      const snapshot = this.snapshots.get(id)!;
      return this.statusFor(caller, id, snapshot, this.visibleVms(caller, id, snapshot));
    });
  }

  /** Every remote the caller may see, for the dashboard: status, node figures, the VMs it may see counted, recent use. */
  overview(caller: Caller): RemoteOverview[] {
    return this.visibleRemotes(caller).map((id) => {
      const snapshot = this.snapshots.get(id)!;
      const visible = this.visibleVms(caller, id, snapshot);
      const counts = visible === 'all' ? snapshot.vmCounts : vmCounts(visible.vms);
      return {
        status: this.statusFor(caller, id, snapshot, visible, counts),
        nodes: snapshot.figures,
        vms: counts,
        history: snapshot.history,
      };
    });
  }

  async nodesOf(
    caller: Caller,
    remoteId: string,
  ): Promise<{ items: NodeResource[]; remote: RemoteStatus }> {
    const snapshot = await this.snapshotOf(remoteId);
    return {
      items: snapshot.nodes,
      remote: this.statusFor(
        caller,
        remoteId,
        snapshot,
        this.visibleVms(caller, remoteId, snapshot),
      ),
    };
  }

  async vmsOf(
    caller: Caller,
    remoteId: string,
  ): Promise<{ items: VmResource[]; remote: RemoteStatus }> {
    const snapshot = await this.snapshotOf(remoteId);
    const visible = this.visibleVms(caller, remoteId, snapshot);
    return {
      items: visible === 'all' ? snapshot.vms : visible.vms,
      remote: this.statusFor(caller, remoteId, snapshot, visible),
    };
  }

  /** One VM with its disks, NICs and CPU baseline, and what the caller may do with it. */
  async vm(caller: Caller, remoteId: string, uuid: string): Promise<VmDetail> {
    const snapshot = await this.snapshotOf(remoteId);
    const vm = snapshot.vms.find((v) => v.id === uuid);
    if (!vm) throw DomainError.notFound(`VM ${uuid} on remote ${remoteId}`);
    const hardware = snapshot.hardware.get(uuid) ?? {
      cpuModel: '',
      hugepages: false,
      disks: [],
      nics: [],
    };
    return { ...vm, ...hardware, privileges: this.privilegesOn(caller, vmPath(remoteId, uuid)) };
  }

  /**
   * Where the cache lists a VM now, on any remote (a migrated VM is listed where it went; an
   * answering listing wins over an "unknown" one), or undefined when no remote lists it.
   */
  locateVm(uuid: string): VmResource | undefined {
    let found: VmResource | undefined;
    for (const snapshot of this.snapshots.values()) {
      const vm = snapshot.vms.find((v) => v.id === uuid);
      if (vm && (!found || found.status === 'unknown')) found = vm;
    }
    return found;
  }

  /** The VM from the cache, or undefined when the manager has not seen it. */
  cachedVm(remoteId: string, uuid: string): VmResource | undefined {
    return this.snapshots.get(remoteId)?.vms.find((v) => v.id === uuid);
  }

  /**
   * A VM moved to another node of its remote (a completed migration): the cache shows it there at
   * once, in `state`, and the VM's full record follows with one GetVm at that node in the
   * background (refreshVm). Nothing happens to a VM the cache does not hold.
   */
  vmMoved(remoteId: string, uuid: string, nodeId: string, state: string): void {
    const snapshot = this.snapshots.get(remoteId);
    if (!snapshot?.vms.some((v) => v.id === uuid)) return;
    const vms = snapshot.vms.map((v) =>
      v.id === uuid
        ? {
            ...v,
            node: nodeId,
            status: state,
            lockedBy: null,
            lastSeenAt: this.clock.now().toISOString(),
          }
        : v,
    );
    Object.assign(snapshot, inventory(snapshot.nodes, vms, snapshot.hardware));
    void this.refreshVm(remoteId, uuid, nodeId);
  }

  /** The agent endpoint a node registered (from the cache), or undefined when not known. */
  cachedAgentEndpoint(remoteId: string, nodeId: string): string | undefined {
    return (
      this.snapshots.get(remoteId)?.nodes.find((n) => n.id === nodeId)?.agentEndpoint || undefined
    );
  }

  private async snapshotOf(remoteId: string): Promise<Snapshot> {
    const snapshot = this.snapshots.get(remoteId);
    if (snapshot) return snapshot;
    await this.remotes.get(remoteId); // 404 for an unknown remote
    return this.ensureSnapshot(remoteId);
  }

  /**
   * The remotes in the caller's collections: those it holds remote.audit on, and for a tenant those
   * its own VMs run on (it sees them through its VMs only: no nodes; issue 14 item 6).
   */
  private visibleRemotes(caller: Caller): string[] {
    const ids = [...this.snapshots.keys()].sort();
    const allowed = this.auth.allowedRemotes(caller, 'remote.audit', ids);
    const tenant = caller.grants.some((grant) => grant.tenantGroup !== null);
    return ids.filter((id) => {
      if (allowed.has(id)) return true;
      if (!tenant) return false;
      const visible = this.visibleVms(caller, id, this.snapshots.get(id)!);
      return visible === 'all' || visible.vms.length > 0;
    });
  }

  /**
   * The remote's VMs the caller may see. A caller holding vm.audit on every VM of the remote (the
   * common case: a role on `/`, `/remotes` or the remote) is checked once; only callers whose right
   * is partial (grants on single VMs, tenant grants, a limited token) are checked VM by VM.
   */
  private visibleVms(caller: Caller, remote: string, snapshot: Snapshot): VisibleVms {
    // No VM has this id and no grant names it (ACL paths hold VM uuids): whoever holds vm.audit on it holds it on every VM of the remote.
    if (this.auth.holds(caller, 'vm.audit', vmPath(remote, ANY_VM))) return 'all';
    const visible: { vms: VmResource[]; keys: string[] } = { vms: [], keys: [] };
    snapshot.vms.forEach((vm, i) => {
      if (!this.auth.holds(caller, 'vm.audit', vmPath(remote, vm.id))) return;
      visible.vms.push(vm);
      visible.keys.push(snapshot.vmKeys[i]);
    });
    return visible;
  }

  private privilegesOn(caller: Caller, path: string): Privilege[] {
    return ALL_PRIVILEGES.filter((privilege) => this.auth.holds(caller, privilege, path));
  }

  private statusFor(
    caller: Caller,
    remote: string,
    snapshot: Snapshot,
    visible: VisibleVms,
    counts?: VmCounts,
  ): RemoteStatus {
    const vms = counts ?? (visible === 'all' ? snapshot.vmCounts : vmCounts(visible.vms));
    return {
      remote,
      status: snapshot.status,
      health:
        snapshot.status === 'online' &&
        snapshot.nodes.some((node) => node.state !== 'online' && node.state !== 'decommissioned')
          ? 'degraded'
          : snapshot.status,
      lastRefreshAt: snapshot.lastRefreshAt?.toISOString() ?? null,
      nodes: { total: snapshot.figures.total, alive: snapshot.figures.alive },
      vms: { total: vms.total, running: vms.running },
      unreachableNodes: snapshot.unreachableNodes,
      error: snapshot.error,
      since: snapshot.since?.toISOString() ?? null,
      privileges: this.privilegesOn(caller, remoteAclPath(remote)),
    };
  }

  private ensureSnapshot(remoteId: string): Snapshot {
    let snapshot = this.snapshots.get(remoteId);
    if (!snapshot) {
      snapshot = {
        status: 'pending',
        ...inventory([], [], new Map()),
        unreachableNodes: {},
        lastRefreshAt: null,
        error: null,
        since: null,
        history: [],
      };
      this.snapshots.set(remoteId, snapshot);
    }
    return snapshot;
  }

  /**
   * A forgotten node stays forgotten while the cluster still lists it without a live lease (its
   * registration outlives the agent until the lease expires); it shows again once it answers.
   */
  private withoutForgotten(remoteId: string, listed: NodeResource[]): NodeResource[] {
    const forgotten = this.forgotten.get(remoteId);
    if (!forgotten) return listed;
    for (const node of listed) if (node.alive) forgotten.delete(node.id);
    return listed.filter((node) => !forgotten.has(node.id));
  }

  private async doRefresh(remoteId: string): Promise<void> {
    const generation = this.generations.get(remoteId) ?? 0;
    const started = performance.now();
    this.ensureSnapshot(remoteId);
    try {
      const connection = await this.remotes.connectionFor(remoteId);
      const [nodes, vms] = await Promise.all([
        this.agents.listNodes(connection),
        this.agents.listVms(connection),
      ]);
      await this.loaded;
      if (!this.isCurrent(remoteId, generation)) return;
      const now = this.clock.now();
      const merged = reconcile(
        this.known.get(remoteId) ?? new Map(),
        this.withoutForgotten(
          remoteId,
          nodes.nodes.map((entry) => toNodeResource(remoteId, entry, false)),
        ),
        vms.vms.map((vm) => toVmResource(remoteId, vm, false)),
        vms.unreachableNodes,
        now,
      );
      this.known.set(remoteId, merged.known);
      // The unknown VMs keep the disks and NICs last seen.
      const previousHardware = this.snapshots.get(remoteId)!.hardware;
      const hardware = new Map(
        merged.vms
          .filter((vm) => vm.status === 'unknown' && previousHardware.has(vm.id))
          .map((vm) => [vm.id, previousHardware.get(vm.id)!]),
      );
      for (const vm of vms.vms) hardware.set(vm.spec?.uuid ?? '', toVmHardware(vm));
      const fresh = inventory(merged.nodes, merged.vms, hardware);
      this.persistKnown(remoteId, merged.changed);
      const history = [
        ...this.snapshots.get(remoteId)!.history,
        usageSample(now, fresh.figures),
      ].slice(-HISTORY_SAMPLES);
      this.snapshots.set(remoteId, {
        status: 'online',
        ...fresh,
        unreachableNodes: { ...vms.unreachableNodes },
        lastRefreshAt: now,
        error: null,
        since: null,
        history,
      });
      this.metrics.observeRefresh('online', (performance.now() - started) / 1000);
    } catch (error) {
      if (!this.isCurrent(remoteId, generation)) return;
      if (
        error instanceof DomainError &&
        error.code === ErrorCode.NotFound &&
        !(await this.stillExists(remoteId))
      ) {
        this.snapshots.delete(remoteId);
        return;
      }
      const previous = this.snapshots.get(remoteId)!;
      const described =
        error instanceof DomainError
          ? { code: error.code, message: error.message }
          : {
              code: ErrorCode.Internal,
              message: 'refresh failed unexpectedly; see the manager log',
            };
      if (!(error instanceof DomainError))
        this.logger.error({ remote: remoteId, err: error }, 'refresh failed unexpectedly');
      if (previous.status !== 'unreachable') {
        this.logger.warn({ remote: remoteId, error: described.message }, 'remote unreachable');
      }
      this.snapshots.set(remoteId, {
        ...previous,
        status: 'unreachable',
        // Same items, same order: the sort keys, names and figures stay valid.
        nodes: previous.nodes.map((n) => ({ ...n, stale: true })),
        vms: previous.vms.map((v) => ({ ...v, stale: true })),
        error: described,
        since:
          previous.status === 'unreachable' && previous.since ? previous.since : this.clock.now(),
      });
      this.metrics.observeRefresh('unreachable', (performance.now() - started) / 1000);
    } finally {
      this.publishMetrics();
    }
  }

  /** Writes what changed about the known nodes; a failure is logged (the cache keeps them in memory). */
  private persistKnown(remoteId: string, changed: readonly KnownNode[]): void {
    if (changed.length === 0) return;
    for (const entry of changed) {
      if (!answering(entry.state))
        this.logger.warn(
          { remote: remoteId, node: entry.nodeId, state: entry.state, vms: entry.vms.length },
          'node does not answer',
        );
    }
    this.knownNodes
      .save(changed)
      .catch((error: unknown) =>
        this.logger.error({ remote: remoteId, err: error }, 'cannot record the known nodes'),
      );
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
        nodeStates: snapshot.nodes
          .filter((node) => node.state !== 'decommissioned')
          .map((node) =>
            node.state === 'unreachable'
              ? 'unreachable'
              : node.state === 'down'
                ? 'offline'
                : node.status,
          ),
        vmStates: snapshot.vms.map((vm) => vm.status),
      })),
    );
  }
}

/** A VM id that no VM and no ACL entry has (those are uuids): see visibleVms. */
const ANY_VM = '*';

function remotePath(remote: string): string {
  return remoteAclPath(remote);
}

function vmPath(remote: string, uuid: string): string {
  return vmAclPath(remote, uuid);
}

/** Sorts nodes and VMs by name (then id) and derives what requests read from them. */
function inventory(
  nodes: NodeResource[],
  vms: VmResource[],
  hardware: Map<string, VmHardware>,
): Inventory {
  const sortedNodes = byName(nodes);
  const sortedVms = byName(vms);
  return {
    nodes: sortedNodes.items,
    nodeKeys: sortedNodes.keys,
    vms: sortedVms.items,
    vmKeys: sortedVms.keys,
    hardware,
    nodeNames: new Map(nodes.map((node) => [node.id, node.name])),
    figures: nodeFigures(nodes, vms),
    vmCounts: vmCounts(vms),
  };
}

function byName<T extends { name: string; id: string }>(
  items: readonly T[],
): { items: T[]; keys: string[] } {
  const keyed = items.map((item) => ({ item, key: nameSortKey(item.name) }));
  keyed.sort((a, b) =>
    a.key < b.key
      ? -1
      : a.key > b.key
        ? 1
        : a.item.id < b.item.id
          ? -1
          : a.item.id > b.item.id
            ? 1
            : 0,
  );
  return { items: keyed.map((k) => k.item), keys: keyed.map((k) => k.key) };
}

/** The query's search (q) and its older single-value parameters, which must all match too. */
function searchOf(query: ResourceQuery): ResourceSearch {
  let search: ResourceSearch;
  try {
    search = parseResourceSearch(query.q ?? '');
  } catch (error) {
    if (error instanceof SearchSyntaxError)
      throw new DomainError(ErrorCode.ValidationFailed, `q: ${error.message}`);
    throw error;
  }
  const clauses: SearchClause[] = [];
  if (query.remote) clauses.push({ key: 'remote', values: [query.remote] });
  if (query.type) clauses.push({ key: 'type', values: [query.type] });
  if (query.status) clauses.push({ key: 'status', values: [query.status.toLowerCase()] });
  if (query.name) clauses.push({ key: 'name', values: [query.name.toLowerCase()] });
  if (query.tenant) clauses.push({ key: 'tenant', values: [query.tenant.toLowerCase()] });
  return withClauses(search, clauses);
}

type SortField = 'name' | 'status' | 'remote' | 'node' | 'cpu' | 'memory';

function sortField(sort: ResourceSort): { field: SortField; descending: boolean } {
  return sort.startsWith('-')
    ? { field: sort.slice(1) as SortField, descending: true }
    : { field: sort as SortField, descending: false };
}

/** cpu and memory sort by use (a node's or a VM's); node by the node's name (a node's own). */
function sortKey(
  field: SortField,
  item: Resource,
  nameKey: string,
  nodeName: string,
): string | number {
  switch (field) {
    case 'name':
      return nameKey;
    case 'status':
      return item.status;
    case 'remote':
      return item.remote;
    case 'node':
      return nameSortKey(nodeName);
    case 'cpu':
      return item.cpuUsage;
    case 'memory':
      return item.memoryUsedBytes;
  }
}
