import { useVirtualizer } from '@tanstack/react-virtual';
import { useId, useRef, useState } from 'react';
import { ApiError } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { HaSummary } from '../ha/HaSummary';
import { ErrorNote } from '../ui/ErrorNote';
import { formatBytes, formatPercent, formatTime } from '../ui/format';
import { LastUpdated } from '../ui/LastUpdated';
import { href } from '../view';
import './dashboard.css';
import { useRefreshDashboard } from './mutations';
import { useDashboard, type Dashboard, type DashboardRemote, type DashboardTask } from './queries';
import {
  bySeverity,
  filterRemotes,
  HEALTH_LABEL,
  remoteHealth,
  share,
  type RemoteHealth,
} from './remote-health';
import { Sparkline } from './Sparkline';

/** Up to this many remotes render as plain rows; more scroll inside a virtualized box. */
const PLAIN_ROWS = 40;
const ROW_HEIGHT = 56;

const resourcesOf = (remote: string) => href({ page: 'resources', q: `remote:${remote}` });

function HealthBadge({ health }: { health: RemoteHealth }) {
  const { word, icon } = HEALTH_LABEL[health];
  return (
    <span className={`health health-${health}`}>
      <span aria-hidden="true">{icon}</span> {word}
    </span>
  );
}

function Totals({ totals }: { totals: Dashboard['totals'] }) {
  const cpuShare = share(totals.cpu.used, totals.cpu.cores);
  const memoryShare = share(totals.memory.usedBytes, totals.memory.totalBytes);
  return (
    <section aria-label="Totals">
      <dl className="totals">
        <div className={totals.remotes.unreachable > 0 ? 'total total-bad' : 'total'}>
          <dt>Remotes</dt>
          <dd>
            <span className="total-figure" data-testid="total-remotes">
              {totals.remotes.total}
            </span>
            <span className="total-detail">
              {totals.remotes.online} online
              {totals.remotes.unreachable > 0 && (
                <strong className="bad">
                  {' · '}
                  <span aria-hidden="true">✖</span> {totals.remotes.unreachable} unreachable
                </strong>
              )}
              {totals.remotes.pending > 0 && ` · ${totals.remotes.pending} pending`}
            </span>
          </dd>
        </div>
        <div
          className={
            totals.nodes.offline > 0
              ? 'total total-bad'
              : totals.nodes.degraded > 0
                ? 'total total-warn'
                : 'total'
          }
        >
          <dt>Nodes</dt>
          <dd>
            <span className="total-figure" data-testid="total-nodes">
              {totals.nodes.total}
            </span>
            <span className="total-detail">
              <span data-testid="total-nodes-alive">{totals.nodes.alive}</span> up
              {totals.nodes.offline > 0 ? (
                <strong className="bad">
                  {' · '}
                  <span aria-hidden="true">✖</span> {totals.nodes.offline} down
                </strong>
              ) : (
                ' · 0 down'
              )}
              {totals.nodes.degraded > 0 && (
                <strong className="warn">
                  {' · '}
                  <span aria-hidden="true">▲</span> {totals.nodes.degraded} degraded
                </strong>
              )}
            </span>
          </dd>
        </div>
        <div className="total">
          <dt>VMs</dt>
          <dd>
            <span className="total-figure" data-testid="total-vms">
              {totals.vms.total}
            </span>
            <span className="total-detail">
              <span data-testid="total-vms-running">{totals.vms.running}</span> running ·{' '}
              {totals.vms.stopped} stopped
              {totals.vms.other > 0 && ` · ${totals.vms.other} other`}
            </span>
          </dd>
        </div>
        <div className="total">
          <dt>CPU</dt>
          <dd>
            <span className="total-figure">{formatPercent(cpuShare)}</span>
            <span className="total-detail">
              {totals.cpu.used.toFixed(1)} of {totals.cpu.cores} cores
            </span>
            <span className="meter" aria-hidden="true">
              <span style={{ width: `${cpuShare * 100}%` }} />
            </span>
          </dd>
        </div>
        <div className="total">
          <dt>Memory</dt>
          <dd>
            <span className="total-figure">{formatPercent(memoryShare)}</span>
            <span className="total-detail">
              {formatBytes(totals.memory.usedBytes)} of {formatBytes(totals.memory.totalBytes)}
            </span>
            <span className="meter" aria-hidden="true">
              <span style={{ width: `${memoryShare * 100}%` }} />
            </span>
          </dd>
        </div>
        <div className="total">
          <dt>Tasks running</dt>
          <dd>
            <span className="total-figure" data-testid="total-tasks-running">
              {totals.tasksRunning}
            </span>
            <span className="total-detail">
              <a href={href({ page: 'tasks' })}>All tasks</a>
            </span>
          </dd>
        </div>
      </dl>
    </section>
  );
}

function Alerts({ alerts }: { alerts: Dashboard['alerts'] }) {
  const headingId = useId();
  const sorted = bySeverity(alerts);
  return (
    <section aria-labelledby={headingId} className="dash-panel">
      <h2 id={headingId}>Alerts ({alerts.length})</h2>
      {sorted.length === 0 ? (
        <p className="muted">No alerts.</p>
      ) : (
        <ul className="alerts">
          {sorted.map((alert, i) => (
            <li key={`${alert.remote}-${i}`} className={`alert alert-${alert.severity}`}>
              <span className={`badge badge-${alert.severity}`}>
                <span aria-hidden="true">{alert.severity === 'critical' ? '✖' : '▲'}</span>{' '}
                {alert.severity === 'critical' ? 'Critical' : 'Warning'}
              </span>{' '}
              <a href={resourcesOf(alert.remote)}>{alert.remote}</a>: {alertText(alert)}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** An alert as people read it: its message and, where known, since when (in the reader's time). */
function alertText(alert: { message: string; since: string | null }): string {
  return alert.since ? `${alert.message} — since ${formatTime(alert.since)}` : alert.message;
}

function RunningTasks({ tasks, total }: { tasks: readonly DashboardTask[]; total: number }) {
  const headingId = useId();
  return (
    <section aria-labelledby={headingId} className="dash-panel">
      <h2 id={headingId}>Running tasks ({total})</h2>
      {tasks.length === 0 ? (
        <p className="muted">No tasks running.</p>
      ) : (
        <ul className="running-tasks">
          {tasks.map((task) => (
            <li key={task.id}>
              <a href={href({ page: 'task', id: task.id })}>{task.type}</a>
              <span className="muted">{task.remote ?? 'manager'}</span>
              {task.state === 'queued' ? (
                <span className="badge badge-queued">queued</span>
              ) : (
                <>
                  <progress max={1} value={task.progress} aria-label={`${task.type} progress`} />
                  <span>{formatPercent(task.progress)}</span>
                </>
              )}
              <span className="muted">
                {task.owner}
                {task.startedAt && `, since ${formatTime(task.startedAt)}`}
              </span>
            </li>
          ))}
        </ul>
      )}
      {total > tasks.length && (
        <p className="muted">
          {total - tasks.length} more: <a href={href({ page: 'tasks' })}>see all tasks</a>
        </p>
      )}
    </section>
  );
}

function RemoteRow({
  remote,
  index,
  measure,
}: {
  remote: DashboardRemote;
  index?: number;
  measure?: (row: HTMLTableRowElement | null) => void;
}) {
  const health = remoteHealth(remote);
  const cpu = remote.history.map((sample) => sample.cpu);
  const memory = remote.history.map((sample) => sample.memory);
  const memoryShare = share(remote.memory.usedBytes, remote.memory.totalBytes);
  const firstAlert = bySeverity(remote.alerts)[0];
  return (
    <tr
      ref={measure}
      className={`remote-row row-${health}`}
      data-testid="remote-row"
      data-remote={remote.remote}
      data-status={remote.status}
      data-index={index}
      aria-rowindex={index === undefined ? undefined : index + 2}
      style={{ height: ROW_HEIGHT }}
    >
      <th scope="row">
        <a href={resourcesOf(remote.remote)} title={`The nodes and VMs of ${remote.remote}`}>
          {remote.remote}
        </a>
      </th>
      <td>
        <HealthBadge health={health} />
        {remote.status === 'unreachable' && (
          <div className="cell-note" title={remote.error?.message}>
            {remote.since && `since ${new Date(remote.since).toLocaleTimeString()}: `}
            {remote.error?.message}
          </div>
        )}
      </td>
      <td>
        <span data-testid="remote-nodes-alive">{remote.nodes.alive}</span>/
        <span data-testid="remote-nodes-total">{remote.nodes.total}</span>
        {remote.nodes.offline > 0 && (
          <div className="cell-note bad">{remote.nodes.offline} down</div>
        )}
        {remote.nodes.degraded > 0 && (
          <div className="cell-note warn">{remote.nodes.degraded} degraded</div>
        )}
      </td>
      <td>
        <span data-testid="remote-vms-running">{remote.vms.running}</span>/
        <span data-testid="remote-vms-total">{remote.vms.total}</span>
        <div className="cell-note">
          {remote.vms.stopped} stopped{remote.vms.other > 0 && `, ${remote.vms.other} other`}
        </div>
      </td>
      <td>
        <div className="usage">
          <Sparkline
            values={cpu}
            label={`CPU of ${remote.remote}: ${formatPercent(remote.cpu.usage)} now`}
          />
          <span className="usage-figure">
            {formatPercent(remote.cpu.usage)}
            <span className="cell-note">{remote.cpu.cores} cores</span>
          </span>
        </div>
      </td>
      <td>
        <div className="usage">
          <Sparkline
            values={memory}
            label={`Memory of ${remote.remote}: ${formatPercent(memoryShare)} used now`}
          />
          <span className="usage-figure">
            {formatPercent(memoryShare)}
            <span className="cell-note">{formatBytes(remote.memory.totalBytes)}</span>
          </span>
        </div>
      </td>
      <td>
        {remote.alerts.length === 0 ? (
          <span className="muted">none</span>
        ) : (
          <div
            className={`cell-note alert-${firstAlert.severity}`}
            title={remote.alerts.map(alertText).join('\n')}
          >
            {remote.alerts.length > 1 && <strong>{remote.alerts.length}: </strong>}
            {alertText(firstAlert)}
          </div>
        )}
      </td>
      <td className="number">{remote.tasksRunning}</td>
    </tr>
  );
}

function RemoteTableHead() {
  return (
    <thead>
      <tr aria-rowindex={1}>
        <th scope="col">Remote</th>
        <th scope="col">Status</th>
        <th scope="col">Nodes up</th>
        <th scope="col">VMs running</th>
        <th scope="col">CPU</th>
        <th scope="col">Memory</th>
        <th scope="col">Alerts</th>
        <th scope="col" className="number">
          Tasks
        </th>
      </tr>
    </thead>
  );
}

const COLUMNS = 8;

/** Long lists scroll inside a box that renders only the rows in view. */
function VirtualRemoteTable({
  remotes,
  captionId,
}: {
  remotes: readonly DashboardRemote[];
  captionId: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: remotes.length,
    getScrollElement: () => box.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 8,
    paddingStart: 40,
  });
  const rows = virtualizer.getVirtualItems();
  const before = rows.length > 0 ? rows[0].start - 40 : 0;
  const after = rows.length > 0 ? virtualizer.getTotalSize() - rows[rows.length - 1].end : 0;
  return (
    <div
      ref={box}
      className="scroll-box remote-box"
      role="region"
      tabIndex={0}
      aria-labelledby={captionId}
    >
      <table className="remote-table" aria-rowcount={remotes.length + 1}>
        <caption id={captionId} className="visually-hidden">
          Remotes
        </caption>
        <RemoteTableHead />
        <tbody>
          {before > 0 && (
            <tr aria-hidden="true" className="spacer">
              <td colSpan={COLUMNS} style={{ height: before }} />
            </tr>
          )}
          {rows.map((row) => (
            <RemoteRow
              key={remotes[row.index].remote}
              remote={remotes[row.index]}
              index={row.index}
              measure={virtualizer.measureElement}
            />
          ))}
          {after > 0 && (
            <tr aria-hidden="true" className="spacer">
              <td colSpan={COLUMNS} style={{ height: after }} />
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

function Remotes({ remotes }: { remotes: readonly DashboardRemote[] }) {
  const [filter, setFilter] = useState('');
  const headingId = useId();
  const captionId = useId();
  const shown = filterRemotes(remotes, filter);
  return (
    <section aria-labelledby={headingId}>
      <div className="toolbar remotes-toolbar">
        <h2 id={headingId}>Remotes</h2>
        {remotes.length > 1 && (
          <label className="inline">
            Filter remotes
            <input
              type="search"
              value={filter}
              onChange={(event) => setFilter(event.target.value)}
              placeholder="name"
            />
          </label>
        )}
        <span className="muted" aria-live="polite">
          {shown.length === remotes.length
            ? `${remotes.length} remotes`
            : `${shown.length} of ${remotes.length} remotes`}
        </span>
      </div>
      {shown.length === 0 ? (
        <p className="muted">No remote matches the filter.</p>
      ) : shown.length > PLAIN_ROWS ? (
        <VirtualRemoteTable remotes={shown} captionId={captionId} />
      ) : (
        <table className="remote-table">
          <caption className="visually-hidden">Remotes</caption>
          <RemoteTableHead />
          <tbody>
            {shown.map((remote) => (
              <RemoteRow key={remote.remote} remote={remote} />
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/**
 * The NOC view: every remote the user may see at a glance (status, nodes, VMs, CPU and memory with
 * their recent history, alerts, running tasks), refreshed every 10 s and on demand.
 */
export function DashboardPage({ signedIn }: { signedIn: SignedIn }) {
  const dashboard = useDashboard();
  const refresh = useRefreshDashboard();
  const refused = dashboard.error instanceof ApiError && dashboard.error.status === 403;
  const data = dashboard.data;
  return (
    <main className="dashboard">
      <header className="toolbar">
        <h1>Dashboard</h1>
        {!refused && (
          <LastUpdated
            at={dashboard.dataUpdatedAt}
            fetching={refresh.isPending}
            onRefresh={() => refresh.mutate()}
          />
        )}
      </header>
      {refused ? (
        <p className="notice" role="status">
          You may not see any remote: the dashboard needs the remote.audit privilege on a remote or
          one of its VMs. An administrator can grant it.
        </p>
      ) : (
        <ErrorNote error={dashboard.error} />
      )}
      <ErrorNote error={refresh.error} />
      {dashboard.isPending && !dashboard.error && <p className="loading">Loading…</p>}
      {data && (
        <>
          <Totals totals={data.totals} />
          {data.remotes.length === 0 ? (
            <p className="notice">
              No remotes yet.{' '}
              {may(signedIn, 'remote.modify') ? (
                <>
                  Add one under{' '}
                  <a href={href({ page: 'admin', section: 'remotes' })}>Administration → Remotes</a>
                  .
                </>
              ) : (
                'An administrator adds them.'
              )}
            </p>
          ) : (
            <>
              <div className="dash-columns">
                <Alerts alerts={data.alerts} />
                <RunningTasks tasks={data.runningTasks} total={data.totals.tasksRunning} />
              </div>
              <HaSummary />
              <Remotes remotes={data.remotes} />
            </>
          )}
        </>
      )}
    </main>
  );
}
