import { Fragment, useState, type FormEvent } from 'react';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { createGroupBody, groupFormProblems, type GroupForm } from './access-forms';
import { useCreateGroup, useDeleteGroup, useSetGroupMember, useUpdateGroup } from './mutations';
import { CheckField, Loaded, Problems, Refresh, SelectField, TextField, yesNo } from './parts';
import { useGroup, useGroups, useUsers, type GroupSummary, type User } from './queries';

const NEEDS = 'access.modify';

function NewGroup({ allowed, onDone }: { allowed: boolean; onDone: (id: string | null) => void }) {
  const [form, setForm] = useState<GroupForm>({
    id: '',
    comment: '',
    tenant: false,
    requireTfa: false,
  });
  const [problems, setProblems] = useState<string[]>([]);
  const create = useCreateGroup();
  const set = (patch: Partial<GroupForm>) => setForm((f) => ({ ...f, ...patch }));
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = groupFormProblems(form);
    setProblems(found);
    if (found.length === 0)
      create.mutate(createGroupBody(form), { onSuccess: (group) => onDone(group.id) });
  };
  return (
    <form className="admin-form panel-wide" aria-label="New group" onSubmit={submit}>
      <h3>New group</h3>
      <fieldset disabled={create.isPending}>
        <div className="grid-2">
          <TextField
            label="Group id"
            value={form.id}
            onChange={(id) => set({ id })}
            autoComplete="off"
            required
          />
          <TextField
            label="Comment"
            value={form.comment}
            onChange={(comment) => set({ comment })}
            autoComplete="off"
          />
        </div>
        <CheckField
          label="Tenant"
          checked={form.tenant}
          onChange={(tenant) => set({ tenant })}
          hint="The group's roles hold only on the VMs it owns"
        />
        <CheckField
          label="Members must use a second factor"
          checked={form.requireTfa}
          onChange={(requireTfa) => set({ requireTfa })}
        />
        <Problems problems={problems} />
        <ErrorNote error={create.error} />
        <div className="actions">
          <ActionButton allowed={allowed} needs={NEEDS} type="submit" className="primary">
            {create.isPending ? 'Creating…' : 'Create group'}
          </ActionButton>
          <button type="button" onClick={() => onDone(null)}>
            Cancel
          </button>
        </div>
      </fieldset>
    </form>
  );
}

/** One group: its settings, and its members (locally managed ones can be removed; realm-managed ones change with the realm's sync). */
function GroupDetail({
  summary,
  users,
  allowed,
}: {
  summary: GroupSummary;
  users: User[];
  allowed: boolean;
}) {
  const group = useGroup(summary.id);
  const update = useUpdateGroup();
  const setMember = useSetGroupMember();
  const [comment, setComment] = useState(summary.comment);
  const [tenant, setTenant] = useState(summary.tenant);
  const [requireTfa, setRequireTfa] = useState(summary.requireTfa);
  const [newMember, setNewMember] = useState('');
  const members = group.data?.members ?? [];
  const candidates = users.filter((u) => !members.some((m) => m.user === u.id));

  const save = (event: FormEvent) => {
    event.preventDefault();
    update.mutate({ group: summary.id, body: { comment: comment.trim(), tenant, requireTfa } });
  };
  const add = (event: FormEvent) => {
    event.preventDefault();
    if (newMember)
      setMember.mutate(
        { group: summary.id, user: newMember, member: true },
        { onSuccess: () => setNewMember('') },
      );
  };

  return (
    <div className="group-detail" role="region" aria-label={`Manage group ${summary.id}`}>
      <form className="admin-form" aria-label={`Settings of ${summary.id}`} onSubmit={save}>
        <fieldset disabled={update.isPending || !allowed}>
          <legend>Settings</legend>
          <TextField label="Comment" value={comment} onChange={setComment} autoComplete="off" />
          <CheckField label="Tenant" checked={tenant} onChange={setTenant} />
          <CheckField
            label="Members must use a second factor"
            checked={requireTfa}
            onChange={setRequireTfa}
          />
          <ErrorNote error={update.error} />
          <div className="actions">
            <ActionButton allowed={allowed} needs={NEEDS} type="submit">
              {update.isPending ? 'Saving…' : 'Save group'}
            </ActionButton>
          </div>
        </fieldset>
      </form>
      <div>
        <h4>Members</h4>
        <Loaded query={group}>
          {(detail) =>
            detail.members.length === 0 ? (
              <p className="muted">No members.</p>
            ) : (
              <table className="compact">
                <caption className="visually-hidden">Members of {summary.id}</caption>
                <thead>
                  <tr>
                    <th scope="col">User</th>
                    <th scope="col">Managed by</th>
                    <th scope="col">
                      <span className="visually-hidden">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {detail.members.map((m) => (
                    <tr key={m.user} data-testid="group-member">
                      <th scope="row">{m.user}</th>
                      <td>{m.source === 'local' ? 'an administrator' : `realm ${m.source}`}</td>
                      <td>
                        {m.source === 'local' && (
                          <ActionButton
                            allowed={allowed}
                            needs={NEEDS}
                            onClick={() =>
                              setMember.mutate({ group: summary.id, user: m.user, member: false })
                            }
                            disabled={setMember.isPending}
                            aria-label={`Remove ${m.user} from ${summary.id}`}
                          >
                            Remove
                          </ActionButton>
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )
          }
        </Loaded>
        <form
          className="admin-form inline-form"
          aria-label={`Add a member to ${summary.id}`}
          onSubmit={add}
        >
          <SelectField
            label="User to add"
            value={newMember}
            onChange={setNewMember}
            options={[
              { value: '', label: 'Choose a user' },
              ...candidates.map((u) => ({ value: u.id, label: u.id })),
            ]}
            disabled={setMember.isPending || !allowed}
          />
          <ActionButton
            allowed={allowed}
            needs={NEEDS}
            type="submit"
            disabled={!newMember || setMember.isPending}
          >
            Add member
          </ActionButton>
        </form>
        <ErrorNote error={setMember.error} />
      </div>
    </div>
  );
}

/** Groups: list with tenant flag and member counts; create, settings, members, delete. */
export function GroupsSection({ signedIn }: { signedIn: SignedIn }) {
  const groups = useGroups();
  const users = useUsers();
  const remove = useDeleteGroup();
  const [creating, setCreating] = useState(false);
  const [open, setOpen] = useState<string | null>(null);
  const [removing, setRemoving] = useState<string | null>(null);
  const allowed = may(signedIn, 'access.modify');

  return (
    <section aria-labelledby="admin-groups">
      <div className="toolbar">
        <h2 id="admin-groups">Groups</h2>
        <Refresh queries={[groups, users]} />
        <ActionButton
          allowed={allowed}
          needs={NEEDS}
          onClick={() => setCreating(true)}
          disabled={creating}
        >
          New group…
        </ActionButton>
      </div>
      {creating && (
        <NewGroup
          allowed={allowed}
          onDone={(id) => {
            setCreating(false);
            if (id) setOpen(id);
          }}
        />
      )}
      <Loaded query={groups}>
        {(items) =>
          items.length === 0 ? (
            <p className="muted">No groups yet.</p>
          ) : (
            <table>
              <caption className="visually-hidden">Groups</caption>
              <thead>
                <tr>
                  <th scope="col">Group</th>
                  <th scope="col">Tenant</th>
                  <th scope="col">Second factor</th>
                  <th scope="col">Members</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {items.map((g) => (
                  <Fragment key={g.id}>
                    <tr data-testid="group-row" data-group={g.id}>
                      <th scope="row">
                        {g.id}
                        {g.comment && <div className="muted">{g.comment}</div>}
                      </th>
                      <td>{yesNo(g.tenant)}</td>
                      <td>{g.requireTfa ? 'required' : 'optional'}</td>
                      <td>{g.memberCount}</td>
                      <td>
                        <span className="actions">
                          <button
                            type="button"
                            aria-expanded={open === g.id}
                            onClick={() => setOpen(open === g.id ? null : g.id)}
                            aria-label={`${open === g.id ? 'Close' : 'Manage'} group ${g.id}`}
                          >
                            {open === g.id ? 'Close' : 'Manage'}
                          </button>
                          <ActionButton
                            allowed={allowed}
                            needs={NEEDS}
                            onClick={() => setRemoving(g.id)}
                            aria-label={`Delete group ${g.id}`}
                          >
                            Delete
                          </ActionButton>
                        </span>
                      </td>
                    </tr>
                    {open === g.id && (
                      <tr className="detail-row">
                        <td colSpan={5}>
                          <GroupDetail summary={g} users={users.data ?? []} allowed={allowed} />
                        </td>
                      </tr>
                    )}
                  </Fragment>
                ))}
              </tbody>
            </table>
          )
        }
      </Loaded>
      {removing && (
        <ConfirmMutation
          mutation={remove}
          variables={removing}
          onDone={() => {
            if (open === removing) setOpen(null);
          }}
          onClose={() => setRemoving(null)}
          title={`Delete group ${removing}?`}
          confirmLabel="Delete group"
          danger
        >
          <p>
            Its members lose the roles granted to the group; its ACL entries and group tokens go
            with it.
          </p>
        </ConfirmMutation>
      )}
    </section>
  );
}
