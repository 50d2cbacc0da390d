import type { Role } from '@debvisor/permissions';
import { useId, useState, type FormEvent } from 'react';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { formatTime } from '../ui/format';
import {
  aclFormProblems,
  aclKey,
  aclPathSuggestions,
  PRINCIPAL_TYPES,
  putAclBody,
  ROLES,
  sortAclEntries,
  type AclForm,
  type PrincipalType,
} from './acl-forms';
import { usePutAclEntry, useRevokeAclEntry } from './mutations';
import { CheckField, Loaded, Problems, Refresh, SelectField, TextField } from './parts';
import {
  useAclEntries,
  useGroups,
  useRemoteGroups,
  useRemotes,
  useTokens,
  useUsers,
  type AclEntry,
} from './queries';

const NEEDS = 'access.modify';
const ROLE_MEANING: Record<Role, string> = {
  Audit: 'read everything below the path',
  Manage: 'Audit, and change state: VM power, migration, snapshots, cancelling tasks',
  Admin: 'everything, including configuration',
};

/** The principals of each type, for suggestions (token ids with their names). */
function usePrincipalOptions(
  enabled: boolean,
): Record<PrincipalType, { value: string; label: string }[]> {
  const users = useUsers(enabled);
  const groups = useGroups(enabled);
  const tokens = useTokens(enabled);
  return {
    user: (users.data ?? []).map((u) => ({ value: u.id, label: u.displayName ?? u.id })),
    group: (groups.data ?? []).map((g) => ({
      value: g.id,
      label: g.tenant ? `${g.id} (tenant)` : g.id,
    })),
    token: (tokens.data ?? [])
      .filter((t) => !t.revokedAt)
      .map((t) => ({ value: t.id, label: `${t.display}${t.limited ? ' (limited)' : ''}` })),
  };
}

function NewEntry({
  allowed,
  paths,
  onDone,
}: {
  allowed: boolean;
  paths: string[];
  onDone: () => void;
}) {
  const [form, setForm] = useState<AclForm>({
    path: '/',
    principalType: 'user',
    principal: '',
    role: 'Audit',
    propagate: true,
  });
  const [problems, setProblems] = useState<string[]>([]);
  const put = usePutAclEntry();
  const principals = usePrincipalOptions(true);
  const pathList = useId();
  const principalList = useId();
  const set = (patch: Partial<AclForm>) => setForm((f) => ({ ...f, ...patch }));
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = aclFormProblems(form);
    setProblems(found);
    if (found.length === 0) put.mutate(putAclBody(form), { onSuccess: onDone });
  };
  return (
    <form className="admin-form panel-wide" aria-label="New ACL entry" onSubmit={submit}>
      <h3>New ACL entry</h3>
      <fieldset disabled={put.isPending}>
        <div className="grid-2">
          <TextField
            label="Path"
            value={form.path}
            onChange={(path) => set({ path })}
            list={pathList}
            autoComplete="off"
            required
            hint="/, /remotes/<remote>, /remotes/<remote>/vms/<uuid>, /groups/<remote group>, /access, /system"
          />
          <datalist id={pathList}>
            {paths.map((p) => (
              <option key={p} value={p} />
            ))}
          </datalist>
          <SelectField
            label="Principal type"
            value={form.principalType}
            onChange={(principalType) =>
              set({ principalType: principalType as PrincipalType, principal: '' })
            }
            options={PRINCIPAL_TYPES.map((t) => ({ value: t, label: t }))}
          />
          <TextField
            label="Principal"
            value={form.principal}
            onChange={(principal) => set({ principal })}
            list={principalList}
            autoComplete="off"
            required
            hint={
              form.principalType === 'user'
                ? 'name@realm'
                : form.principalType === 'group'
                  ? 'group id'
                  : 'token id (16 hex digits after dvdm_)'
            }
          />
          <datalist id={principalList}>
            {principals[form.principalType].map((p) => (
              <option key={p.value} value={p.value}>
                {p.label}
              </option>
            ))}
          </datalist>
          <SelectField
            label="Role"
            value={form.role}
            onChange={(role) => set({ role: role as Role })}
            options={ROLES.map((r) => ({ value: r, label: `${r}: ${ROLE_MEANING[r]}` }))}
          />
        </div>
        <CheckField
          label="Propagate"
          checked={form.propagate}
          onChange={(propagate) => set({ propagate })}
          hint="The role also holds on everything below the path"
        />
        <Problems problems={problems} />
        <ErrorNote error={put.error} />
        <div className="actions">
          <ActionButton allowed={allowed} needs={NEEDS} type="submit" className="primary">
            {put.isPending ? 'Adding…' : 'Add entry'}
          </ActionButton>
          <button type="button" onClick={onDone}>
            Cancel
          </button>
        </div>
      </fieldset>
    </form>
  );
}

/** The ACL editor: who holds which role on which path; add and remove entries. */
export function AclSection({ signedIn }: { signedIn: SignedIn }) {
  const entries = useAclEntries();
  const remotes = useRemotes(may(signedIn, 'remote.audit'));
  const remoteGroups = useRemoteGroups(may(signedIn, 'remote.audit'));
  const revoke = useRevokeAclEntry();
  const [adding, setAdding] = useState(false);
  const [filter, setFilter] = useState('');
  const [removing, setRemoving] = useState<AclEntry | null>(null);
  const allowed = may(signedIn, 'access.modify');
  const paths = aclPathSuggestions(
    remotes.data?.map((r) => r.id) ?? [],
    remoteGroups.data?.map((g) => g.id) ?? [],
  );
  const needle = filter.trim().toLowerCase();

  return (
    <section aria-labelledby="admin-acl">
      <div className="toolbar">
        <h2 id="admin-acl">ACL</h2>
        <Refresh queries={[entries]} />
        <ActionButton
          allowed={allowed}
          needs={NEEDS}
          onClick={() => setAdding(true)}
          disabled={adding}
        >
          New entry…
        </ActionButton>
      </div>
      <p className="muted">
        Roles granted on a path; with <em>propagate</em> they hold on everything below it. Audit
        reads, Manage also changes state, Admin may do everything.
      </p>
      {adding && <NewEntry allowed={allowed} paths={paths} onDone={() => setAdding(false)} />}
      <div className="filter">
        <TextField
          label="Filter entries"
          value={filter}
          onChange={setFilter}
          type="search"
          placeholder="path, principal or role"
        />
      </div>
      <Loaded query={entries}>
        {(items) => {
          const shown = sortAclEntries(items).filter(
            (e) =>
              !needle ||
              e.path.toLowerCase().includes(needle) ||
              e.principal.toLowerCase().includes(needle) ||
              e.role.toLowerCase().includes(needle),
          );
          return (
            <table>
              <caption className="visually-hidden">ACL entries</caption>
              <thead>
                <tr>
                  <th scope="col">Path</th>
                  <th scope="col">Principal type</th>
                  <th scope="col">Principal</th>
                  <th scope="col">Role</th>
                  <th scope="col">Propagate</th>
                  <th scope="col">Granted</th>
                  <th scope="col">
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {shown.length === 0 && (
                  <tr>
                    <td colSpan={7} className="muted">
                      {items.length === 0 ? 'No entries.' : 'No entry matches the filter.'}
                    </td>
                  </tr>
                )}
                {shown.map((e) => (
                  <tr
                    key={`${e.path} ${e.principalType} ${e.principal}`}
                    data-testid="acl-row"
                    data-path={e.path}
                    data-principal={e.principal}
                  >
                    <th scope="row">
                      <code>{e.path}</code>
                    </th>
                    <td>{e.principalType}</td>
                    <td>{e.principal}</td>
                    <td>{e.role}</td>
                    <td>{e.propagate ? 'yes' : 'no'}</td>
                    <td>{formatTime(e.createdAt)}</td>
                    <td>
                      <ActionButton
                        allowed={allowed}
                        needs={NEEDS}
                        onClick={() => setRemoving(e)}
                        aria-label={`Remove ${e.role} of ${e.principal} on ${e.path}`}
                      >
                        Remove
                      </ActionButton>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          );
        }}
      </Loaded>
      {removing && (
        <ConfirmMutation
          mutation={revoke}
          variables={aclKey(removing)}
          onClose={() => setRemoving(null)}
          title="Remove this ACL entry?"
          confirmLabel="Remove entry"
          danger
        >
          <p>
            {removing.principalType} <strong>{removing.principal}</strong> loses the {removing.role}{' '}
            role on <code>{removing.path}</code>
            {removing.propagate ? ' and below' : ''}.
          </p>
        </ConfirmMutation>
      )}
    </section>
  );
}
