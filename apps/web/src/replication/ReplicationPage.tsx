import { useQueryClient } from '@tanstack/react-query';
import { Fragment, useId, useState, type FormEvent } from 'react';
import { ApiError } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { useResourceTree, useVm } from '../resources/queries';
import { useTaskFollow } from '../tasks/FollowedTask';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { formatDuration, formatRate } from '../ui/format';
import { LastUpdated } from '../ui/LastUpdated';
import { Timestamp } from '../ui/Timestamp';
import { href } from '../view';
import { FailoverDialog } from './FailoverDialog';
import { useCreatePair, useDeletePair, useDrAction, type DrAction } from './mutations';
import {
  replicationKeys,
  usePairs,
  useReplicatedVms,
  useVmReplication,
  type Pair,
  type PoolHealth,
  type VmReplication,
} from './queries';
import {
  healthInWords,
  otherRemote,
  pendingInWords,
  rolesInWords,
  rpoInWords,
  rpoLevel,
} from './replication-view';
import './replication.css';

/** One side of a pair: its pool's mirroring health in words. */
function PoolHealthCell({ health }: { health: PoolHealth | undefined }) {
  if (!health) return <span className="muted">not read</span>;
  if (!health.reachable)
    return <span className="rpo-over">unreachable{health.error && `: ${health.error}`}</span>;
  const word = health.health.toUpperCase();
  return (
    <>
      <span className={`badge badge-health-${word.toLowerCase()}`}>{word}</span>
      <span className="muted">
        {' '}
        daemon {health.daemonHealth.toLowerCase()}, images {health.imageHealth.toLowerCase()}
        {Object.keys(health.states).length > 0 &&
          ` (${Object.entries(health.states)
            .map(([state, n]) => `${n} ${state}`)
            .join(', ')})`}
      </span>
    </>
  );
}

/** Pair two remotes' pools (Admin): the pairing is a task; the bootstrap secret never reaches the browser. */
function PairForm({
  remotes,
  onTask,
}: {
  remotes: readonly string[];
  onTask: (taskId: string) => void;
}) {
  const create = useCreatePair();
  // Until chosen, the first remote and the next other one (the list may arrive after the form opens).
  const [chosenA, setRemoteA] = useState('');
  const [chosenB, setRemoteB] = useState('');
  const remoteA = chosenA || remotes[0] || '';
  const remoteB = chosenB || remotes.find((remote) => remote !== remoteA) || '';
  const [poolA, setPoolA] = useState('rbd');
  const [poolB, setPoolB] = useState('rbd');
  const id = useId();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate(
      { remoteA, poolA: poolA.trim(), remoteB, poolB: poolB.trim() },
      { onSuccess: ({ taskId }) => onTask(taskId) },
    );
  };
  const choices = (value: string, onChange: (v: string) => void, label: string, key: string) => (
    <div className="field">
      <label htmlFor={`${id}-${key}`}>{label}</label>
      <select id={`${id}-${key}`} value={value} onChange={(e) => onChange(e.target.value)}>
        {remotes.map((remote) => (
          <option key={remote} value={remote}>
            {remote}
          </option>
        ))}
      </select>
    </div>
  );
  return (
    <form className="pair-form" onSubmit={submit} aria-label="Pair two remotes">
      {choices(remoteA, setRemoteA, 'Remote A', 'a')}
      <div className="field">
        <label htmlFor={`${id}-pa`}>Pool at A</label>
        <input id={`${id}-pa`} value={poolA} onChange={(e) => setPoolA(e.target.value)} size={10} />
      </div>
      {choices(remoteB, setRemoteB, 'Remote B', 'b')}
      <div className="field">
        <label htmlFor={`${id}-pb`}>Pool at B</label>
        <input id={`${id}-pb`} value={poolB} onChange={(e) => setPoolB(e.target.value)} size={10} />
      </div>
      <div>
        <ActionButton
          type="submit"
          allowed
          needs="remote.modify"
          disabled={create.isPending || remoteA === '' || remoteA === remoteB}
        >
          {create.isPending ? 'Pairing…' : 'Pair'}
        </ActionButton>
      </div>
      <p className="muted form-note">
        A&apos;s agents create a peer bootstrap token and B&apos;s import it; the token carries a
        Ceph key and passes through the manager in memory only.
      </p>
      <ErrorNote error={create.error} />
    </form>
  );
}

function PairsSection({
  signedIn,
  onTask,
}: {
  signedIn: SignedIn;
  onTask: (taskId: string, label: string) => void;
}) {
  const readable = may(signedIn, 'remote.audit');
  const pairs = usePairs(readable);
  const tree = useResourceTree();
  const remove = useDeletePair();
  const [adding, setAdding] = useState(false);
  const [deleting, setDeleting] = useState<Pair | null>(null);
  const mayPair = may(signedIn, 'remote.modify');
  const remotes = (tree.data?.remotes ?? []).map((r) => r.remote);
  return (
    <section aria-labelledby="pairs-heading">
      <div className="toolbar">
        <h2 id="pairs-heading">Remote pairs</h2>
        <ActionButton
          allowed={mayPair}
          needs="remote.modify"
          onClick={() => setAdding((open) => !open)}
          aria-expanded={adding}
        >
          Pair remotes…
        </ActionButton>
      </div>
      {adding && mayPair && (
        <PairForm
          remotes={remotes}
          onTask={(taskId) => {
            setAdding(false);
            onTask(taskId, 'Pairing');
          }}
        />
      )}
      {!readable && <p className="muted">Seeing the pairs needs the remote.audit privilege.</p>}
      <ErrorNote error={pairs.error} />
      {readable && pairs.isPending && (
        <p className="muted">Reading the pairs and their pools&apos; health…</p>
      )}
      {pairs.data && pairs.data.items.length === 0 && (
        <p className="muted">No remotes are paired yet.</p>
      )}
      {pairs.data && pairs.data.items.length > 0 && (
        <table className="detail-table pair-table">
          <caption className="visually-hidden">
            Pairs of remotes&apos; pools mirrored to each other, with each pool&apos;s health
          </caption>
          <thead>
            <tr>
              <th scope="col">Pair</th>
              <th scope="col">State</th>
              <th scope="col" className="number">
                VMs
              </th>
              <th scope="col">Pool health at A</th>
              <th scope="col">Pool health at B</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {pairs.data.items.map((pair) => (
              <tr
                key={pair.id}
                data-testid="pair-row"
                data-pair={`${pair.remoteA}/${pair.poolA}-${pair.remoteB}/${pair.poolB}`}
                data-state={pair.state}
              >
                <th scope="row">
                  {pair.remoteA}/{pair.poolA} ⇄ {pair.remoteB}/{pair.poolB}
                </th>
                <td>
                  <span className={`badge badge-pair-${pair.state}`}>{pair.state}</span>
                  {pair.error && <div className="error">{pair.error}</div>}
                  {pair.state === 'pairing' && (
                    <div>
                      <a href={href({ page: 'task', id: pair.taskId })}>pairing task</a>
                    </div>
                  )}
                </td>
                <td className="number">{pair.vms}</td>
                <td>
                  <PoolHealthCell health={pair.health?.a} />
                </td>
                <td>
                  <PoolHealthCell health={pair.health?.b} />
                </td>
                <td>
                  <ActionButton
                    allowed={mayPair}
                    needs="remote.modify"
                    className="danger-outline"
                    disabled={pair.vms > 0}
                    title={
                      pair.vms > 0
                        ? 'VMs still mirror through it: disable their replication first'
                        : undefined
                    }
                    aria-label={`Unpair ${pair.remoteA}/${pair.poolA} and ${pair.remoteB}/${pair.poolB}`}
                    onClick={() => setDeleting(pair)}
                  >
                    Unpair…
                  </ActionButton>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {deleting && (
        <ConfirmMutation
          mutation={remove}
          variables={deleting.id}
          onClose={() => setDeleting(null)}
          title="Unpair these pools?"
          confirmLabel="Unpair"
          danger
        >
          <p>
            {deleting.remoteA}/{deleting.poolA} and {deleting.remoteB}/{deleting.poolB} stop being
            peers: no VM can be mirrored through them until they are paired again.
          </p>
        </ConfirmMutation>
      )}
    </section>
  );
}

const DR_QUESTIONS: Record<
  DrAction,
  {
    title: (row: VmReplication) => string;
    label: string;
    text: (row: VmReplication) => string;
    danger?: boolean;
  }
> = {
  switchover: {
    title: (row) => `Switch ${row.name} over to ${otherRemote(row)}?`,
    label: 'Switch over',
    text: (row) =>
      `A planned switchover loses nothing: ${row.name} is stopped at ${row.primaryRemote}, a final mirror snapshot is taken and synced, ${row.primaryRemote} is demoted, ${otherRemote(row)} promoted, and the VM started there. It is down while this runs.`,
  },
  resync: {
    title: (row) => `Resync ${row.name} from ${row.primaryRemote}?`,
    label: 'Resync',
    text: (row) =>
      `Both sites hold a primary copy (split brain). The copy at ${otherRemote(row)} is demoted and overwritten from ${row.primaryRemote}, where the VM runs: whatever was written at ${otherRemote(row)} after the failover is discarded.`,
    danger: true,
  },
  disable: {
    title: (row) => `Stop mirroring ${row.name}?`,
    label: 'Disable replication',
    text: (row) =>
      `Mirroring of its disks to ${otherRemote(row)} stops and rbd-mirror removes the copy there. The VM keeps running at ${row.primaryRemote}; until it is mirrored again, losing ${row.primaryRemote} loses it.`,
    danger: true,
  },
};

/** The actions on one mirrored VM, with the privileges the caller holds on it (read from the VM at its primary remote). */
function DrActions({
  signedIn,
  row,
  onTask,
}: {
  signedIn: SignedIn;
  row: VmReplication;
  onTask: (taskId: string, label: string) => void;
}) {
  const vm = useVm(row.primaryRemote, row.vm);
  const granted = vm.data?.privileges;
  const action = useDrAction(row.primaryRemote, row.vm);
  const [asking, setAsking] = useState<DrAction | 'failover' | null>(null);
  const mayReplicate = may(signedIn, 'vm.replicate', granted);
  const mayFailover = may(signedIn, 'vm.failover', granted);
  const busy = row.pending
    ? `${row.pending.action} in progress`
    : row.phase !== 'active'
      ? `Replication is ${row.phase}`
      : null;
  const other = otherRemote(row);
  return (
    <div className="actions dr-actions" role="group" aria-label={`DR actions for ${row.name}`}>
      <ActionButton
        allowed={mayReplicate}
        needs="vm.replicate"
        disabled={busy !== null || row.splitBrain}
        title={busy ?? (row.splitBrain ? 'Split brain: resync first' : undefined)}
        onClick={() => setAsking('switchover')}
      >
        Switch over to {other}…
      </ActionButton>
      <ActionButton
        allowed={mayFailover}
        needs="vm.failover"
        className="danger-outline"
        disabled={busy !== null}
        title={busy ?? undefined}
        onClick={() => setAsking('failover')}
      >
        Fail over to {other}…
      </ActionButton>
      <ActionButton
        allowed={mayReplicate}
        needs="vm.replicate"
        disabled={busy !== null || !row.splitBrain}
        title={busy ?? (row.splitBrain ? undefined : 'Only when a split brain is shown')}
        onClick={() => setAsking('resync')}
      >
        Resync…
      </ActionButton>
      <ActionButton
        allowed={mayReplicate}
        needs="vm.replicate"
        className="danger-outline"
        disabled={busy !== null}
        title={busy ?? undefined}
        onClick={() => setAsking('disable')}
      >
        Disable replication…
      </ActionButton>
      {asking === 'failover' && (
        <FailoverDialog
          row={row}
          onTask={(taskId) => onTask(taskId, `Failover of ${row.name}`)}
          onClose={() => setAsking(null)}
        />
      )}
      {asking && asking !== 'failover' && (
        <ConfirmMutation
          mutation={action}
          variables={asking}
          onDone={({ taskId }) => onTask(taskId, `${DR_QUESTIONS[asking].label}: ${row.name}`)}
          onClose={() => setAsking(null)}
          title={DR_QUESTIONS[asking].title(row)}
          confirmLabel={DR_QUESTIONS[asking].label}
          danger={DR_QUESTIONS[asking].danger}
        >
          <p>{DR_QUESTIONS[asking].text(row)}</p>
        </ConfirmMutation>
      )}
    </div>
  );
}

/** Per disk and site: the mirroring state as each cluster reports it. */
function ImagesTable({
  row,
  images,
}: {
  row: VmReplication;
  images: NonNullable<VmReplication['images']>;
}) {
  if (images.length === 0) return <p className="muted">No disk status yet.</p>;
  return (
    <table className="detail-table image-table">
      <caption>Disks of {row.name} at both sites</caption>
      <thead>
        <tr>
          <th scope="col">Image</th>
          <th scope="col">State per site</th>
          <th scope="col">Last mirrored</th>
          <th scope="col" className="number">
            Lag
          </th>
          <th scope="col" className="number">
            Transfer
          </th>
          <th scope="col" className="number">
            Until synced
          </th>
        </tr>
      </thead>
      <tbody>
        {images.map((image) => (
          <tr key={image.image} data-testid="image-row">
            <th scope="row">
              {image.sourcePool}/{image.image}
              {image.splitBrain && <div className="rpo-over">split brain</div>}
            </th>
            <td>
              <ul className="plain">
                {image.sites.map((site) => (
                  <li key={site.remote}>
                    {site.remote}: <code>{site.state}</code>
                    {site.primary === true && ' (primary)'}
                    {!site.reachable && (
                      <span className="rpo-over">
                        {' '}
                        unreachable{site.error && `: ${site.error}`}
                      </span>
                    )}
                  </li>
                ))}
              </ul>
            </td>
            <td>
              <Timestamp at={image.lastMirroredSnapshotAt} />
            </td>
            <td className="number">{formatDuration(image.lagSeconds)}</td>
            <td className="number">{formatRate(image.bytesPerSecond)}</td>
            <td className="number">{formatDuration(image.secondsUntilSynced)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function VmRow({
  signedIn,
  row,
  onTask,
}: {
  signedIn: SignedIn;
  row: VmReplication;
  onTask: (taskId: string, label: string) => void;
}) {
  const [open, setOpen] = useState(false);
  // The per-disk figures are read when the row is opened; the row's own come with the list.
  const detail = useVmReplication(row.source.remote, row.vm, open);
  const images = detail.data?.images;
  const level = rpoLevel(row);
  const pending = pendingInWords(row);
  const detailsId = useId();
  return (
    <Fragment>
      <tr
        data-testid="replication-row"
        data-vm={row.vm}
        data-rpo={level}
        data-state={row.state}
        className={row.splitBrain || level === 'over' ? 'row-alert' : undefined}
      >
        <th scope="row">
          <a href={href({ page: 'vm', remote: row.primaryRemote, vmid: row.vm })}>{row.name}</a>
          {pending && (
            <div className="muted">
              {row.pending ? (
                <a href={href({ page: 'task', id: row.pending.taskId })}>{pending}</a>
              ) : (
                pending
              )}
            </div>
          )}
        </th>
        <td data-testid="dr-state">
          <span className={`badge badge-role-${row.state}`}>{row.state}</span>
          <div className="muted">{rolesInWords(row)}</div>
        </td>
        <td>
          {row.source.remote}/{row.source.pool} → {row.target.remote}/{row.target.pool}
          <div className="muted">runs at {row.primaryRemote}</div>
        </td>
        <td data-testid="rpo" className={`rpo-${level}`}>
          {level === 'over' && <strong>Over target: </strong>}
          {rpoInWords(row)}
          {row.lastMirroredSnapshotAt && (
            <div className="muted">
              last mirrored <Timestamp at={row.lastMirroredSnapshotAt} />
            </div>
          )}
        </td>
        <td className="number">{row.observedAt ? formatDuration(row.lagSeconds) : '—'}</td>
        <td className="number">{row.observedAt ? formatRate(row.bytesPerSecond) : '—'}</td>
        <td
          data-testid="mirror-health"
          className={row.splitBrain || row.health === 'error' ? 'rpo-over' : undefined}
        >
          {healthInWords(row.health)}
        </td>
        <td>
          <button
            type="button"
            className="link"
            aria-expanded={open}
            aria-controls={detailsId}
            onClick={() => setOpen((o) => !o)}
          >
            {open ? 'Hide' : 'Details'}
            <span className="visually-hidden"> of {row.name}</span>
          </button>
        </td>
      </tr>
      {open && (
        <tr className="replication-details" id={detailsId}>
          <td colSpan={8}>
            {row.splitBrain && (
              <p className="notice split-brain" role="status">
                Split brain: the disks are primary at both sites. The VM runs at {row.primaryRemote}
                ; resync to discard the stale copy at {otherRemote(row)}.
              </p>
            )}
            <DrActions signedIn={signedIn} row={row} onTask={onTask} />
            <ErrorNote error={detail.error} />
            {detail.isPending && <p className="muted">Reading both sites…</p>}
            {images && <ImagesTable row={row} images={images} />}
            <p className="muted">
              Mirror snapshots every {row.scheduleInterval}; last change: {row.lastChange} (
              <Timestamp at={row.lastChangeAt} />)
            </p>
          </td>
        </tr>
      )}
    </Fragment>
  );
}

/**
 * The Replication page: which remotes' pools are paired (with their pools' mirroring health), and
 * every mirrored VM the user may see — DR state, where it runs and is mirrored to, RPO against its
 * target, lag, transfer rate, health — with the DR actions: planned switchover, failover (the data
 * at risk first), resync after a split brain, disable.
 */
export function ReplicationPage({ signedIn }: { signedIn: SignedIn }) {
  const vms = useReplicatedVms();
  const queryClient = useQueryClient();
  const task = useTaskFollow(
    () => void queryClient.invalidateQueries({ queryKey: replicationKeys.all }),
  );
  const onTask = (taskId: string, label: string) => task.follow(taskId, label);
  const refused = vms.error instanceof ApiError && vms.error.status === 403;
  const rows = vms.data?.items ?? [];
  return (
    <main className="replication-page">
      <header className="toolbar">
        <h1>Replication</h1>
        <LastUpdated
          at={vms.dataUpdatedAt}
          fetching={vms.isFetching}
          onRefresh={() => void queryClient.invalidateQueries({ queryKey: replicationKeys.all })}
        />
      </header>
      {task.view}
      <ErrorNote error={task.error} />
      <PairsSection signedIn={signedIn} onTask={onTask} />

      <section aria-labelledby="mirrored-heading">
        <h2 id="mirrored-heading">Mirrored VMs</h2>
        {refused ? (
          <p className="muted">You may not see any VM.</p>
        ) : (
          <ErrorNote error={vms.error} />
        )}
        {vms.isPending && <p className="muted">Loading…</p>}
        {vms.data && rows.length === 0 && (
          <p className="muted">
            No VM you may see is mirrored yet. To mirror one, open its page and enable replication
            in its Replication section.
          </p>
        )}
        {rows.length > 0 && (
          <table className="detail-table replication-table">
            <caption className="visually-hidden">Mirrored VMs with their DR state and RPO</caption>
            <thead>
              <tr>
                <th scope="col">VM</th>
                <th scope="col">DR state</th>
                <th scope="col">Source → target</th>
                <th scope="col">RPO</th>
                <th scope="col" className="number">
                  Lag
                </th>
                <th scope="col" className="number">
                  Transfer
                </th>
                <th scope="col">Mirroring</th>
                <th scope="col">
                  <span className="visually-hidden">Details</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <VmRow key={row.vm} signedIn={signedIn} row={row} onTask={onTask} />
              ))}
            </tbody>
          </table>
        )}
      </section>
    </main>
  );
}
