import { Injectable } from '@nestjs/common';
import { AccessPolicy } from '../authz/access-policy.service';
import type { Caller } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import type { RemoteOverview } from '../resources/resource-figures';
import { ResourcesService } from '../resources/resources.service';
import type { TaskEntity } from '../tasks/task.entity';
import type {
  AlertSeverity,
  Dashboard,
  DashboardAlert,
  DashboardRemote,
  DashboardTask,
  DashboardTotals,
} from './dashboard.dto';
import { DashboardRepository, type ActiveTasks } from './dashboard.repository';

/** How many queued or running tasks the dashboard lists. */
export const RUNNING_TASKS_SHOWN = 20;
/** Memory use above this share of a remote's alive nodes raises a warning. */
export const MEMORY_WARNING = 0.9;

/** `since`: when the condition began, where it is known (the page formats it for its reader). */
type Alert = { severity: AlertSeverity; message: string; since: string | null };

/**
 * The NOC overview: every remote the caller may see with its figures, recent use and alerts, the
 * totals, and the tasks in progress. Reads the resource cache (figures computed once per refresh)
 * and two statements on the tasks table, whatever the number of remotes.
 */
@Injectable()
export class DashboardService {
  constructor(
    private readonly resources: ResourcesService,
    private readonly tasks: DashboardRepository,
    private readonly auth: AccessPolicy,
    private readonly clock: ClockRepository,
  ) {}

  async get(caller: Caller): Promise<Dashboard> {
    const overviews = this.resources.overview(caller);
    // The same scope as GET /api/v1/tasks: task.audit on the remote, or the caller's own VMs.
    const remotes = this.auth.remoteScope(caller, 'task.audit');
    const vms = remotes === 'all' ? undefined : this.auth.vmScope(caller, 'task.audit');
    const active = await this.tasks.activeTasks({ remotes, vms }, RUNNING_TASKS_SHOWN);
    return buildDashboard(this.clock.now(), overviews, active);
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * What needs attention on one remote. The last known state of an unreachable remote raises no
 * other alert: it may be old, and the remote being unreachable is what matters.
 */
export function remoteAlerts(overview: RemoteOverview): Alert[] {
  const { status, nodes, vms } = overview;
  if (status.status === 'unreachable') {
    return [
      {
        severity: 'critical',
        message: `unreachable: ${status.error?.message ?? 'no answer'}`,
        since: status.since,
      },
    ];
  }
  if (status.status !== 'online') return [];
  const alerts: Alert[] = [];
  // Every node that does not answer is critical on its own: it is named with since when and what is no longer known.
  for (const outage of nodes.outages) {
    const what =
      outage.state === 'down'
        ? "down (gone from the cluster's registry: stopped, or its lease expired)"
        : 'unreachable (its agent does not answer)';
    const reason =
      outage.state === 'unreachable' && status.unreachableNodes[outage.id]
        ? `: ${status.unreachableNodes[outage.id]}`
        : '';
    alerts.push({
      severity: 'critical',
      message: `node ${outage.name} ${what}${reason}; ${plural(outage.unknownVms, 'VM')} unknown`,
      since: outage.since,
    });
  }
  if (nodes.failedNames.length > 0) {
    alerts.push({
      severity: 'critical',
      message: `${plural(nodes.failedNames.length, 'node')} failed: ${nodes.failedNames.join(', ')}`,
      since: null,
    });
  }
  if (nodes.degradedNames.length > 0) {
    alerts.push({
      severity: 'warning',
      message: `${plural(nodes.degradedNames.length, 'node')} degraded: ${nodes.degradedNames.join(', ')}`,
      since: null,
    });
  }
  const down = new Set(nodes.outages.map((outage) => outage.id));
  const unlisted = Object.entries(status.unreachableNodes).filter(([node]) => !down.has(node));
  if (unlisted.length > 0) {
    const reasons = unlisted.map(([node, reason]) => `${node} (${reason})`).join(', ');
    alerts.push({
      severity: 'warning',
      message: `the VMs of ${plural(unlisted.length, 'node')} could not be listed: ${reasons}`,
      since: null,
    });
  }
  if (vms.crashed > 0)
    alerts.push({
      severity: 'warning',
      message: `${plural(vms.crashed, 'VM')} crashed`,
      since: null,
    });
  if (
    nodes.memoryTotalBytes > 0 &&
    nodes.memoryUsedBytes / nodes.memoryTotalBytes > MEMORY_WARNING
  ) {
    alerts.push({
      severity: 'warning',
      message: `memory ${Math.round((nodes.memoryUsedBytes / nodes.memoryTotalBytes) * 100)}% used`,
      since: null,
    });
  }
  return alerts;
}

function toTask(task: TaskEntity): DashboardTask {
  return {
    id: task.id,
    type: task.type,
    state: task.state === 'running' ? 'running' : 'queued',
    remote: task.remoteId,
    vm: task.vmId,
    progress: task.progress,
    startedAt: task.startedAt?.toISOString() ?? null,
    owner: task.owner,
  };
}

function toRemote(
  overview: RemoteOverview,
  alerts: Alert[],
  tasksRunning: number,
): DashboardRemote {
  const { status, nodes, vms } = overview;
  return {
    remote: status.remote,
    status: status.status,
    since: status.since,
    lastRefreshAt: status.lastRefreshAt,
    error: status.error,
    nodes: {
      total: nodes.total,
      alive: nodes.alive,
      degraded: nodes.degraded,
      offline: nodes.offline,
    },
    vms: { total: vms.total, running: vms.running, stopped: vms.stopped, other: vms.other },
    cpu: {
      cores: nodes.cores,
      usage: nodes.cores > 0 ? Math.min(1, nodes.coresUsed / nodes.cores) : 0,
    },
    memory: { totalBytes: nodes.memoryTotalBytes, usedBytes: nodes.memoryUsedBytes },
    history: [...overview.history],
    alerts,
    tasksRunning,
    privileges: status.privileges,
  };
}

const SEVERITY_ORDER: Record<AlertSeverity, number> = { critical: 0, warning: 1 };

/** Unreachable first, then remotes with alerts, then by name. */
function attentionRank(remote: DashboardRemote): number {
  if (remote.status === 'unreachable') return 0;
  return remote.alerts.length > 0 ? 1 : 2;
}

export function buildDashboard(
  now: Date,
  overviews: readonly RemoteOverview[],
  active: ActiveTasks,
): Dashboard {
  const remotes = overviews
    .map((overview) =>
      toRemote(overview, remoteAlerts(overview), active.perRemote.get(overview.status.remote) ?? 0),
    )
    .sort(
      (a, b) =>
        attentionRank(a) - attentionRank(b) ||
        (a.remote < b.remote ? -1 : a.remote > b.remote ? 1 : 0),
    );
  const alerts: DashboardAlert[] = remotes
    .flatMap((remote) => remote.alerts.map((alert) => ({ remote: remote.remote, ...alert })))
    // Array.prototype.sort is stable: within a severity, alerts keep the remotes' order.
    .sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]);
  const totals: DashboardTotals = {
    remotes: { total: overviews.length, online: 0, unreachable: 0, pending: 0 },
    nodes: { total: 0, alive: 0, degraded: 0, offline: 0 },
    vms: { total: 0, running: 0, stopped: 0, other: 0 },
    cpu: { cores: 0, used: 0 },
    memory: { totalBytes: 0, usedBytes: 0 },
    tasksRunning: [...active.perRemote.values()].reduce((sum, n) => sum + n, 0),
  };
  for (const { status, nodes, vms } of overviews) {
    totals.remotes[status.status] += 1;
    totals.nodes.total += nodes.total;
    totals.nodes.alive += nodes.alive;
    totals.nodes.degraded += nodes.degraded;
    totals.nodes.offline += nodes.offline;
    totals.vms.total += vms.total;
    totals.vms.running += vms.running;
    totals.vms.stopped += vms.stopped;
    totals.vms.other += vms.other;
    totals.cpu.cores += nodes.cores;
    totals.cpu.used += nodes.coresUsed;
    totals.memory.totalBytes += nodes.memoryTotalBytes;
    totals.memory.usedBytes += nodes.memoryUsedBytes;
  }
  return {
    generatedAt: now.toISOString(),
    totals,
    remotes,
    alerts,
    runningTasks: active.newest.map(toTask),
  };
}
