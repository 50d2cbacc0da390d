import { Fragment, useState, type FormEvent } from 'react';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmDialog } from '../ui/ConfirmDialog';
import { ErrorNote } from '../ui/ErrorNote';
import { formatTime } from '../ui/format';
import { createUserBody, membershipChanges, userFormProblems, type UserForm } from './access-forms';
import {
  useCreateUser,
  useDeleteUser,
  useRemoveSecondFactors,
  useResetPassword,
  useSetUserGroups,
  useUnlockUser,
  useIssueEnrolmentCode,
  useUpdateUser,
} from './mutations';
import { CheckField, Loaded, Problems, Refresh, SelectField, TextField } from './parts';
import { useGroups, useRealms, useUsers, type GroupSummary, type User } from './queries';

const NEEDS = 'access.modify';

const emptyUser = (): UserForm => ({
  username: '',
  realm: 'local',
  password: '',
  repeat: '',
  displayName: '',
  email: '',
  requireTfa: false,
  enabled: true,
});

function NewUser({
  realms,
  allowed,
  onDone,
}: {
  realms: string[];
  allowed: boolean;
  onDone: (id: string | null) => void;
}) {
  const [form, setForm] = useState<UserForm>(emptyUser);
  const [problems, setProblems] = useState<string[]>([]);
  const create = useCreateUser();
  const set = (patch: Partial<UserForm>) => setForm((f) => ({ ...f, ...patch }));
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = userFormProblems(form);
    setProblems(found);
    if (found.length === 0)
      create.mutate(createUserBody(form), { onSuccess: (user) => onDone(user.id) });
  };
  const local = form.realm === 'local';
  return (
    <form className="admin-form panel-wide" aria-label="New user" onSubmit={submit}>
      <h3>New user</h3>
      <fieldset disabled={create.isPending}>
        <div className="grid-2">
          <TextField
            label="User name"
            value={form.username}
            onChange={(username) => set({ username })}
            autoComplete="off"
            required
          />
          <SelectField
            label="Realm"
            value={form.realm}
            onChange={(realm) =>
              set({ realm, ...(realm === 'local' ? {} : { password: '', repeat: '' }) })
            }
            options={realms.map((r) => ({ value: r, label: r }))}
          />
          <TextField
            label="Display name"
            value={form.displayName}
            onChange={(displayName) => set({ displayName })}
            autoComplete="off"
          />
          <TextField
            label="E-mail"
            type="email"
            value={form.email}
            onChange={(email) => set({ email })}
            autoComplete="off"
          />
          {local && (
            <>
              <TextField
                label="Initial password"
                type="password"
                value={form.password}
                onChange={(password) => set({ password })}
                autoComplete="new-password"
                hint="Empty: the user can only use API tokens until a password is set"
              />
              <TextField
                label="Repeat the password"
                type="password"
                value={form.repeat}
                onChange={(repeat) => set({ repeat })}
                autoComplete="new-password"
              />
            </>
          )}
        </div>
        {!local && (
          <p className="muted">
            Directory users log in with their directory password; a sync also creates them.
          </p>
        )}
        <CheckField
          label="Require a second factor"
          checked={form.requireTfa}
          onChange={(requireTfa) => set({ requireTfa })}
        />
        <CheckField
          label="Enabled"
          checked={form.enabled}
          onChange={(enabled) => set({ enabled })}
        />
        <Problems problems={problems} />
        <ErrorNote error={create.error} />
        <div className="actions">
          <ActionButton allowed={allowed} needs={NEEDS} type="submit" className="primary">
            {create.isPending ? 'Creating…' : 'Create user'}
          </ActionButton>
          <button type="button" onClick={() => onDone(null)}>
            Cancel
          </button>
        </div>
      </fieldset>
    </form>
  );
}

function ResetPassword({ user, allowed }: { user: User; allowed: boolean }) {
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const [problem, setProblem] = useState<string | null>(null);
  const reset = useResetPassword();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = password === repeat ? null : 'the password and its repetition differ';
    setProblem(found);
    if (!found) {
      reset.mutate(
        { user: user.id, password },
        {
          onSuccess: () => {
            setPassword('');
            setRepeat('');
          },
        },
      );
    }
  };
  return (
    <form className="admin-form" aria-label={`Reset the password of ${user.id}`} onSubmit={submit}>
      <fieldset disabled={reset.isPending || !allowed}>
        <legend>Reset password</legend>
        <div className="grid-2">
          <TextField
            label="New password"
            type="password"
            value={password}
            onChange={setPassword}
            autoComplete="new-password"
            required
          />
          <TextField
            label="Repeat the new password"
            type="password"
            value={repeat}
            onChange={setRepeat}
            autoComplete="new-password"
            required
          />
        </div>
        <Problems problems={problem ? [problem] : []} />
        <ErrorNote error={reset.error} />
        {reset.isSuccess && (
          <p role="status" className="muted">
            Password set; the user&apos;s sessions were ended.
          </p>
        )}
        <div className="actions">
          <ActionButton allowed={allowed} needs={NEEDS} type="submit">
            {reset.isPending ? 'Setting…' : 'Set password'}
          </ActionButton>
        </div>
      </fieldset>
    </form>
  );
}

/** The user's locally managed groups: tick to join, untick to leave (memberships a realm manages are shown, not changed). */
function Memberships({
  user,
  groups,
  allowed,
}: {
  user: User;
  groups: GroupSummary[];
  allowed: boolean;
}) {
  const local = user.groups.filter((g) => g.source === 'local').map((g) => g.id);
  const fromRealm = user.groups.filter((g) => g.source !== 'local');
  const [wanted, setWanted] = useState<string[]>(local);
  const save = useSetUserGroups();
  const changes = membershipChanges(local, wanted);
  const changed = changes.join.length + changes.leave.length > 0;
  return (
    <form
      className="admin-form"
      aria-label={`Groups of ${user.id}`}
      onSubmit={(event) => {
        event.preventDefault();
        save.mutate({ user: user.id, ...changes });
      }}
    >
      <fieldset disabled={save.isPending || !allowed}>
        <legend>Groups</legend>
        {groups.length === 0 && <p className="muted">No groups yet.</p>}
        <div className="checks">
          {groups.map((g) => (
            <CheckField
              key={g.id}
              label={g.tenant ? `${g.id} (tenant)` : g.id}
              checked={wanted.includes(g.id)}
              onChange={(on) => setWanted((w) => (on ? [...w, g.id] : w.filter((x) => x !== g.id)))}
            />
          ))}
        </div>
        {fromRealm.length > 0 && (
          <p className="muted">
            From the realm (changed by its sync): {fromRealm.map((g) => g.id).join(', ')}
          </p>
        )}
        <ErrorNote error={save.error} />
        <div className="actions">
          <ActionButton allowed={allowed} needs={NEEDS} type="submit" disabled={!changed}>
            {save.isPending ? 'Saving…' : 'Save groups'}
          </ActionButton>
        </div>
      </fieldset>
    </form>
  );
}

type Confirm = { kind: 'delete' | 'disable' | 'factors'; user: string };

function UserDetail({
  user,
  groups,
  allowed,
  self,
  onConfirm,
}: {
  user: User;
  groups: GroupSummary[];
  allowed: boolean;
  self: boolean;
  onConfirm: (c: Confirm) => void;
}) {
  const update = useUpdateUser();
  const unlock = useUnlockUser();
  const enrolmentCode = useIssueEnrolmentCode();
  const locked =
    user.totpLocked || (user.lockedUntil !== null && Date.parse(user.lockedUntil) > Date.now());
  return (
    <div className="user-detail" role="region" aria-label={`Manage ${user.id}`}>
      <dl className="facts">
        <dt>Created</dt>
        <dd>{formatTime(user.createdAt)}</dd>
        <dt>Password</dt>
        <dd>
          {user.hasPassword
            ? `set ${formatTime(user.passwordChangedAt)}`
            : 'none (API tokens only, or the directory)'}
        </dd>
        {user.syncedAt && (
          <>
            <dt>Last listed by the directory</dt>
            <dd>{formatTime(user.syncedAt)}</dd>
          </>
        )}
      </dl>
      <div className="actions">
        {user.enabled ? (
          <ActionButton
            allowed={allowed}
            needs={NEEDS}
            disabled={self}
            onClick={() => onConfirm({ kind: 'disable', user: user.id })}
            title={self ? 'You cannot disable yourself' : undefined}
          >
            Disable
          </ActionButton>
        ) : (
          <ActionButton
            allowed={allowed}
            needs={NEEDS}
            onClick={() => update.mutate({ user: user.id, body: { enabled: true } })}
            disabled={update.isPending}
          >
            Enable
          </ActionButton>
        )}
        <ActionButton
          allowed={allowed}
          needs={NEEDS}
          onClick={() => update.mutate({ user: user.id, body: { requireTfa: !user.requireTfa } })}
          disabled={update.isPending}
        >
          {user.requireTfa ? 'Stop requiring a second factor' : 'Require a second factor'}
        </ActionButton>
        <ActionButton
          allowed={allowed}
          needs={NEEDS}
          onClick={() => unlock.mutate(user.id)}
          disabled={unlock.isPending || !locked}
          title={locked ? undefined : 'Not locked'}
        >
          {unlock.isPending ? 'Unlocking…' : 'Unlock'}
        </ActionButton>
        <ActionButton
          allowed={allowed}
          needs={NEEDS}
          onClick={() => onConfirm({ kind: 'factors', user: user.id })}
        >
          Remove second factors
        </ActionButton>
        <ActionButton
          allowed={allowed}
          needs={NEEDS}
          onClick={() => enrolmentCode.mutate(user.id)}
          disabled={enrolmentCode.isPending}
          title="A one-time code with which the user enrols a required second factor"
        >
          Issue enrolment code
        </ActionButton>
        <ActionButton
          allowed={allowed}
          needs={NEEDS}
          disabled={self}
          onClick={() => onConfirm({ kind: 'delete', user: user.id })}
          title={self ? 'You cannot delete yourself' : undefined}
        >
          Delete user
        </ActionButton>
      </div>
      {enrolmentCode.data && (
        <p role="status" aria-label="Enrolment code">
          One-time enrolment code for {user.id}, shown only now (valid until{' '}
          {formatTime(enrolmentCode.data.expiresAt)}): <code>{enrolmentCode.data.code}</code>
        </p>
      )}
      <ErrorNote error={update.error ?? unlock.error ?? enrolmentCode.error} />
      {allowed ? (
        <>
          {user.realm === 'local' && <ResetPassword user={user} allowed={allowed} />}
          <Memberships
            key={user.groups.map((g) => g.id).join(',')}
            user={user}
            groups={groups}
            allowed={allowed}
          />
        </>
      ) : (
        <p className="muted" role="note">
          Setting a password or changing the groups needs the {NEEDS} privilege.
        </p>
      )}
    </div>
  );
}

function Locks({ user }: { user: User }) {
  const until =
    user.lockedUntil && Date.parse(user.lockedUntil) > Date.now() ? user.lockedUntil : null;
  if (!until && !user.totpLocked) return <span className="muted">none</span>;
  return (
    <>
      {until && <div className="error">password locked until {formatTime(until)}</div>}
      {user.totpLocked && <div className="error">TOTP locked</div>}
    </>
  );
}

/** Users: list with realm, state, second factor, locks and groups; create, enable/disable, reset password, unlock, delete, memberships. */
export function UsersSection({ signedIn }: { signedIn: SignedIn }) {
  const users = useUsers();
  const groups = useGroups();
  const realms = useRealms();
  const [creating, setCreating] = useState(false);
  const [open, setOpen] = useState<string | null>(null);
  const [confirm, setConfirm] = useState<Confirm | null>(null);
  const update = useUpdateUser();
  const remove = useDeleteUser();
  const removeFactors = useRemoveSecondFactors();
  const allowed = may(signedIn, 'access.modify');
  const realmIds = realms.data?.map((r) => r.id) ?? ['local'];

  const closeConfirm = () => {
    update.reset();
    remove.reset();
    removeFactors.reset();
    setConfirm(null);
  };
  const confirmed = () => {
    if (!confirm) return;
    const done = { onSuccess: () => setConfirm(null) };
    if (confirm.kind === 'delete') {
      remove.mutate(confirm.user, {
        onSuccess: () => {
          setOpen(null);
          setConfirm(null);
        },
      });
    } else if (confirm.kind === 'disable')
      update.mutate({ user: confirm.user, body: { enabled: false } }, done);
    else removeFactors.mutate(confirm.user, done);
  };

  return (
    <section aria-labelledby="admin-users">
      <div className="toolbar">
        <h2 id="admin-users">Users</h2>
        <Refresh queries={[users, groups]} />
        <ActionButton
          allowed={allowed}
          needs={NEEDS}
          onClick={() => setCreating(true)}
          disabled={creating}
        >
          New user…
        </ActionButton>
      </div>
      {creating && (
        <NewUser
          realms={realmIds}
          allowed={allowed}
          onDone={(id) => {
            setCreating(false);
            if (id) setOpen(id);
          }}
        />
      )}
      <Loaded query={users}>
        {(items) => (
          <table>
            <caption className="visually-hidden">Users</caption>
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Realm</th>
                <th scope="col">State</th>
                <th scope="col">Second factor</th>
                <th scope="col">Locks</th>
                <th scope="col">Groups</th>
                <th scope="col">
                  <span className="visually-hidden">Details</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((u) => (
                <Fragment key={u.id}>
                  <tr data-testid="user-row" data-user={u.id}>
                    <th scope="row">
                      {u.id}
                      {(u.displayName || u.email) && (
                        <div className="muted">
                          {[u.displayName, u.email].filter(Boolean).join(' · ')}
                        </div>
                      )}
                    </th>
                    <td>{u.realm}</td>
                    <td>
                      <span className={`badge ${u.enabled ? 'badge-ok' : 'badge-stopped'}`}>
                        {u.enabled ? 'enabled' : 'disabled'}
                      </span>
                    </td>
                    <td>{u.requireTfa ? 'required' : 'optional'}</td>
                    <td>
                      <Locks user={u} />
                    </td>
                    <td>
                      {u.groups.length === 0 ? (
                        <span className="muted">none</span>
                      ) : (
                        u.groups.map((g) => (
                          <span
                            key={g.id}
                            className="chip"
                            title={
                              g.source === 'local'
                                ? 'added by an administrator'
                                : `from realm ${g.source}`
                            }
                          >
                            {g.id}
                          </span>
                        ))
                      )}
                    </td>
                    <td>
                      {/* Who may not change users only looks: "Details", and no form opens. */}
                      <button
                        type="button"
                        aria-expanded={open === u.id}
                        onClick={() => setOpen(open === u.id ? null : u.id)}
                        aria-label={`${open === u.id ? 'Close' : allowed ? 'Manage' : 'Details of'} ${u.id}`}
                      >
                        {open === u.id ? 'Close' : allowed ? 'Manage' : 'Details'}
                      </button>
                    </td>
                  </tr>
                  {open === u.id && (
                    <tr className="detail-row">
                      <td colSpan={7}>
                        <UserDetail
                          user={u}
                          groups={groups.data ?? []}
                          allowed={allowed}
                          self={signedIn.user === u.id}
                          onConfirm={setConfirm}
                        />
                      </td>
                    </tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
        )}
      </Loaded>
      {confirm && (
        <ConfirmDialog
          title={
            confirm.kind === 'delete'
              ? `Delete user ${confirm.user}?`
              : confirm.kind === 'disable'
                ? `Disable user ${confirm.user}?`
                : `Remove the second factors of ${confirm.user}?`
          }
          confirmLabel={
            confirm.kind === 'delete'
              ? 'Delete user'
              : confirm.kind === 'disable'
                ? 'Disable'
                : 'Remove second factors'
          }
          danger
          pending={update.isPending || remove.isPending || removeFactors.isPending}
          error={update.error ?? remove.error ?? removeFactors.error}
          onCancel={closeConfirm}
          onConfirm={confirmed}
        >
          <p>
            {confirm.kind === 'delete'
              ? 'The user goes with its API tokens, sessions, group memberships and ACL entries.'
              : confirm.kind === 'disable'
                ? 'Its sessions end at once and its API tokens stop working until it is enabled again.'
                : 'Its authenticator apps, security keys and recovery codes are removed; its next login enrols a new one when a second factor is required.'}
          </p>
        </ConfirmDialog>
      )}
    </section>
  );
}
