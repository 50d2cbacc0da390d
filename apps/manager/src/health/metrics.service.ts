import { collectProcessMetrics, RpcMetrics } from '@debvisor/common';
import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** How callers of the manager's API authenticate: the `method` label of auth_attempts_total (password, oidc, ldap arrive with the identity issue). */
export const AUTH_METHODS = ['token', 'session', 'password', 'tfa', 'oidc'] as const;
/** What the manager connects to: the `backend_service` label of backend_connection_errors_total. */
export const BACKENDS = ['postgres', 'agent'] as const;
export type Backend = (typeof BACKENDS)[number];

/**
 * Node states per remote: the node's health while it answers; unreachable while its lease lives but
 * its agent does not answer; offline when its lease is gone (the manager still knows it); anything else is `unknown`.
 */
export const NODE_STATES = [
  'ok',
  'degraded',
  'failed',
  'unreachable',
  'offline',
  'unknown',
] as const;
/** VM states per remote, as agents report them; anything else is `unknown`. */
export const VM_STATES = [
  'stopped',
  'starting',
  'running',
  'stopping',
  'rebooting',
  'migrating',
  'paused',
  'crashed',
  'unknown',
] as const;
/** How a task ended: `interrupted` when a manager restart cut it off. */
export const TASK_OUTCOMES = ['succeeded', 'failed', 'cancelled', 'interrupted'] as const;
export type TaskOutcome = (typeof TASK_OUTCOMES)[number];
export const MIGRATION_OUTCOMES = ['succeeded', 'failed', 'cancelled'] as const;
export type MigrationOutcome = (typeof MIGRATION_OUTCOMES)[number];

/** What the metrics need to know about one remote after a refresh. */
export interface RemoteMetrics {
  readonly remote: string;
  readonly status: 'pending' | 'online' | 'unreachable';
  /** The `status` of each node (ok, degraded, failed, offline). */
  readonly nodeStates: readonly string[];
  /** The `status` of each VM. */
  readonly vmStates: readonly string[];
}

/** A mirrored VM's mirroring health as the replication poll sees it (the `state` of debvisor_rbd_mirror_vm_state). */
export const MIRROR_VM_STATES = ['ok', 'syncing', 'error', 'split-brain', 'unknown'] as const;
/** Image mirroring states (rbd's `up+replaying` …), reduced to the part after `+`; anything else is `unknown`. */
export const MIRROR_IMAGE_STATES = [
  'replaying',
  'stopped',
  'syncing',
  'starting_replay',
  'stopping_replay',
  'error',
  'disabled',
  'unknown',
] as const;

/** What the metrics need to know about one mirrored VM after a replication poll. */
export interface ReplicationMetrics {
  /** The remote where the VM is primary. */
  readonly remote: string;
  /** The VM's uuid (bounded: one series per mirrored VM, which operators choose). */
  readonly vm: string;
  /** Undefined when no site answered. */
  readonly rpoSeconds: number | undefined;
  readonly rpoTargetSeconds: number;
  readonly health: string;
  readonly splitBrain: boolean;
  /** Each image's state at each site. */
  readonly imageStates: readonly { readonly remote: string; readonly state: string }[];
}

/**
 * Prometheus metrics of this manager instance (its own registry, so several instances can live in
 * one process): the process metrics; the RPC guide's metrics for its calls to agents and its own
 * API's authentication (shared definitions from @debvisor/common); HTTP requests; and the
 * federation — remotes up or down, nodes and VMs by state per remote, tasks, migrations,
 * certificate expiry. Label values come from bounded sets: route templates, fixed state and
 * outcome names, gRPC names, and remote ids (chosen by operators, one per registered cluster) —
 * never VM names, URLs or principals.
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  readonly rpc = new RpcMetrics(this.registry, { authMethods: AUTH_METHODS, backends: BACKENDS });
  private readonly registers = [this.registry];
  private readonly remotes = new Gauge({
    name: 'debvisor_remotes',
    help: 'Remotes by status of their last refresh',
    labelNames: ['status'] as const,
    registers: this.registers,
  });
  private readonly remoteUp = new Gauge({
    name: 'debvisor_remote_up',
    help: 'Whether the last refresh of a remote reached its agents (1) or not (0); absent until its first refresh',
    labelNames: ['remote'] as const,
    registers: this.registers,
  });
  private readonly nodes = new Gauge({
    name: 'debvisor_nodes',
    help: 'Nodes of each reachable remote by state (ok, degraded, failed, unreachable, offline, unknown)',
    labelNames: ['remote', 'state'] as const,
    registers: this.registers,
  });
  private readonly vms = new Gauge({
    name: 'debvisor_vms',
    help: 'VMs of each reachable remote by state',
    labelNames: ['remote', 'state'] as const,
    registers: this.registers,
  });
  private readonly refreshDuration = new Histogram({
    name: 'debvisor_resource_refresh_duration_seconds',
    help: 'How long refreshing one remote (nodes and VMs) took',
    labelNames: ['outcome'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: this.registers,
  });
  private readonly tasks = new Counter({
    name: 'debvisor_tasks_total',
    help: 'Finished tasks by type and outcome (succeeded, failed, interrupted)',
    labelNames: ['type', 'outcome'] as const,
    registers: this.registers,
  });
  private readonly taskDuration = new Histogram({
    name: 'debvisor_task_duration_seconds',
    help: 'How long tasks ran, from start to end, by type and outcome',
    labelNames: ['type', 'outcome'] as const,
    buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    registers: this.registers,
  });
  private readonly tasksActive = new Gauge({
    name: 'debvisor_tasks_active',
    help: 'Tasks of this manager process waiting (queued) or running',
    labelNames: ['state'] as const,
    registers: this.registers,
  });
  private readonly migrations = new Counter({
    name: 'debvisor_migrations_total',
    help: 'Finished live migrations by outcome (succeeded, failed, cancelled)',
    labelNames: ['outcome'] as const,
    registers: this.registers,
  });
  private readonly migrationDuration = new Histogram({
    name: 'debvisor_migration_duration_seconds',
    help: 'How long live migrations took, by outcome',
    labelNames: ['outcome'] as const,
    buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
    registers: this.registers,
  });
  private readonly mirrorRpo = new Gauge({
    name: 'debvisor_rbd_mirror_rpo_seconds',
    help: "A mirrored VM's recovery point: now minus the oldest of its disks' last mirrored snapshot, computed by the manager (remote: where it is primary)",
    labelNames: ['remote', 'vm'] as const,
    registers: this.registers,
  });
  private readonly mirrorRpoTarget = new Gauge({
    name: 'debvisor_rbd_mirror_rpo_target_seconds',
    help: 'The RPO a mirrored VM should keep (set when its mirroring was enabled)',
    labelNames: ['remote', 'vm'] as const,
    registers: this.registers,
  });
  private readonly mirrorVmState = new Gauge({
    name: 'debvisor_rbd_mirror_vm_state',
    help: 'Mirroring health of each mirrored VM: 1 for its current state (ok, syncing, error, split-brain, unknown), 0 for the others',
    labelNames: ['remote', 'vm', 'state'] as const,
    registers: this.registers,
  });
  private readonly mirrorSplitBrain = new Gauge({
    name: 'debvisor_rbd_mirror_split_brain',
    help: 'Whether some image of a mirrored VM is primary at both sites (1) or not (0)',
    labelNames: ['remote', 'vm'] as const,
    registers: this.registers,
  });
  private readonly mirrorImages = new Gauge({
    name: 'debvisor_rbd_mirror_images',
    help: "Mirrored VMs' images at each remote by mirroring state (replaying, stopped, syncing, error …)",
    labelNames: ['remote', 'state'] as const,
    registers: this.registers,
  });
  private readonly auditWriteFailures = new Counter({
    name: 'debvisor_audit_write_failures_total',
    help: 'Audit entries that could not be written, by sink (database: the change they guarded was refused; file: the copy is missing)',
    labelNames: ['sink'] as const,
    registers: this.registers,
  });
  private readonly httpRequests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by method, route template and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: this.registers,
  });
  private readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration, by method and route template',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: this.registers,
  });
  private readonly beforeScrape: (() => Promise<void>)[] = [];

  constructor() {
    collectProcessMetrics(this.registry);
    this.publishRemotes([]);
    this.setTaskQueue(0, 0);
    for (const outcome of MIGRATION_OUTCOMES) this.migrations.inc({ outcome }, 0);
    for (const sink of ['database', 'file'] as const) this.auditWriteFailures.inc({ sink }, 0);
  }

  auditWriteFailed(sink: 'database' | 'file', entries: number): void {
    this.auditWriteFailures.inc({ sink }, entries);
  }

  /** Everything about the remotes, after every refresh: counts by status, up/down, nodes and VMs by state. */
  publishRemotes(remotes: readonly RemoteMetrics[]): void {
    const counts = { pending: 0, online: 0, unreachable: 0 };
    this.remoteUp.reset();
    this.nodes.reset();
    this.vms.reset();
    for (const remote of remotes) {
      counts[remote.status] += 1;
      if (remote.status === 'pending') continue;
      this.remoteUp.set({ remote: remote.remote }, remote.status === 'online' ? 1 : 0);
      // The last known nodes and VMs of an unreachable remote are stale: no series rather than old numbers.
      if (remote.status !== 'online') continue;
      setCounts(this.nodes, remote.remote, NODE_STATES, remote.nodeStates);
      setCounts(this.vms, remote.remote, VM_STATES, remote.vmStates);
    }
    for (const [status, count] of Object.entries(counts)) this.remotes.set({ status }, count);
  }

  observeRefresh(outcome: 'online' | 'unreachable', seconds: number): void {
    this.refreshDuration.observe({ outcome }, seconds);
  }

  /** A task type exists (its counters start at 0). `type` is a fixed name such as vm.start. */
  registerTaskType(type: string): void {
    for (const outcome of TASK_OUTCOMES) this.tasks.inc({ type, outcome }, 0);
  }

  /** A task ended; `seconds` from its start (undefined when it never started). */
  observeTask(type: string, outcome: TaskOutcome, seconds: number | undefined): void {
    this.tasks.inc({ type, outcome });
    if (seconds !== undefined) this.taskDuration.observe({ type, outcome }, seconds);
  }

  setTaskQueue(queued: number, running: number): void {
    this.tasksActive.set({ state: 'queued' }, queued);
    this.tasksActive.set({ state: 'running' }, running);
  }

  /** A live migration ended (fed by the migration feature). */
  observeMigration(outcome: MigrationOutcome, seconds: number): void {
    this.migrations.inc({ outcome });
    this.migrationDuration.observe({ outcome }, seconds);
  }

  /** Everything about mirrored VMs, after every replication poll (series of VMs no longer mirrored disappear). */
  publishReplication(vms: readonly ReplicationMetrics[]): void {
    this.mirrorRpo.reset();
    this.mirrorRpoTarget.reset();
    this.mirrorVmState.reset();
    this.mirrorSplitBrain.reset();
    this.mirrorImages.reset();
    const images = new Map<string, string[]>();
    for (const vm of vms) {
      const labels = { remote: vm.remote, vm: vm.vm };
      if (vm.rpoSeconds !== undefined) this.mirrorRpo.set(labels, vm.rpoSeconds);
      this.mirrorRpoTarget.set(labels, vm.rpoTargetSeconds);
      const current = (MIRROR_VM_STATES as readonly string[]).includes(vm.health)
        ? vm.health
        : 'unknown';
      for (const state of MIRROR_VM_STATES)
        this.mirrorVmState.set({ ...labels, state }, state === current ? 1 : 0);
      this.mirrorSplitBrain.set(labels, vm.splitBrain ? 1 : 0);
      for (const image of vm.imageStates) {
        const list = images.get(image.remote) ?? [];
        list.push(image.state.slice(image.state.indexOf('+') + 1));
        images.set(image.remote, list);
      }
    }
    for (const [remote, states] of images)
      setCounts(this.mirrorImages, remote, MIRROR_IMAGE_STATES, states);
  }

  /** `route` is a route template (`/api/v1/remotes/:remote`), `static`, or `unmatched` — never a raw path. */
  observeHttp(method: string, route: string, status: number, seconds: number): void {
    const m = KNOWN_METHODS.has(method) ? method : 'OTHER';
    this.httpRequests.inc({ method: m, route, status: String(status) });
    this.httpDuration.observe({ method: m, route }, seconds);
  }

  /** Work to do right before every scrape (e.g. the readiness checks behind rpc_service_status). */
  onScrape(update: () => Promise<void>): void {
    this.beforeScrape.push(update);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  async render(): Promise<string> {
    await Promise.all(this.beforeScrape.map((update) => update().catch(() => undefined)));
    return this.registry.metrics();
  }
}

function setCounts<L extends string>(
  gauge: Gauge<L | 'remote' | 'state'>,
  remote: string,
  known: readonly string[],
  values: readonly string[],
): void {
  const counts = new Map<string, number>(known.map((state) => [state, 0]));
  for (const value of values) {
    const state = counts.has(value) ? value : 'unknown';
    counts.set(state, counts.get(state)! + 1);
  }
  for (const [state, count] of counts)
    gauge.set({ remote, state } as Record<L | 'remote' | 'state', string>, count);
}
