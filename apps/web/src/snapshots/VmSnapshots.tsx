import { useQueryClient } from '@tanstack/react-query';
import { useId, useState, type FormEvent } from 'react';
import { ApiError } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { resourceKeys, type VmDetail } from '../resources/queries';
import { useTaskFollow } from '../tasks/FollowedTask';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { Timestamp } from '../ui/Timestamp';
import {
  useCreateSchedule,
  useCreateSnapshot,
  useDeleteSchedule,
  useDeleteSnapshot,
  useRollbackSnapshot,
} from './mutations';
import {
  snapshotKeys,
  useSnapshotSchedules,
  useVmSnapshots,
  type Schedule,
  type Snapshot,
} from './queries';
import {
  needsStop,
  rollbackLoss,
  SCHEDULE_PRESETS,
  schedulesOfVm,
  scheduleInWords,
} from './snapshot-view';
import './snapshots.css';

/** The dialog asked for: a rollback or a deletion of one snapshot, or a schedule's deletion. */
type Asking =
  | { kind: 'rollback'; snapshot: Snapshot }
  | { kind: 'delete'; snapshot: Snapshot }
  | { kind: 'delete-schedule'; schedule: Schedule };

/** "application" or "crash", with why a snapshot is only crash-consistent. */
function Consistency({ snapshot }: { snapshot: Snapshot }) {
  return (
    <>
      <span className={`badge badge-consistency-${snapshot.consistency}`}>
        {snapshot.consistency === 'application' ? 'application-consistent' : 'crash-consistent'}
      </span>
      {snapshot.consistencyReason && (
        <span className="muted snapshot-reason"> {snapshot.consistencyReason}</span>
      )}
    </>
  );
}

function MadeBy({
  snapshot,
  schedules,
}: {
  snapshot: Snapshot;
  schedules: ReadonlyMap<string, Schedule>;
}) {
  if (snapshot.scheduleId) {
    const schedule = schedules.get(snapshot.scheduleId);
    return (
      <>
        by schedule{' '}
        {schedule ? <strong>{schedule.name}</strong> : <span className="muted">(deleted)</span>}
      </>
    );
  }
  return <>by hand{snapshot.createdBy && <span className="muted"> ({snapshot.createdBy})</span>}</>;
}

/** Take a snapshot now: an optional name, and whether to freeze the guest's filesystems first. */
function CreateSnapshotForm({
  allowed,
  blocked,
  onAccepted,
  remote,
  vmid,
}: {
  allowed: boolean;
  blocked: string | null;
  onAccepted: (taskId: string, name: string) => void;
  remote: string;
  vmid: string;
}) {
  const create = useCreateSnapshot(remote, vmid);
  const [name, setName] = useState('');
  const [freeze, setFreeze] = useState(true);
  const nameId = useId();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate(
      { name: name.trim() || undefined, freeze },
      {
        onSuccess: ({ taskId, snapshot }) => {
          setName('');
          onAccepted(taskId, snapshot);
        },
      },
    );
  };
  return (
    <form className="snapshot-form" onSubmit={submit} aria-label="Take a snapshot">
      <div className="field">
        <label htmlFor={nameId}>Snapshot name</label>
        <input
          id={nameId}
          value={name}
          onChange={(e) => setName(e.target.value)}
          placeholder="manual-<UTC time>"
          aria-describedby={`${nameId}-hint`}
          maxLength={64}
          disabled={!allowed}
        />
        <span id={`${nameId}-hint`} className="muted">
          Optional: letters, digits, dots, underscores, hyphens
        </span>
      </div>
      <label className="inline">
        <input
          type="checkbox"
          checked={freeze}
          disabled={!allowed}
          onChange={(e) => setFreeze(e.target.checked)}
        />
        Freeze the guest&apos;s filesystems first (application-consistent when its guest agent
        answers)
      </label>
      <div>
        <ActionButton
          type="submit"
          allowed={allowed}
          needs="vm.snapshot"
          disabled={create.isPending || blocked !== null}
          title={blocked ?? undefined}
        >
          {create.isPending ? 'Taking…' : 'Take snapshot'}
        </ActionButton>
      </div>
      <ErrorNote error={create.error} />
    </form>
  );
}

/** Add a schedule for this VM: a preset ("hourly, keep 24") or an interval and a retention of one's own. */
function AddScheduleForm({
  allowed,
  remote,
  vmid,
}: {
  allowed: boolean;
  remote: string;
  vmid: string;
}) {
  const create = useCreateSchedule();
  const [preset, setPreset] = useState<string>(SCHEDULE_PRESETS[0].id);
  const [name, setName] = useState<string>(SCHEDULE_PRESETS[0].id);
  const [interval, setEvery] = useState('6h');
  const [keep, setKeep] = useState('8');
  const id = useId();
  const chosen = SCHEDULE_PRESETS.find((p) => p.id === preset);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate(
      {
        name: name.trim(),
        target: { type: 'vm', remote, vm: vmid },
        interval: chosen?.interval ?? interval.trim(),
        keep: chosen?.keep ?? Number(keep),
        freeze: true,
        enabled: true,
      },
      { onSuccess: () => create.reset() },
    );
  };
  return (
    <form className="schedule-form" onSubmit={submit} aria-label="Add a schedule">
      <div className="field">
        <label htmlFor={`${id}-preset`}>Schedule</label>
        <select
          id={`${id}-preset`}
          value={preset}
          disabled={!allowed}
          onChange={(e) => {
            setPreset(e.target.value);
            if (e.target.value !== 'custom') setName(e.target.value);
          }}
        >
          {SCHEDULE_PRESETS.map((p) => (
            <option key={p.id} value={p.id}>
              {p.label}
            </option>
          ))}
          <option value="custom">Other interval…</option>
        </select>
      </div>
      {!chosen && (
        <>
          <div className="field">
            <label htmlFor={`${id}-interval`}>Every</label>
            <input
              id={`${id}-interval`}
              value={interval}
              onChange={(e) => setEvery(e.target.value)}
              aria-describedby={`${id}-interval-hint`}
              size={6}
              disabled={!allowed}
            />
            <span id={`${id}-interval-hint`} className="muted">
              15m, 6h, 2d
            </span>
          </div>
          <div className="field">
            <label htmlFor={`${id}-keep`}>Keep</label>
            <input
              id={`${id}-keep`}
              type="number"
              min={1}
              max={10000}
              value={keep}
              onChange={(e) => setKeep(e.target.value)}
              disabled={!allowed}
            />
          </div>
        </>
      )}
      <div className="field">
        <label htmlFor={`${id}-name`}>Schedule name</label>
        <input
          id={`${id}-name`}
          value={name}
          onChange={(e) => setName(e.target.value)}
          maxLength={64}
          size={12}
          disabled={!allowed}
        />
      </div>
      <div>
        <ActionButton
          type="submit"
          allowed={allowed}
          needs="vm.snapshot"
          disabled={create.isPending || name.trim() === ''}
        >
          Add schedule
        </ActionButton>
      </div>
      <ErrorNote error={create.error} />
    </form>
  );
}

/**
 * The VM page's Snapshots section: the VM's snapshots (when, how consistent, by whom), taking one,
 * deleting one, rolling back with a confirmation that names what is lost; and the schedules that
 * snapshot it. Each change is a task, followed here until it ends.
 */
export function VmSnapshots({ signedIn, vm }: { signedIn: SignedIn; vm: VmDetail }) {
  const { remote, id: vmid } = vm;
  const queryClient = useQueryClient();
  const snapshots = useVmSnapshots(remote, vmid);
  const schedules = useSnapshotSchedules();
  const rollback = useRollbackSnapshot(remote, vmid);
  const remove = useDeleteSnapshot(remote, vmid);
  const removeSchedule = useDeleteSchedule();
  const [asking, setAsking] = useState<Asking | null>(null);
  const [stopFirst, setStopFirst] = useState(false);
  const headingId = useId();
  const task = useTaskFollow(() => {
    void queryClient.invalidateQueries({ queryKey: snapshotKeys.vm(remote, vmid) });
    void queryClient.invalidateQueries({ queryKey: resourceKeys.vm(remote, vmid) });
    void queryClient.invalidateQueries({ queryKey: resourceKeys.vmTasks(remote, vmid) });
  });

  const maySnapshot = may(signedIn, 'vm.snapshot', vm.privileges);
  const mayPower = may(signedIn, 'vm.power', vm.privileges);
  const blocked = vm.lockedBy
    ? `Locked by ${vm.lockedBy}`
    : task.busy
      ? 'A snapshot task is in progress'
      : vm.stale
        ? 'The remote is unreachable'
        : null;
  const refused = snapshots.error instanceof ApiError && snapshots.error.status === 403;
  const byId = new Map((schedules.data?.items ?? []).map((s) => [s.id, s]));
  const own = schedulesOfVm(schedules.data?.items ?? [], vm);

  return (
    <section
      aria-labelledby={headingId}
      className="vm-panel vm-snapshots"
      data-testid="vm-snapshots"
    >
      <h2 id={headingId}>Snapshots</h2>
      <CreateSnapshotForm
        allowed={maySnapshot}
        blocked={blocked}
        remote={remote}
        vmid={vmid}
        onAccepted={(id, name) => task.follow(id, `Snapshot ${name}`)}
      />
      {task.view}
      <ErrorNote error={task.error} />

      {refused ? (
        <p className="muted">You may not see the snapshots of this VM.</p>
      ) : (
        <ErrorNote error={snapshots.error} />
      )}
      {snapshots.isPending && <p className="muted">Loading…</p>}
      {snapshots.data && (
        <>
          <p className="muted" data-testid="snapshot-quota">
            {snapshots.data.quota.used} of your {snapshots.data.quota.limit} snapshots of this VM
            used.
          </p>
          {snapshots.data.items.length === 0 ? (
            <p className="muted">No snapshots yet.</p>
          ) : (
            <table className="detail-table snapshot-table">
              <caption className="visually-hidden">Snapshots of {vm.name}, oldest first</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Taken</th>
                  <th scope="col">Consistency</th>
                  <th scope="col">Made</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {snapshots.data.items.map((snapshot) => (
                  <tr key={snapshot.name} data-testid="snapshot-row" data-snapshot={snapshot.name}>
                    <th scope="row">
                      {snapshot.name}
                      {snapshot.group && (
                        <span className="muted"> ({snapshot.disks.length} disks at one point)</span>
                      )}
                      {snapshot.description && <div className="muted">{snapshot.description}</div>}
                    </th>
                    <td>
                      <Timestamp at={snapshot.createdAt} />
                    </td>
                    <td>
                      <Consistency snapshot={snapshot} />
                    </td>
                    <td>
                      <MadeBy snapshot={snapshot} schedules={byId} />
                    </td>
                    <td>
                      <div className="actions row-actions">
                        <ActionButton
                          allowed={maySnapshot}
                          needs="vm.snapshot"
                          disabled={blocked !== null}
                          title={blocked ?? undefined}
                          aria-label={`Roll back to ${snapshot.name}`}
                          onClick={() => {
                            setStopFirst(false);
                            setAsking({ kind: 'rollback', snapshot });
                          }}
                        >
                          Roll back…
                        </ActionButton>
                        <ActionButton
                          allowed={maySnapshot}
                          needs="vm.snapshot"
                          disabled={blocked !== null}
                          title={blocked ?? undefined}
                          aria-label={`Delete ${snapshot.name}`}
                          className="danger-outline"
                          onClick={() => setAsking({ kind: 'delete', snapshot })}
                        >
                          Delete…
                        </ActionButton>
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}

      <h3>Schedules</h3>
      <ErrorNote error={schedules.error} />
      {schedules.data && own.length === 0 && (
        <p className="muted">No schedule takes snapshots of this VM.</p>
      )}
      {own.length > 0 && (
        <table className="detail-table schedule-table">
          <caption className="visually-hidden">Schedules that snapshot {vm.name}</caption>
          <thead>
            <tr>
              <th scope="col">Schedule</th>
              <th scope="col">When</th>
              <th scope="col">Next run</th>
              <th scope="col">Last run</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {own.map(({ schedule, through }) => (
              <tr key={schedule.id} data-testid="schedule-row" data-schedule={schedule.name}>
                <th scope="row">
                  {schedule.name}
                  {!schedule.enabled && <span className="muted"> (paused)</span>}
                  {through && <div className="muted">for all VMs with {through}</div>}
                </th>
                <td>{scheduleInWords(schedule)}</td>
                <td>{schedule.enabled ? <Timestamp at={schedule.nextRunAt} /> : '—'}</td>
                <td>
                  <Timestamp at={schedule.lastRunAt} />
                </td>
                <td>
                  {through === null && (
                    <ActionButton
                      allowed={maySnapshot}
                      needs="vm.snapshot"
                      className="danger-outline"
                      aria-label={`Delete schedule ${schedule.name}`}
                      onClick={() => setAsking({ kind: 'delete-schedule', schedule })}
                    >
                      Delete…
                    </ActionButton>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <AddScheduleForm allowed={maySnapshot} remote={remote} vmid={vmid} />

      {asking?.kind === 'rollback' && (
        <ConfirmMutation
          mutation={rollback}
          variables={{ snapshot: asking.snapshot.name, stopFirst }}
          onDone={({ taskId }) => task.follow(taskId, `Rollback to ${asking.snapshot.name}`)}
          onClose={() => setAsking(null)}
          title={`Roll ${vm.name} back to ${asking.snapshot.name}?`}
          confirmLabel="Roll back"
          confirmDisabled={needsStop(vm.status) && !stopFirst}
          danger
        >
          <div data-testid="rollback-loss">
            {rollbackLoss(asking.snapshot, vm, stopFirst).map((line) => (
              <p key={line}>{line}</p>
            ))}
          </div>
          {needsStop(vm.status) && (
            <label
              className="inline dialog-check"
              title={mayPower ? undefined : 'Needs the vm.power privilege'}
            >
              <input
                type="checkbox"
                checked={stopFirst}
                disabled={!mayPower}
                onChange={(e) => setStopFirst(e.target.checked)}
              />
              Stop the VM first
            </label>
          )}
        </ConfirmMutation>
      )}
      {asking?.kind === 'delete' && (
        <ConfirmMutation
          mutation={remove}
          variables={asking.snapshot.name}
          onDone={({ taskId }) => task.follow(taskId, `Deleting ${asking.snapshot.name}`)}
          onClose={() => setAsking(null)}
          title={`Delete snapshot ${asking.snapshot.name}?`}
          confirmLabel="Delete"
          danger
        >
          <p>
            The snapshot of{' '}
            {asking.snapshot.disks.length === 1
              ? 'its disk'
              : `its ${asking.snapshot.disks.length} disks`}{' '}
            goes: {vm.name} can no longer be rolled back to it. The VM itself is not changed.
          </p>
        </ConfirmMutation>
      )}
      {asking?.kind === 'delete-schedule' && (
        <ConfirmMutation
          mutation={removeSchedule}
          variables={asking.schedule.id}
          onClose={() => setAsking(null)}
          title={`Delete schedule ${asking.schedule.name}?`}
          confirmLabel="Delete"
          danger
        >
          <p>
            No more snapshots are taken by it ({scheduleInWords(asking.schedule)}). The snapshots it
            took stay until you delete them.
          </p>
        </ConfirmMutation>
      )}
    </section>
  );
}
