import { useState, type FormEvent } from 'react';
import type { Schemas } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { formatTime } from '../ui/format';
import { useCreateRealm, useDeleteRealm, useSyncRealm, useUpdateRealm } from './mutations';
import {
  CheckField,
  Loaded,
  Problems,
  Refresh,
  SelectField,
  TextAreaField,
  TextField,
} from './parts';
import { useRealms, type Realm } from './queries';
import {
  createRealmBody,
  emptyRealmForm,
  realmFormFrom,
  realmFormProblems,
  updateRealmBody,
  type DirectoryType,
  type LdapFields,
  type OidcFields,
  type RealmForm,
} from './realm-forms';

const NEEDS = 'access.modify';
const TYPE_NAMES: Record<Realm['type'], string> = {
  local: 'Local',
  ldap: 'LDAP',
  openid: 'OpenID Connect',
};

type SyncSummary = Schemas['SyncSummaryDto_Output'];
type RealmConnection = Schemas['ChangedRealmDto_Output']['connection'];

function LdapSettings({
  fields,
  onChange,
}: {
  fields: LdapFields;
  onChange: (patch: Partial<LdapFields>) => void;
}) {
  return (
    <fieldset>
      <legend>LDAP server</legend>
      <div className="grid-2">
        <TextField
          label="Server URL"
          value={fields.url}
          onChange={(url) => onChange({ url })}
          placeholder="ldaps://ldap.example.com"
          required
        />
        <TextField
          label="Bind DN"
          value={fields.bindDn}
          onChange={(bindDn) => onChange({ bindDn })}
          hint="Empty: search anonymously"
        />
        <TextField
          label="User base DN"
          value={fields.userBaseDn}
          onChange={(userBaseDn) => onChange({ userBaseDn })}
          required
        />
        <TextField
          label="User filter"
          value={fields.userFilter}
          onChange={(userFilter) => onChange({ userFilter })}
        />
        <TextField
          label="User name attribute"
          value={fields.usernameAttribute}
          onChange={(usernameAttribute) => onChange({ usernameAttribute })}
        />
        <TextField
          label="Display name attribute"
          value={fields.displayNameAttribute}
          onChange={(displayNameAttribute) => onChange({ displayNameAttribute })}
        />
        <TextField
          label="E-mail attribute"
          value={fields.emailAttribute}
          onChange={(emailAttribute) => onChange({ emailAttribute })}
        />
        <TextField
          label="Group base DN"
          value={fields.groupBaseDn}
          onChange={(groupBaseDn) => onChange({ groupBaseDn })}
          required
        />
        <TextField
          label="Group filter"
          value={fields.groupFilter}
          onChange={(groupFilter) => onChange({ groupFilter })}
        />
        <TextField
          label="Group name attribute"
          value={fields.groupNameAttribute}
          onChange={(groupNameAttribute) => onChange({ groupNameAttribute })}
        />
        <TextField
          label="Group member attribute"
          value={fields.groupMemberAttribute}
          onChange={(groupMemberAttribute) => onChange({ groupMemberAttribute })}
        />
        <TextField
          label="Timeout (ms)"
          type="number"
          min={100}
          max={60000}
          value={fields.timeoutMs}
          onChange={(timeoutMs) => onChange({ timeoutMs })}
        />
      </div>
      <CheckField
        label="StartTLS"
        checked={fields.startTls}
        onChange={(startTls) => onChange({ startTls })}
        hint="For ldap:// URLs; ldaps:// is encrypted already"
      />
      <TextAreaField
        label="Server CA certificate (PEM, optional)"
        value={fields.caPem}
        onChange={(caPem) => onChange({ caPem })}
        rows={3}
        className="mono"
        hint="Empty: the system's CAs; verification is never switched off"
      />
    </fieldset>
  );
}

function OidcSettings({
  fields,
  onChange,
}: {
  fields: OidcFields;
  onChange: (patch: Partial<OidcFields>) => void;
}) {
  return (
    <fieldset>
      <legend>OpenID Connect provider</legend>
      <div className="grid-2">
        <TextField
          label="Issuer URL"
          value={fields.issuerUrl}
          onChange={(issuerUrl) => onChange({ issuerUrl })}
          placeholder="https://id.example.com/realms/main"
          required
        />
        <TextField
          label="Client id"
          value={fields.clientId}
          onChange={(clientId) => onChange({ clientId })}
          required
        />
        <TextField
          label="Scopes"
          value={fields.scopes}
          onChange={(scopes) => onChange({ scopes })}
          hint="Space-separated; must include openid"
        />
        <TextField
          label="User name claim"
          value={fields.usernameClaim}
          onChange={(usernameClaim) => onChange({ usernameClaim })}
        />
        <TextField
          label="Groups claim"
          value={fields.groupsClaim}
          onChange={(groupsClaim) => onChange({ groupsClaim })}
        />
        <TextField
          label="Extra audiences"
          value={fields.audiences}
          onChange={(audiences) => onChange({ audiences })}
          hint="Space-separated; optional"
        />
        <TextField
          label="Timeout (ms)"
          type="number"
          min={100}
          max={60000}
          value={fields.timeoutMs}
          onChange={(timeoutMs) => onChange({ timeoutMs })}
        />
      </div>
      <TextAreaField
        label="Issuer CA certificate (PEM, optional)"
        value={fields.caPem}
        onChange={(caPem) => onChange({ caPem })}
        rows={3}
        className="mono"
        hint="Empty: the system's CAs"
      />
    </fieldset>
  );
}

function GroupMappings({
  form,
  set,
}: {
  form: RealmForm;
  set: (patch: Partial<RealmForm>) => void;
}) {
  const rows = form.groupMappings;
  const setRow = (index: number, patch: Partial<RealmForm['groupMappings'][number]>) =>
    set({ groupMappings: rows.map((r, i) => (i === index ? { ...r, ...patch } : r)) });
  return (
    <fieldset>
      <legend>Group mappings</legend>
      <p className="muted">
        Directory groups (or group claims) become manager groups only through a mapping; the first
        matching pattern wins. <code>*</code> matches any characters; an empty manager group keeps
        the external name.
      </p>
      {rows.map((row, i) => (
        <div key={i} className="entry-row">
          <TextField
            label={`Mapping ${i + 1} pattern`}
            value={row.pattern}
            onChange={(pattern) => setRow(i, { pattern })}
            placeholder="debvisor-*"
          />
          <TextField
            label={`Mapping ${i + 1} manager group`}
            value={row.group}
            onChange={(group) => setRow(i, { group })}
            placeholder="(same name)"
          />
          <CheckField
            label="Tenant"
            checked={row.tenant}
            onChange={(tenant) => setRow(i, { tenant })}
          />
          <button
            type="button"
            className="link"
            onClick={() => set({ groupMappings: rows.filter((_, j) => j !== i) })}
          >
            Drop mapping {i + 1}
          </button>
        </div>
      ))}
      <button
        type="button"
        className="link"
        onClick={() => set({ groupMappings: [...rows, { pattern: '', group: '', tenant: false }] })}
      >
        Another mapping
      </button>
    </fieldset>
  );
}

function ConnectionNote({ connection }: { connection: RealmConnection }) {
  if (!connection) return null;
  return connection.ok ? (
    <p role="status" className="notice ok">
      The directory connection test passed.
    </p>
  ) : (
    <p role="status" className="notice warn">
      Saved although the directory connection test failed:{' '}
      {connection.error?.message ?? 'no answer'}.
    </p>
  );
}

/** Create or edit an LDAP / OpenID Connect realm (the local realm: comment and second factor only). */
function RealmEditor({
  realm,
  newType,
  allowed,
  onDone,
}: {
  realm: Realm | null;
  newType: DirectoryType;
  allowed: boolean;
  onDone: (connection: RealmConnection | undefined) => void;
}) {
  const [form, setForm] = useState<RealmForm>(() =>
    realm ? realmFormFrom(realm) : emptyRealmForm(newType),
  );
  const [problems, setProblems] = useState<string[]>([]);
  const create = useCreateRealm();
  const update = useUpdateRealm();
  const pending = create.isPending || update.isPending;
  const set = (patch: Partial<RealmForm>) => setForm((f) => ({ ...f, ...patch }));
  const local = realm?.type === 'local';
  const ldap = form.type === 'ldap';

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = local ? [] : realmFormProblems(form, realm === null);
    setProblems(found);
    if (found.length > 0) return;
    const done = {
      onSuccess: (answer: Schemas['ChangedRealmDto_Output']) => onDone(answer.connection),
    };
    if (realm) update.mutate({ realm: realm.id, body: updateRealmBody(form, realm) }, done);
    else create.mutate(createRealmBody(form), done);
  };

  const title = realm ? `Edit realm ${realm.id}` : `New ${TYPE_NAMES[form.type]} realm`;
  return (
    <form className="admin-form panel-wide" aria-label={title} onSubmit={submit}>
      <h3>{title}</h3>
      <fieldset disabled={pending}>
        <div className="grid-2">
          {realm === null && (
            <TextField
              label="Realm id"
              value={form.id}
              onChange={(id) => set({ id })}
              autoComplete="off"
              required
              hint="e.g. corp: users log in as name@corp"
            />
          )}
          {!local && (
            <SelectField
              label="Type"
              value={form.type}
              onChange={(type) => set({ type: type as DirectoryType })}
              options={[
                { value: 'ldap', label: 'LDAP / Active Directory' },
                { value: 'openid', label: 'OpenID Connect' },
              ]}
            />
          )}
          <TextField
            label="Comment"
            value={form.comment}
            onChange={(comment) => set({ comment })}
            autoComplete="off"
          />
        </div>
        <CheckField
          label="Users of this realm must use a second factor"
          checked={form.requireTfa}
          onChange={(requireTfa) => set({ requireTfa })}
        />
        {!local && (
          <>
            {ldap ? (
              <LdapSettings
                fields={form.ldap}
                onChange={(patch) => set({ ldap: { ...form.ldap, ...patch } })}
              />
            ) : (
              <OidcSettings
                fields={form.openid}
                onChange={(patch) => set({ openid: { ...form.openid, ...patch } })}
              />
            )}
            <div className="grid-2">
              <TextField
                label={ldap ? 'Bind password' : 'Client secret'}
                type="password"
                value={form.secret}
                onChange={(secret) => set({ secret, removeSecret: false })}
                autoComplete="new-password"
                hint={
                  realm?.hasSecret
                    ? 'Stored; empty keeps it'
                    : realm
                      ? 'None stored'
                      : ldap
                        ? 'Optional (anonymous bind without it)'
                        : 'Needed'
                }
              />
              {ldap && (
                <TextField
                  label="Sync every (minutes)"
                  type="number"
                  min={5}
                  max={10080}
                  value={form.syncIntervalMinutes}
                  onChange={(syncIntervalMinutes) => set({ syncIntervalMinutes })}
                  hint="5 to 10080; empty: only on demand"
                />
              )}
            </div>
            {ldap && realm?.hasSecret && (
              <CheckField
                label="Remove the stored bind password (bind anonymously)"
                checked={form.removeSecret}
                onChange={(removeSecret) => set({ removeSecret, secret: '' })}
              />
            )}
            <GroupMappings form={form} set={set} />
            {ldap && (
              <CheckField
                label="Save even when the connection test fails"
                checked={form.addAnyway}
                onChange={(addAnyway) => set({ addAnyway })}
                hint="The manager tests the directory when the server settings or the password change"
              />
            )}
          </>
        )}
        <Problems problems={problems} />
        <ErrorNote error={create.error ?? update.error} />
        <div className="actions">
          <ActionButton allowed={allowed} needs={NEEDS} type="submit" className="primary">
            {pending ? 'Saving…' : realm ? 'Save realm' : 'Create realm'}
          </ActionButton>
          <button type="button" onClick={() => onDone(undefined)}>
            Cancel
          </button>
        </div>
      </fieldset>
    </form>
  );
}

function SyncSummaryNote({ realm, summary }: { realm: string; summary: SyncSummary }) {
  return (
    <p role="status" className="notice ok" data-testid="sync-summary">
      Synced {realm}: users {summary.users.created} created, {summary.users.updated} updated,{' '}
      {summary.users.disabled} disabled, {summary.users.skipped} skipped; groups{' '}
      {summary.groups.created} created; memberships {summary.memberships.added} added,{' '}
      {summary.memberships.removed} removed.
    </p>
  );
}

type Editing = { kind: 'new'; type: DirectoryType } | { kind: 'edit'; realm: Realm };

/** Realms: local, LDAP and OpenID Connect; create, edit (settings, secret, group mappings), sync an LDAP realm now, delete. */
export function RealmsSection({ signedIn }: { signedIn: SignedIn }) {
  const realms = useRealms();
  const sync = useSyncRealm();
  const remove = useDeleteRealm();
  const [editing, setEditing] = useState<Editing | null>(null);
  const [removing, setRemoving] = useState<string | null>(null);
  const [synced, setSynced] = useState<{ realm: string; summary: SyncSummary } | null>(null);
  const [connection, setConnection] = useState<RealmConnection>(null);
  const allowed = may(signedIn, 'access.modify');
  const start = (next: Editing) => {
    setConnection(null);
    setEditing(next);
  };

  return (
    <section aria-labelledby="admin-realms">
      <div className="toolbar">
        <h2 id="admin-realms">Realms</h2>
        <Refresh queries={[realms]} />
        <span className="actions">
          <ActionButton
            allowed={allowed}
            needs={NEEDS}
            onClick={() => start({ kind: 'new', type: 'ldap' })}
          >
            New LDAP realm…
          </ActionButton>
          <ActionButton
            allowed={allowed}
            needs={NEEDS}
            onClick={() => start({ kind: 'new', type: 'openid' })}
          >
            New OpenID Connect realm…
          </ActionButton>
        </span>
      </div>
      {editing && (
        <RealmEditor
          key={editing.kind === 'new' ? `new-${editing.type}` : editing.realm.id}
          realm={editing.kind === 'edit' ? editing.realm : null}
          newType={editing.kind === 'new' ? editing.type : 'ldap'}
          allowed={allowed}
          onDone={(answer) => {
            setConnection(answer ?? null);
            setEditing(null);
          }}
        />
      )}
      <ConnectionNote connection={connection} />
      {synced && <SyncSummaryNote realm={synced.realm} summary={synced.summary} />}
      <ErrorNote error={sync.error} />
      <Loaded query={realms}>
        {(items) => (
          <table>
            <caption className="visually-hidden">Realms</caption>
            <thead>
              <tr>
                <th scope="col">Realm</th>
                <th scope="col">Type</th>
                <th scope="col">Server</th>
                <th scope="col">Second factor</th>
                <th scope="col">Group mappings</th>
                <th scope="col">Sync</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((r) => (
                <tr key={r.id} data-testid="realm-row" data-realm={r.id}>
                  <th scope="row">
                    {r.id}
                    {r.comment && <div className="muted">{r.comment}</div>}
                  </th>
                  <td>{TYPE_NAMES[r.type]}</td>
                  <td className="wrap">
                    {r.type === 'ldap'
                      ? String(r.settings.url ?? '')
                      : r.type === 'openid'
                        ? String(r.settings.issuerUrl ?? '')
                        : '—'}
                  </td>
                  <td>{r.requireTfa ? 'required' : 'optional'}</td>
                  <td>
                    {r.groupMappings.length === 0 ? (
                      <span className="muted">none</span>
                    ) : (
                      <ul className="plain">
                        {r.groupMappings.map((m) => (
                          <li key={m.pattern}>
                            <code>{m.pattern}</code> → {m.group ?? '(same name)'}
                            {m.tenant ? ' (tenant)' : ''}
                          </li>
                        ))}
                      </ul>
                    )}
                  </td>
                  <td>
                    {r.type !== 'ldap' ? (
                      <span className="muted">—</span>
                    ) : (
                      <>
                        <div>
                          {r.syncIntervalMinutes
                            ? `every ${r.syncIntervalMinutes} min`
                            : 'on demand'}
                        </div>
                        <div className="muted">last: {formatTime(r.lastSyncAt)}</div>
                        {r.lastSyncError && <div className="error">{r.lastSyncError}</div>}
                      </>
                    )}
                  </td>
                  <td>
                    <span className="actions">
                      <ActionButton
                        allowed={allowed}
                        needs={NEEDS}
                        onClick={() => start({ kind: 'edit', realm: r })}
                        aria-label={`Edit realm ${r.id}`}
                      >
                        Edit
                      </ActionButton>
                      {r.type === 'ldap' && (
                        <ActionButton
                          allowed={allowed}
                          needs={NEEDS}
                          disabled={sync.isPending}
                          onClick={() => {
                            setSynced(null);
                            sync.mutate(r.id, {
                              onSuccess: (summary) => setSynced({ realm: r.id, summary }),
                            });
                          }}
                          aria-label={`Sync realm ${r.id} now`}
                        >
                          {sync.isPending && sync.variables === r.id ? 'Syncing…' : 'Sync now'}
                        </ActionButton>
                      )}
                      {r.type !== 'local' && (
                        <ActionButton
                          allowed={allowed}
                          needs={NEEDS}
                          onClick={() => setRemoving(r.id)}
                          aria-label={`Delete realm ${r.id}`}
                        >
                          Delete
                        </ActionButton>
                      )}
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Loaded>
      {removing && (
        <ConfirmMutation
          mutation={remove}
          variables={removing}
          onClose={() => setRemoving(null)}
          title={`Delete realm ${removing}?`}
          confirmLabel="Delete realm"
          danger
        >
          <p>
            Its users go with it: their API tokens, sessions, memberships and ACL entries. Nobody
            can log in through it any more.
          </p>
        </ConfirmMutation>
      )}
    </section>
  );
}
