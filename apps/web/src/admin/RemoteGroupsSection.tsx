import { useState, type FormEvent } from 'react';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import {
  createRemoteGroupBody,
  remoteGroupProblems,
  updateRemoteGroupBody,
  type RemoteGroupForm,
} from './access-forms';
import { useCreateRemoteGroup, useDeleteRemoteGroup, useUpdateRemoteGroup } from './mutations';
import { Loaded, Problems, Refresh, SelectField, TextField } from './parts';
import { useRemoteGroups, useRemotes, type Remote, type RemoteGroup } from './queries';

/** Create or edit a remote group: for each remote, which of its credentials the manager acts with. */
function RemoteGroupEditor({
  group,
  remotes,
  allowed,
  onDone,
}: {
  group: RemoteGroup | null;
  remotes: Remote[];
  allowed: boolean;
  onDone: () => void;
}) {
  const [form, setForm] = useState<RemoteGroupForm>(() =>
    group
      ? { id: group.id, comment: group.comment, entries: group.entries.map((e) => ({ ...e })) }
      : { id: '', comment: '', entries: [] },
  );
  const [problems, setProblems] = useState<string[]>([]);
  const create = useCreateRemoteGroup();
  const update = useUpdateRemoteGroup();
  const pending = create.isPending || update.isPending;
  const setEntry = (index: number, patch: Partial<RemoteGroupForm['entries'][number]>) =>
    setForm((f) => ({
      ...f,
      entries: f.entries.map((e, i) => (i === index ? { ...e, ...patch } : e)),
    }));
  const credentialsOf = (remote: string) =>
    remotes.find((r) => r.id === remote)?.credentials.map((c) => c.name) ?? [];

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = remoteGroupProblems(form, group === null);
    setProblems(found);
    if (found.length > 0) return;
    if (group)
      update.mutate({ group: group.id, body: updateRemoteGroupBody(form) }, { onSuccess: onDone });
    else create.mutate(createRemoteGroupBody(form), { onSuccess: onDone });
  };

  const title = group ? `Edit remote group ${group.id}` : 'New remote group';
  return (
    <form className="admin-form panel-wide" aria-label={title} onSubmit={submit}>
      <h3>{title}</h3>
      <fieldset disabled={pending}>
        <div className="grid-2">
          {group === null && (
            <TextField
              label="Remote group id"
              value={form.id}
              onChange={(id) => setForm((f) => ({ ...f, id }))}
              autoComplete="off"
              required
            />
          )}
          <TextField
            label="Comment"
            value={form.comment}
            onChange={(comment) => setForm((f) => ({ ...f, comment }))}
            autoComplete="off"
          />
        </div>
        <fieldset>
          <legend>Entries</legend>
          {form.entries.length === 0 && <p className="muted">No remote in this group yet.</p>}
          {form.entries.map((entry, i) => (
            <div key={i} className="entry-row">
              <SelectField
                label={`Entry ${i + 1} remote`}
                value={entry.remote}
                onChange={(remote) =>
                  setEntry(i, { remote, credential: credentialsOf(remote)[0] ?? '' })
                }
                options={[
                  { value: '', label: 'Choose a remote' },
                  ...remotes.map((r) => ({ value: r.id, label: r.id })),
                ]}
              />
              <SelectField
                label={`Entry ${i + 1} credential`}
                value={entry.credential}
                onChange={(credential) => setEntry(i, { credential })}
                options={[
                  { value: '', label: 'Choose a credential' },
                  ...credentialsOf(entry.remote).map((c) => ({ value: c, label: c })),
                ]}
              />
              <button
                type="button"
                className="link"
                onClick={() =>
                  setForm((f) => ({ ...f, entries: f.entries.filter((_, j) => j !== i) }))
                }
              >
                Drop entry {i + 1}
              </button>
            </div>
          ))}
          <button
            type="button"
            className="link"
            onClick={() =>
              setForm((f) => ({ ...f, entries: [...f.entries, { remote: '', credential: '' }] }))
            }
          >
            Another entry
          </button>
        </fieldset>
        <Problems problems={problems} />
        <ErrorNote error={create.error ?? update.error} />
        <div className="actions">
          <ActionButton allowed={allowed} needs="remote.modify" type="submit" className="primary">
            {pending ? 'Saving…' : group ? 'Save remote group' : 'Create remote group'}
          </ActionButton>
          <button type="button" onClick={onDone}>
            Cancel
          </button>
        </div>
      </fieldset>
    </form>
  );
}

/** Remote groups: which credential the manager acts with on each remote, for roles granted on /groups/{id}. */
export function RemoteGroupsSection({ signedIn }: { signedIn: SignedIn }) {
  const groups = useRemoteGroups();
  const remotes = useRemotes();
  const remove = useDeleteRemoteGroup();
  const [editing, setEditing] = useState<RemoteGroup | 'new' | null>(null);
  const [removing, setRemoving] = useState<string | null>(null);
  const allowed = may(signedIn, 'remote.modify');

  return (
    <section aria-labelledby="admin-remote-groups">
      <div className="toolbar">
        <h2 id="admin-remote-groups">Remote groups</h2>
        <Refresh queries={[groups, remotes]} />
        <ActionButton
          allowed={allowed}
          needs="remote.modify"
          onClick={() => setEditing('new')}
          disabled={editing === 'new'}
        >
          New remote group…
        </ActionButton>
      </div>
      <p className="muted">
        A role granted on <code>/groups/&lt;id&gt;</code> holds on each remote of the group, and the
        manager then acts there with the entry&apos;s credential: the effective right is the role
        intersected with what that key may do on the cluster.
      </p>
      {editing !== null && (
        <RemoteGroupEditor
          key={editing === 'new' ? 'new' : editing.id}
          group={editing === 'new' ? null : editing}
          remotes={remotes.data ?? []}
          allowed={allowed}
          onDone={() => setEditing(null)}
        />
      )}
      <Loaded query={groups}>
        {(items) =>
          items.length === 0 ? (
            <p className="muted">No remote groups yet.</p>
          ) : (
            <table>
              <caption className="visually-hidden">Remote groups</caption>
              <thead>
                <tr>
                  <th scope="col">Remote group</th>
                  <th scope="col">Remote → credential</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {items.map((g) => (
                  <tr key={g.id} data-testid="remote-group-row">
                    <th scope="row">
                      {g.id}
                      {g.comment && <div className="muted">{g.comment}</div>}
                    </th>
                    <td>
                      {g.entries.length === 0 ? (
                        <span className="muted">no remotes</span>
                      ) : (
                        <ul className="plain">
                          {g.entries.map((e) => (
                            <li key={e.remote}>
                              {e.remote} → {e.credential}
                            </li>
                          ))}
                        </ul>
                      )}
                    </td>
                    <td>
                      <span className="actions">
                        <ActionButton
                          allowed={allowed}
                          needs="remote.modify"
                          onClick={() => setEditing(g)}
                          aria-label={`Edit remote group ${g.id}`}
                        >
                          Edit
                        </ActionButton>
                        <ActionButton
                          allowed={allowed}
                          needs="remote.modify"
                          onClick={() => setRemoving(g.id)}
                          aria-label={`Delete remote group ${g.id}`}
                        >
                          Delete
                        </ActionButton>
                      </span>
                    </td>
                  </tr>
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
          onClose={() => setRemoving(null)}
          title={`Delete remote group ${removing}?`}
          confirmLabel="Delete remote group"
          danger
        >
          <p>Roles granted on /groups/{removing} no longer reach its remotes.</p>
        </ConfirmMutation>
      )}
    </section>
  );
}
