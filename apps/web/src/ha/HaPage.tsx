import { useQueryClient } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { ApiError } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { useTaskFollow } from '../tasks/FollowedTask';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { LastUpdated } from '../ui/LastUpdated';
import { Timestamp } from '../ui/Timestamp';
import { href } from '../view';
import './ha.css';
import { StateBadge } from './HaBadges';
import {
  NODE_STATE_LABEL,
  policyInWords,
  probeProblems,
  scoreInWords,
  VM_STATE_LABEL,
  vmDetailsInWords,
} from './ha-view';
import { useMaintenance } from './mutations';
import {
  haKeys,
  useHaOverview,
  useRemoteHa,
  type HaNode,
  type HaRemoteSummary,
  type RemoteHa,
} from './queries';

const READ_WORDS: Record<HaRemoteSummary['status'], string> = {
  pending: 'not read yet',
  ok: 'read',
  unreachable: 'unreachable',
  unavailable: 'no HA answer',
};

function Remotes({
  remotes,
  selected,
  onSelect,
}: {
  remotes: HaRemoteSummary[];
  selected: string | null;
  onSelect: (remote: string) => void;
}) {
  return (
    <div className="ha-table-frame">
      <table className="ha-remotes">
        <caption className="visually-hidden">HA of every remote</caption>
        <thead>
          <tr>
            <th scope="col">Remote</th>
            <th scope="col">Coordinator</th>
            <th scope="col">Nodes</th>
            <th scope="col">HA VMs</th>
            <th scope="col">Needs attention</th>
            <th scope="col">
              <span className="visually-hidden">Details</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {remotes.map((remote) => (
            <tr key={remote.remote} className={remote.alerts.length > 0 ? 'row-bad' : undefined}>
              <th scope="row">{remote.remote}</th>
              <td>
                {remote.status !== 'ok' ? (
                  <span title={remote.error?.message}>
                    {READ_WORDS[remote.status]}
                    {remote.error && <span className="muted"> — {remote.error.message}</span>}
                  </span>
                ) : remote.coordinator ? (
                  <>
                    {remote.coordinator}{' '}
                    <span className="muted">(epoch {remote.fencingEpoch})</span>
                  </>
                ) : (
                  <strong className="error">none elected</strong>
                )}
              </td>
              <td>
                {remote.nodes.online} online
                {remote.nodes.maintenance + remote.nodes.draining > 0 &&
                  `, ${remote.nodes.maintenance + remote.nodes.draining} in maintenance`}
                {remote.nodes.fenced + remote.nodes['fence-failed'] > 0 && (
                  <strong className="error">
                    , {remote.nodes.fenced + remote.nodes['fence-failed']} fenced
                  </strong>
                )}
              </td>
              <td>
                {remote.vms.protected} protected
                {remote.vms.recovering > 0 && `, ${remote.vms.recovering} recovering`}
                {remote.vms.fenced > 0 && `, ${remote.vms.fenced} fenced`}
                {remote.vms.error > 0 && (
                  <strong className="error">, {remote.vms.error} in error</strong>
                )}
              </td>
              <td>
                {remote.alerts.length === 0 ? (
                  <span className="muted">nothing</span>
                ) : (
                  <ul className="ha-probes">
                    {remote.alerts.map((alert) => (
                      <li key={alert.message}>
                        <span className="visually-hidden">{alert.severity}: </span>
                        {alert.message}
                      </li>
                    ))}
                  </ul>
                )}
              </td>
              <td>
                <button
                  type="button"
                  aria-pressed={selected === remote.remote}
                  onClick={() => onSelect(remote.remote)}
                >
                  Nodes and VMs
                  <span className="visually-hidden"> of {remote.remote}</span>
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Nodes({
  signedIn,
  ha,
  onMaintenance,
}: {
  signedIn: SignedIn;
  ha: RemoteHa;
  onMaintenance: (node: HaNode, enter: boolean) => void;
}) {
  const allowed = may(signedIn, 'node.maintenance', ha.privileges);
  return (
    <div className="ha-table-frame">
      <table className="ha-nodes" data-testid="ha-nodes">
        <caption>Nodes of {ha.remote}</caption>
        <thead>
          <tr>
            <th scope="col">Node</th>
            <th scope="col">HA state</th>
            <th scope="col">Health</th>
            <th scope="col">Fence</th>
            <th scope="col">Maintenance</th>
          </tr>
        </thead>
        <tbody>
          {ha.nodes.map((node) => {
            const problems = probeProblems(node.health);
            const inMaintenance = node.state === 'maintenance' || node.state === 'draining';
            const blocked = !inMaintenance && node.state !== 'online';
            return (
              <tr key={node.node} data-node={node.node} data-state={node.state}>
                <th scope="row">
                  {node.node}
                  {node.coordinator && <span className="muted"> (coordinator)</span>}
                </th>
                <td>
                  <StateBadge label={NODE_STATE_LABEL[node.state]} />
                  {node.reason && <span className="ha-reason"> {node.reason}</span>}
                  {!node.alive && <span className="muted"> — lease expired</span>}
                </td>
                <td>
                  {scoreInWords(node.health)}
                  {problems.length > 0 && (
                    <ul className="ha-probes">
                      {problems.map((problem) => (
                        <li key={problem}>{problem}</li>
                      ))}
                    </ul>
                  )}
                </td>
                <td>
                  {node.fence && node.fence.state !== 'released' ? (
                    <>
                      {node.fence.state} <Timestamp at={node.fence.at} />
                      {node.fence.blocklisted.length > 0 && (
                        <div className="muted">blocklisted {node.fence.blocklisted.join(', ')}</div>
                      )}
                    </>
                  ) : (
                    <span className="muted">—</span>
                  )}
                </td>
                <td>
                  <ActionButton
                    allowed={allowed}
                    needs="node.maintenance"
                    disabled={blocked}
                    title={blocked ? `The node is ${node.state}` : undefined}
                    onClick={() => onMaintenance(node, !inMaintenance)}
                  >
                    {inMaintenance ? 'End maintenance…' : 'Maintenance…'}
                    <span className="visually-hidden"> {node.node}</span>
                  </ActionButton>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

function Vms({ ha }: { ha: RemoteHa }) {
  if (ha.vms.length === 0)
    return (
      <p className="muted">
        No VM of {ha.remote} is protected by HA yet: protect one from its page (High availability
        section).
      </p>
    );
  return (
    <div className="ha-table-frame">
      <table className="ha-vms" data-testid="ha-vms">
        <caption>HA VMs of {ha.remote}, highest priority first</caption>
        <thead>
          <tr>
            <th scope="col">VM</th>
            <th scope="col">HA state</th>
            <th scope="col">Node</th>
            <th scope="col">Policy</th>
            <th scope="col">Last hour</th>
          </tr>
        </thead>
        <tbody>
          {ha.vms.map((vm) => (
            <tr key={vm.vm} data-vm={vm.vm} data-state={vm.state}>
              <th scope="row">
                <a href={href({ page: 'vm', remote: ha.remote, vmid: vm.vm })}>{vm.name}</a>
              </th>
              <td>
                <StateBadge label={VM_STATE_LABEL[vm.state]} />{' '}
                <span className="ha-reason">{vmDetailsInWords(vm)}</span>
              </td>
              <td>{vm.node || '—'}</td>
              <td>{policyInWords(vm.policy)}</td>
              <td>
                {vm.relocations} moved, {vm.restarts} restarted
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function RemoteDetails({ signedIn, remote }: { signedIn: SignedIn; remote: string }) {
  const ha = useRemoteHa(remote);
  const queryClient = useQueryClient();
  const maintenance = useMaintenance(remote);
  const task = useTaskFollow(() => void queryClient.invalidateQueries({ queryKey: haKeys.all }));
  const [asking, setAsking] = useState<{ node: HaNode; enter: boolean } | null>(null);
  const headingId = useId();
  const refused = ha.error instanceof ApiError && ha.error.status === 403;
  return (
    <section aria-labelledby={headingId} data-testid="ha-remote">
      <h2 id={headingId}>
        {remote}: coordinator {ha.data ? (ha.data.coordinator ?? 'none elected') : '…'}
        {ha.data && <span className="muted"> (fencing epoch {ha.data.fencingEpoch})</span>}
      </h2>
      {refused ? (
        <p className="muted">You may not see this remote.</p>
      ) : (
        <ErrorNote error={ha.error} />
      )}
      {!ha.data && !ha.error && <p className="muted">Loading…</p>}
      {task.view}
      <ErrorNote error={task.error} />
      {ha.data && !ha.data.available && (
        <p className="notice" role="status">
          The HA state of {remote} cannot be read now: {ha.data.error?.message}
        </p>
      )}
      {ha.data?.available && (
        <>
          <Nodes
            signedIn={signedIn}
            ha={ha.data}
            onMaintenance={(node, enter) => setAsking({ node, enter })}
          />
          <Vms ha={ha.data} />
        </>
      )}
      {asking && (
        <ConfirmMutation
          mutation={maintenance}
          variables={{ node: asking.node.node, enter: asking.enter }}
          onDone={(answer) => {
            if ('taskId' in answer) task.follow(answer.taskId, `Draining ${asking.node.node}`);
          }}
          onClose={() => setAsking(null)}
          title={
            asking.enter
              ? `Maintenance of ${asking.node.node}`
              : `End the maintenance of ${asking.node.node}`
          }
          confirmLabel={asking.enter ? 'Drain the node' : 'Return to service'}
        >
          {asking.enter ? (
            <p>
              HA places nothing on {asking.node.node} until its maintenance ends. The cluster
              live-migrates its VMs to other nodes, HA VMs first; the node turns to maintenance once
              none is left, and the drain task shows each move (a VM no node fits stays, and says
              why).
            </p>
          ) : (
            <p>{asking.node.node} takes VMs again; nothing moves back on its own.</p>
          )}
        </ConfirmMutation>
      )}
    </section>
  );
}

/**
 * High availability of every remote: the summary of each (coordinator, nodes and VMs by HA state,
 * what needs attention), and one remote's nodes — HA state, health score and its probes, fence,
 * maintenance — and its HA VMs. Maintenance needs node.maintenance; an auditor sees it disabled.
 */
export function HaPage({ signedIn }: { signedIn: SignedIn }) {
  const overview = useHaOverview();
  const [chosen, setChosen] = useState<string | null>(null);
  const remotes = overview.data?.remotes ?? [];
  const selected = chosen ?? remotes[0]?.remote ?? null;
  return (
    <main className="ha-page">
      <header className="toolbar">
        <h1>High availability</h1>
        <LastUpdated
          at={overview.dataUpdatedAt}
          fetching={overview.isFetching}
          onRefresh={() => void overview.refetch()}
        />
      </header>
      <p className="muted">
        Each cluster heals itself: its coordinator fences a dead node first, then starts the
        node&apos;s protected VMs elsewhere. What it does shows here and as ha.* tasks on the{' '}
        <a href={href({ page: 'tasks' })}>Tasks page</a>.
      </p>
      <ErrorNote error={overview.error} />
      {overview.data && remotes.length === 0 && <p className="muted">No remote to show.</p>}
      {remotes.length > 0 && <Remotes remotes={remotes} selected={selected} onSelect={setChosen} />}
      {selected && <RemoteDetails key={selected} signedIn={signedIn} remote={selected} />}
    </main>
  );
}
