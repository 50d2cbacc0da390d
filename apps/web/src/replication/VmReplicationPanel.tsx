import { useQueryClient } from '@tanstack/react-query';
import { useId, useState, type FormEvent } from 'react';
import { ApiError } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { useResourceTree, type VmDetail } from '../resources/queries';
import { useTaskFollow } from '../tasks/FollowedTask';
import { ActionButton } from '../ui/ActionButton';
import { ErrorNote } from '../ui/ErrorNote';
import { Timestamp } from '../ui/Timestamp';
import { href } from '../view';
import { useEnableReplication } from './mutations';
import { replicationKeys, usePairs, useReplicatedVms, useVmReplication } from './queries';
import { healthInWords, rolesInWords, rpoInWords, rpoLevel } from './replication-view';
import './replication.css';

/** Mirror this VM to the remote paired with its own: the remote, how often a mirror snapshot is taken, the RPO to keep. */
function EnableForm({
  signedIn,
  vm,
  onTask,
}: {
  signedIn: SignedIn;
  vm: VmDetail;
  onTask: (taskId: string) => void;
}) {
  const pairs = usePairs(may(signedIn, 'remote.audit'));
  const enable = useEnableReplication(vm.remote, vm.id);
  const paired = (pairs.data?.items ?? [])
    .filter(
      (pair) =>
        pair.state === 'paired' && (pair.remoteA === vm.remote || pair.remoteB === vm.remote),
    )
    .map((pair) => (pair.remoteA === vm.remote ? pair.remoteB : pair.remoteA));
  // Without a pair (or without remote.audit to see them): the other remotes, and the manager says what is missing.
  const tree = useResourceTree();
  const others = (tree.data?.remotes ?? [])
    .map((r) => r.remote)
    .filter((remote) => remote !== vm.remote);
  const offered = paired.length > 0 ? paired : others;
  const [target, setTarget] = useState('');
  const [interval, setEvery] = useState('5m');
  const [rpoMinutes, setRpoMinutes] = useState('15');
  const id = useId();
  const allowed = may(signedIn, 'vm.replicate', vm.privileges);
  const chosen = target || offered[0] || '';
  const submit = (event: FormEvent) => {
    event.preventDefault();
    enable.mutate(
      {
        targetRemote: chosen.trim(),
        scheduleInterval: interval.trim(),
        rpoTargetSeconds: Math.round(Number(rpoMinutes) * 60),
      },
      { onSuccess: ({ taskId }) => onTask(taskId) },
    );
  };
  return (
    <form className="replication-form" onSubmit={submit} aria-label="Enable replication">
      <div className="field">
        <label htmlFor={`${id}-target`}>Mirror to remote</label>
        <select
          id={`${id}-target`}
          value={chosen}
          onChange={(e) => setTarget(e.target.value)}
          disabled={!allowed || offered.length === 0}
        >
          {offered.map((remote) => (
            <option key={remote} value={remote}>
              {remote}
            </option>
          ))}
        </select>
      </div>
      <div className="field">
        <label htmlFor={`${id}-interval`}>Mirror snapshot every</label>
        <input
          id={`${id}-interval`}
          value={interval}
          onChange={(e) => setEvery(e.target.value)}
          size={5}
          disabled={!allowed}
        />
      </div>
      <div className="field">
        <label htmlFor={`${id}-rpo`}>RPO target (minutes)</label>
        <input
          id={`${id}-rpo`}
          type="number"
          min={1}
          max={43200}
          value={rpoMinutes}
          onChange={(e) => setRpoMinutes(e.target.value)}
          disabled={!allowed}
        />
      </div>
      <div>
        <ActionButton
          type="submit"
          allowed={allowed}
          needs="vm.replicate"
          disabled={enable.isPending || chosen.trim() === ''}
        >
          Enable replication
        </ActionButton>
      </div>
      {pairs.data && paired.length === 0 && (
        <p className="muted form-note">
          No pool of {vm.remote} is paired with another remote yet: pair them on the{' '}
          <a href={href({ page: 'replication' })}>Replication page</a> first.
        </p>
      )}
      <ErrorNote error={enable.error} />
    </form>
  );
}

/** The VM page's Replication section: its DR state and RPO when mirrored (actions on the Replication page), else enabling it. */
export function VmReplicationPanel({ signedIn, vm }: { signedIn: SignedIn; vm: VmDetail }) {
  const queryClient = useQueryClient();
  // The list says whether it is mirrored: asking for the one VM's mirroring would answer a 404
  // (a console error on every VM page) when it is not.
  const listed = useReplicatedVms();
  const mirrored = listed.data ? listed.data.items.some((item) => item.vm === vm.id) : undefined;
  const replication = useVmReplication(vm.remote, vm.id, mirrored === true);
  const task = useTaskFollow(
    () => void queryClient.invalidateQueries({ queryKey: replicationKeys.all }),
  );
  const headingId = useId();
  const row = mirrored === false ? null : mirrored ? replication.data : undefined;
  const error = listed.error ?? (mirrored ? replication.error : null);
  const refused = error instanceof ApiError && error.status === 403;
  return (
    <section
      aria-labelledby={headingId}
      className="vm-panel vm-replication"
      data-testid="vm-replication"
    >
      <h2 id={headingId}>Replication</h2>
      {refused ? (
        <p className="muted">You may not see the replication of this VM.</p>
      ) : (
        <ErrorNote error={error} />
      )}
      {!error && row === undefined && <p className="muted">Loading…</p>}
      {row === null && (
        <>
          <p className="muted">Not mirrored to another remote.</p>
          <EnableForm
            signedIn={signedIn}
            vm={vm}
            onTask={(taskId) => task.follow(taskId, 'Enabling replication')}
          />
        </>
      )}
      {row && (
        <dl className="fields">
          <div>
            <dt>DR state</dt>
            <dd>{rolesInWords(row)}</dd>
          </div>
          <div>
            <dt>RPO</dt>
            <dd className={`rpo-${rpoLevel(row)}`}>{rpoInWords(row)}</dd>
          </div>
          <div>
            <dt>Last mirrored</dt>
            <dd>
              <Timestamp at={row.lastMirroredSnapshotAt} />
            </dd>
          </div>
          <div>
            <dt>Mirroring</dt>
            <dd>
              {healthInWords(row.health)} (every {row.scheduleInterval}) —{' '}
              <a href={href({ page: 'replication' })}>
                switch over, fail over, resync on the Replication page
              </a>
            </dd>
          </div>
        </dl>
      )}
      {task.view}
      <ErrorNote error={task.error} />
    </section>
  );
}
