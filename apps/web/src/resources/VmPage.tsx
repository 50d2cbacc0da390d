import { useEffect, useId, useState, type ReactNode } from 'react';
import { ApiError } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { VmHaPanel } from '../ha/VmHaPanel';
import { VmReplicationPanel } from '../replication/VmReplicationPanel';
import { VmSnapshots } from '../snapshots/VmSnapshots';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { formatBytes, formatDuration, formatPercent, formatTime } from '../ui/format';
import { href, navigate } from '../view';
import { FollowedTask } from '../tasks/FollowedTask';
import { DiskTable } from './DiskTable';
import { useReloadVm, useVmPower, type PowerAction } from './mutations';
import { NicTable } from './NicTable';
import {
  taskFinished,
  useFollowedTask,
  useVm,
  useVmOwners,
  useVmTasks,
  type Task,
} from './queries';
import './resources.css';
import { withScope } from './search-terms';
import { VmLastSeen } from './VmTable';

interface PowerChoice {
  action: PowerAction;
  label: string;
  /** The VM states in which the action makes sense. */
  when: readonly string[];
  whenText: string;
  question: (name: string) => string;
  danger?: boolean;
}

const POWER: readonly PowerChoice[] = [
  {
    action: 'start',
    label: 'Start',
    when: ['stopped', 'crashed'],
    whenText: 'Only a stopped VM starts',
    question: (name) => `Start ${name}?`,
  },
  {
    action: 'shutdown',
    label: 'Shut down',
    when: ['running'],
    whenText: 'Only a running VM shuts down',
    question: (name) => `Ask the guest of ${name} to shut down? The guest decides when it is done.`,
  },
  {
    action: 'reboot',
    label: 'Reboot',
    when: ['running'],
    whenText: 'Only a running VM reboots',
    question: (name) => `Reboot ${name}?`,
  },
  {
    action: 'stop',
    label: 'Stop',
    when: ['running', 'paused', 'starting', 'stopping', 'rebooting', 'crashed'],
    whenText: 'The VM is already stopped',
    question: (name) =>
      `Stop ${name} at once, like pulling the plug? What the guest has not written to disk is lost.`,
    danger: true,
  },
];

const MIGRATABLE = ['running', 'stopped'];
/** States in which a VM has a screen to show. */
const CONSOLE_STATES = ['running', 'migrating', 'paused', 'rebooting', 'starting', 'stopping'];

function Field({ label, children }: { label: string; children: ReactNode }) {
  return (
    <div>
      <dt>{label}</dt>
      <dd>{children}</dd>
    </div>
  );
}

function VmTasks({ remote, vmid }: { remote: string; vmid: string }) {
  const tasks = useVmTasks(remote, vmid);
  const headingId = useId();
  const refused = tasks.error instanceof ApiError && tasks.error.status === 403;
  return (
    <section aria-labelledby={headingId} className="vm-panel vm-tasks">
      <h2 id={headingId}>Tasks</h2>
      {refused ? (
        <p className="muted">You may not see tasks (task.audit).</p>
      ) : (
        <ErrorNote error={tasks.error} />
      )}
      {tasks.data && tasks.data.items.length === 0 && (
        <p className="muted">No tasks on this VM yet.</p>
      )}
      {tasks.data && tasks.data.items.length > 0 && (
        <table className="detail-table">
          <caption className="visually-hidden">Tasks on this VM, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Task</th>
              <th scope="col">State</th>
              <th scope="col">Started</th>
              <th scope="col">Finished</th>
              <th scope="col">By</th>
            </tr>
          </thead>
          <tbody>
            {tasks.data.items.map((task: Task) => (
              <tr key={task.id}>
                <th scope="row">
                  <a href={href({ page: 'task', id: task.id })}>{task.type}</a>
                </th>
                <td>
                  <span className={`badge badge-${task.state}`}>{task.state}</span>
                  {task.state === 'running' && ` ${formatPercent(task.progress)}`}
                </td>
                <td>{formatTime(task.startedAt ?? task.createdAt)}</td>
                <td>{formatTime(task.finishedAt)}</td>
                <td className="owner-cell">{task.owner}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {tasks.data && tasks.data.total > tasks.data.items.length && (
        <p className="muted">
          {tasks.data.total - tasks.data.items.length} older tasks: see{' '}
          <a href={href({ page: 'tasks' })}>Tasks</a>.
        </p>
      )}
    </section>
  );
}

/** One VM: its state and spec, where it runs, who owns it, its tasks, and the power actions the user may take. */
export function VmPage({
  signedIn,
  remote,
  vmid,
}: {
  signedIn: SignedIn;
  remote: string;
  vmid: string;
}) {
  const [asking, setAsking] = useState<PowerChoice | null>(null);
  const [followed, setFollowed] = useState<{ id: string; label: string } | null>(null);
  const task = useFollowedTask(followed?.id ?? null);
  const busy = followed !== null && !(task.data && taskFinished(task.data));
  const vm = useVm(remote, vmid, busy);
  const power = useVmPower(remote, vmid);
  const reload = useReloadVm(remote, vmid);
  const owners = useVmOwners(may(signedIn, 'access.audit'));
  const finished = task.data && taskFinished(task.data) ? task.data.state : null;

  // When the action's task ends, the VM shows its new state.
  useEffect(() => {
    if (finished) void reload();
  }, [finished, reload]);

  if (vm.error instanceof ApiError && vm.error.status === 404) {
    return (
      <main className="vm-page">
        <h1>VM not found</h1>
        <p className="notice">This VM does not exist or you may not see it.</p>
        <p>
          <a href={href({ page: 'resources', q: '' })}>Back to the resources</a>
        </p>
      </main>
    );
  }
  if (!vm.data) {
    return (
      <main className="vm-page">
        <h1>VM</h1>
        <ErrorNote error={vm.error} />
        {vm.isPending && <p className="loading">Loading…</p>}
      </main>
    );
  }

  const detail = vm.data;
  const mayPower = may(signedIn, 'vm.power', detail.privileges);
  const owner = owners.data?.get(detail.id.toLowerCase()) ?? null;
  const blocked = detail.lockedBy
    ? `Locked by ${detail.lockedBy}`
    : busy
      ? 'An action is in progress'
      : detail.stale
        ? 'The remote is unreachable'
        : null;
  return (
    <main className="vm-page">
      <header className="toolbar vm-header">
        <h1>{detail.name}</h1>
        <span className="vm-state">
          <span className="visually-hidden">Status: </span>
          <span data-testid="vm-status" className={`badge badge-${detail.status} vm-badge`}>
            {detail.status}
          </span>{' '}
          <VmLastSeen vm={detail} />
        </span>
      </header>
      <p className="muted vm-crumbs">
        <a href={href({ page: 'resources', q: withScope('', { remote }) })}>{remote}</a> /{' '}
        <a href={href({ page: 'resources', q: withScope('', { remote, node: detail.node }) })}>
          {detail.node}
        </a>{' '}
        / <code>{detail.id}</code>
      </p>
      {detail.stale && (
        <p className="notice" role="status">
          The remote is unreachable: this is the last known state.
        </p>
      )}

      <div className="actions vm-actions" role="group" aria-label="Power, migration and console">
        {POWER.map((choice) => {
          const fits = choice.when.includes(detail.status);
          return (
            <ActionButton
              key={choice.action}
              allowed={mayPower}
              needs="vm.power"
              disabled={!fits || blocked !== null}
              title={blocked ?? (fits ? undefined : choice.whenText)}
              className={choice.danger ? 'danger-outline' : undefined}
              onClick={() => setAsking(choice)}
            >
              {choice.label}
            </ActionButton>
          );
        })}
        <ActionButton
          allowed={may(signedIn, 'vm.migrate', detail.privileges)}
          needs="vm.migrate"
          disabled={!MIGRATABLE.includes(detail.status) || blocked !== null}
          title={
            blocked ??
            (MIGRATABLE.includes(detail.status)
              ? undefined
              : 'Only a running or stopped VM migrates')
          }
          onClick={() => navigate({ page: 'migrate', remote, vmid })}
        >
          Migrate…
        </ActionButton>
        <ActionButton
          allowed={may(signedIn, 'vm.console', detail.privileges)}
          needs="vm.console"
          disabled={!CONSOLE_STATES.includes(detail.status) || detail.stale}
          title={
            CONSOLE_STATES.includes(detail.status)
              ? detail.stale
                ? 'The remote is unreachable'
                : undefined
              : 'The VM is off: a VM has a console only while it runs'
          }
          onClick={() => navigate({ page: 'console', remote, vmid })}
        >
          Console
        </ActionButton>
      </div>
      {followed && <FollowedTask task={task.data} label={followed.label} />}
      <ErrorNote error={task.error} />

      {asking && (
        <ConfirmMutation
          mutation={power}
          variables={asking.action}
          onDone={({ taskId }) =>
            setFollowed({ id: taskId, label: `${asking.label} ${detail.name}` })
          }
          onClose={() => setAsking(null)}
          title={`${asking.label} ${detail.name}`}
          confirmLabel={asking.label}
          danger={asking.danger}
        >
          <p>{asking.question(detail.name)}</p>
        </ConfirmMutation>
      )}

      <div className="vm-panels">
        <section aria-labelledby="vm-where" className="vm-panel">
          <h2 id="vm-where">Placement and owner</h2>
          <dl className="fields">
            <Field label="Remote">
              <a href={href({ page: 'resources', q: withScope('', { remote }) })}>{remote}</a>
            </Field>
            <Field label="Node">{detail.node || '—'}</Field>
            <Field label="Owner">
              {owner ?? detail.tenant ?? <span className="muted">none</span>}
            </Field>
            <Field label="Labels">
              {Object.keys(detail.labels).length === 0 ? (
                <span className="muted">none</span>
              ) : (
                <ul className="labels">
                  {Object.entries(detail.labels).map(([key, value]) => (
                    <li key={key}>
                      <code>
                        {key}={value}
                      </code>
                    </li>
                  ))}
                </ul>
              )}
            </Field>
          </dl>
        </section>

        <section aria-labelledby="vm-runtime" className="vm-panel">
          <h2 id="vm-runtime">Runtime</h2>
          <dl className="fields">
            <Field label="CPU use">
              {detail.status === 'running' ? formatPercent(detail.cpuUsage) : '—'}
            </Field>
            <Field label="Memory used">
              {detail.status === 'running'
                ? `${formatBytes(detail.memoryUsedBytes)} of ${formatBytes(detail.memoryBytes)}`
                : '—'}
            </Field>
            <Field label="Uptime">
              {detail.status === 'running' ? formatDuration(detail.uptimeSeconds) : '—'}
            </Field>
            <Field label="State since">{formatTime(detail.stateChangedAt)}</Field>
            <Field label="Locked by">
              {detail.lockedBy ?? <span className="muted">nothing</span>}
            </Field>
          </dl>
        </section>

        <section aria-labelledby="vm-spec" className="vm-panel vm-spec">
          <h2 id="vm-spec">Spec</h2>
          <dl className="fields">
            <Field label="vCPUs">{detail.vcpus}</Field>
            <Field label="Memory">{formatBytes(detail.memoryBytes)}</Field>
            <Field label="CPU model">{detail.cpuModel || '—'}</Field>
            <Field label="Hugepages">{detail.hugepages ? 'yes' : 'no'}</Field>
          </dl>
          <DiskTable disks={detail.disks} caption="Disks" />
          <NicTable nics={detail.nics} caption="Network interfaces" />
        </section>

        <VmHaPanel signedIn={signedIn} vm={detail} />

        <VmReplicationPanel signedIn={signedIn} vm={detail} />

        <VmSnapshots signedIn={signedIn} vm={detail} />

        <VmTasks remote={remote} vmid={vmid} />
      </div>
    </main>
  );
}
