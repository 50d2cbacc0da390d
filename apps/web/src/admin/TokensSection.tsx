import { useId, useRef, useState, type FormEvent } from 'react';
import type { Schemas } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { ActionButton } from '../ui/ActionButton';
import { ConfirmMutation } from '../ui/ConfirmMutation';
import { ErrorNote } from '../ui/ErrorNote';
import { formatTime } from '../ui/format';
import { createTokenRequest, tokenFormProblems, tokenState, type TokenForm } from './access-forms';
import { useCreateToken, useRevokeToken } from './mutations';
import { CheckField, Loaded, Problems, Refresh, SelectField, TextField } from './parts';
import { useGroups, useMyTokens, useTokens, useUsers, type Token } from './queries';

const NEEDS = 'access.modify';
type CreatedToken = Schemas['CreatedTokenDto_Output'];

/**
 * A new token's secret, shown this once (the manager keeps only its hash): a Copy button, and when
 * the clipboard cannot be used, the text selected for the user to copy.
 */
function TokenSecret({ token, onDone }: { token: CreatedToken; onDone: () => void }) {
  const secret = useRef<HTMLElement>(null);
  const [copied, setCopied] = useState<string | null>(null);
  const titleId = useId();
  const select = () => {
    const element = secret.current;
    const selection = window.getSelection();
    if (element && selection) selection.selectAllChildren(element);
  };
  const copy = async () => {
    try {
      if (!navigator.clipboard) throw new Error('no clipboard');
      await navigator.clipboard.writeText(token.token);
      setCopied('Copied');
    } catch {
      select();
      setCopied(
        'The clipboard is not available here: the token is selected, press Ctrl+C (⌘C) to copy it',
      );
    }
  };
  return (
    <section className="token-secret notice" aria-labelledby={titleId}>
      <h3 id={titleId}>New token {token.display}</h3>
      <p>
        <strong>Copy it now: it will not be shown again.</strong> The manager keeps only its hash.
      </p>
      <div className="secret-row">
        <code ref={secret} className="secret-value" data-testid="token-secret">
          {token.token}
        </code>
        <button type="button" onClick={() => void copy()}>
          Copy
        </button>
      </div>
      <p aria-live="polite" className="muted" data-testid="copy-feedback">
        {copied}
      </p>
      {token.limited && (
        <p className="muted">
          A limited token holds only what both its owner and its own ACL entries grant: add entries
          for principal type <em>token</em> and id <code>{token.id}</code>.
        </p>
      )}
      <button type="button" onClick={onDone}>
        Done
      </button>
    </section>
  );
}

function NewToken({
  signedIn,
  allowed,
  onCreated,
  onCancel,
}: {
  signedIn: SignedIn;
  allowed: boolean;
  onCreated: (token: CreatedToken) => void;
  onCancel: () => void;
}) {
  const viaSession = signedIn.via === 'session';
  const [form, setForm] = useState<TokenForm>({
    ownerType: viaSession ? 'me' : 'user',
    owner: '',
    name: '',
    comment: '',
    expires: '',
    limited: false,
  });
  const [problems, setProblems] = useState<string[]>([]);
  const create = useCreateToken();
  const users = useUsers();
  const groups = useGroups();
  const ownerList = useId();
  const set = (patch: Partial<TokenForm>) => setForm((f) => ({ ...f, ...patch }));
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = tokenFormProblems(form, new Date());
    setProblems(found);
    if (found.length === 0) create.mutate(createTokenRequest(form), { onSuccess: onCreated });
  };
  const owners =
    form.ownerType === 'user'
      ? (users.data ?? []).map((u) => u.id)
      : form.ownerType === 'group'
        ? (groups.data ?? []).map((g) => g.id)
        : [];
  return (
    <form className="admin-form panel-wide" aria-label="New API token" onSubmit={submit}>
      <h3>New API token</h3>
      <fieldset disabled={create.isPending}>
        <div className="grid-2">
          <SelectField
            label="Owner"
            value={form.ownerType}
            onChange={(ownerType) =>
              set({ ownerType: ownerType as TokenForm['ownerType'], owner: '' })
            }
            options={[
              ...(viaSession ? [{ value: 'me', label: `Me (${signedIn.user})` }] : []),
              { value: 'user', label: 'A user' },
              { value: 'group', label: 'A group (acts with the group’s rights)' },
            ]}
          />
          {form.ownerType !== 'me' && (
            <>
              <TextField
                label={form.ownerType === 'user' ? 'Owner user' : 'Owner group'}
                value={form.owner}
                onChange={(owner) => set({ owner })}
                list={ownerList}
                autoComplete="off"
                required
                hint={form.ownerType === 'user' ? 'name@realm' : 'group id'}
              />
              <datalist id={ownerList}>
                {owners.map((o) => (
                  <option key={o} value={o} />
                ))}
              </datalist>
            </>
          )}
          <TextField
            label="Token name"
            value={form.name}
            onChange={(name) => set({ name })}
            autoComplete="off"
            required
            hint="Unique per owner, e.g. ci"
          />
          <TextField
            label="Comment"
            value={form.comment}
            onChange={(comment) => set({ comment })}
            autoComplete="off"
          />
          <TextField
            label="Expires"
            type="date"
            value={form.expires}
            onChange={(expires) => set({ expires })}
            hint="Works until the end of that day; empty: never"
          />
        </div>
        <CheckField
          label="Limited"
          checked={form.limited}
          onChange={(limited) => set({ limited })}
          hint="Holds only what both its owner and its own ACL entries (principal type token) grant"
        />
        <Problems problems={problems} />
        <ErrorNote error={create.error} />
        <div className="actions">
          <ActionButton allowed={allowed} needs={NEEDS} type="submit" className="primary">
            {create.isPending ? 'Creating…' : 'Create token'}
          </ActionButton>
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
        </div>
      </fieldset>
    </form>
  );
}

function TokenTable({
  caption,
  tokens,
  allowed,
  mine,
  onRevoke,
}: {
  caption: string;
  tokens: Token[];
  allowed: boolean;
  mine: boolean;
  onRevoke: (token: Token, mine: boolean) => void;
}) {
  const now = new Date();
  return (
    <table>
      <caption className="visually-hidden">{caption}</caption>
      <thead>
        <tr>
          <th scope="col">Token</th>
          <th scope="col">Id</th>
          <th scope="col">Limited</th>
          <th scope="col">Created</th>
          <th scope="col">Last used</th>
          <th scope="col">Expires</th>
          <th scope="col">State</th>
          <th scope="col">
            <span className="visually-hidden">Actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {tokens.length === 0 && (
          <tr>
            <td colSpan={8} className="muted">
              No tokens.
            </td>
          </tr>
        )}
        {tokens.map((t) => {
          const state = tokenState(t, now);
          return (
            <tr key={t.id} data-testid={mine ? 'my-token-row' : 'token-row'} data-token={t.display}>
              <th scope="row">
                {t.display}
                {t.comment && <div className="muted">{t.comment}</div>}
              </th>
              <td>
                <code>{t.id}</code>
              </td>
              <td>{t.limited ? 'yes' : 'no'}</td>
              <td>{formatTime(t.createdAt)}</td>
              <td>{formatTime(t.lastUsedAt)}</td>
              <td>{t.expiresAt ? formatTime(t.expiresAt) : 'never'}</td>
              <td>
                <span className={`badge ${state === 'active' ? 'badge-ok' : 'badge-stopped'}`}>
                  {state}
                </span>
              </td>
              <td>
                <ActionButton
                  allowed={allowed}
                  needs={NEEDS}
                  onClick={() => onRevoke(t, mine)}
                  disabled={state === 'revoked'}
                  aria-label={`Revoke ${t.display}`}
                >
                  Revoke
                </ActionButton>
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

/** API tokens: the caller's own and every user's and group's; create (the secret shown once, with Copy), revoke. */
export function TokensSection({ signedIn }: { signedIn: SignedIn }) {
  const viaSession = signedIn.via === 'session';
  const tokens = useTokens();
  const mine = useMyTokens(viaSession);
  const revoke = useRevokeToken();
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState<CreatedToken | null>(null);
  const [revoking, setRevoking] = useState<{ token: Token; mine: boolean } | null>(null);
  const allowed = may(signedIn, 'access.modify');

  return (
    <section aria-labelledby="admin-tokens">
      <div className="toolbar">
        <h2 id="admin-tokens">API tokens</h2>
        <Refresh queries={[tokens, ...(viaSession ? [mine] : [])]} />
        <ActionButton
          allowed={allowed}
          needs={NEEDS}
          onClick={() => {
            setCreated(null);
            setCreating(true);
          }}
          disabled={creating}
        >
          New token…
        </ActionButton>
      </div>
      {created && <TokenSecret token={created} onDone={() => setCreated(null)} />}
      {creating && (
        <NewToken
          signedIn={signedIn}
          allowed={allowed}
          onCreated={(token) => {
            setCreated(token);
            setCreating(false);
          }}
          onCancel={() => setCreating(false)}
        />
      )}
      <h3>Your tokens</h3>
      {viaSession ? (
        <Loaded query={mine}>
          {(items) => (
            <TokenTable
              caption="Your tokens"
              tokens={items}
              allowed={allowed}
              mine
              onRevoke={(token, own) => setRevoking({ token, mine: own })}
            />
          )}
        </Loaded>
      ) : (
        <p className="muted">
          Signed in with an API token: your own tokens are listed for password logins only.
        </p>
      )}
      <h3>All tokens</h3>
      <Loaded query={tokens}>
        {(items) => (
          <TokenTable
            caption="All tokens"
            tokens={items}
            allowed={allowed}
            mine={false}
            onRevoke={(token, own) => setRevoking({ token, mine: own })}
          />
        )}
      </Loaded>
      {revoking && (
        <ConfirmMutation
          mutation={revoke}
          variables={{ id: revoking.token.id, mine: revoking.mine }}
          onClose={() => setRevoking(null)}
          title={`Revoke ${revoking.token.display}?`}
          confirmLabel="Revoke token"
          danger
        >
          <p>Every program using it is refused from now on. This cannot be undone.</p>
        </ConfirmMutation>
      )}
    </section>
  );
}
