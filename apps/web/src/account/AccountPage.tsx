import { useId, useState, type FormEvent } from 'react';
import { errorMessage } from '../api/client';
import type { SignedIn } from '../auth/queries';
import { RecoveryCodes, TotpEnrolment } from '../auth/TfaSetup';
import {
  useAddSecurityKey,
  useChangePassword,
  useFactorsChanged,
  useLogoutEverywhere,
  useNewRecoveryCodes,
  useRemoveFactor,
  type FactorKind,
} from './mutations';
import { repeatProblem } from './password';
import { useTfaOverview, type TfaOverview } from './queries';

const when = (iso: string | null) => (iso ? new Date(iso).toLocaleString() : 'never');

function ErrorText({ error }: { error: unknown }) {
  return (
    <p role="alert" className="error">
      {errorMessage(error)}
    </p>
  );
}

/** Current password, new password twice; the manager's policy answers what is wrong with it. */
function ChangePassword() {
  const [currentPassword, setCurrentPassword] = useState('');
  const [newPassword, setNewPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const [problem, setProblem] = useState<string | null>(null);
  const change = useChangePassword();
  const ids = { current: useId(), next: useId(), repeat: useId() };
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = repeatProblem(newPassword, repeat);
    setProblem(found);
    if (found) return;
    change.mutate(
      { currentPassword, newPassword },
      {
        onSuccess: () => {
          setCurrentPassword('');
          setNewPassword('');
          setRepeat('');
        },
      },
    );
  };
  return (
    <form onSubmit={submit} aria-label="Change password">
      <label htmlFor={ids.current}>Current password</label>
      <input
        id={ids.current}
        type="password"
        autoComplete="current-password"
        value={currentPassword}
        onChange={(e) => setCurrentPassword(e.target.value)}
        required
      />
      <label htmlFor={ids.next}>New password</label>
      <input
        id={ids.next}
        type="password"
        autoComplete="new-password"
        value={newPassword}
        onChange={(e) => setNewPassword(e.target.value)}
        required
      />
      <label htmlFor={ids.repeat}>Repeat the new password</label>
      <input
        id={ids.repeat}
        type="password"
        autoComplete="new-password"
        value={repeat}
        onChange={(e) => setRepeat(e.target.value)}
        required
      />
      {problem && (
        <p role="alert" className="error">
          {problem}
        </p>
      )}
      {change.isError && <ErrorText error={change.error} />}
      {change.isSuccess && (
        <p role="status" className="notice">
          Password changed. Your other sessions were ended.
        </p>
      )}
      <button type="submit" disabled={change.isPending}>
        {change.isPending ? 'Changing…' : 'Change password'}
      </button>
    </form>
  );
}

/** A fresh password check before a change to the second factors. */
function PasswordConfirm({
  label,
  submitLabel,
  pending,
  error,
  onSubmit,
  onCancel,
}: {
  label: string;
  submitLabel: string;
  pending: boolean;
  error: unknown;
  onSubmit: (password: string) => void;
  onCancel: () => void;
}) {
  const [password, setPassword] = useState('');
  const id = useId();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onSubmit(password);
  };
  return (
    <form onSubmit={submit} aria-label={label} className="panel">
      <label htmlFor={id}>Your password</label>
      <input
        id={id}
        type="password"
        autoComplete="current-password"
        value={password}
        onChange={(e) => setPassword(e.target.value)}
        required
      />
      {error !== null && error !== undefined && <ErrorText error={error} />}
      <span className="actions">
        <button type="submit" disabled={pending}>
          {submitLabel}
        </button>
        <button type="button" className="link" onClick={onCancel}>
          Cancel
        </button>
      </span>
    </form>
  );
}

/** Name and password, then the browser asks for the security key. */
function AddSecurityKey({
  onAdded,
  onCancel,
}: {
  onAdded: (recoveryCodes: string[] | null) => void;
  onCancel: () => void;
}) {
  const [name, setName] = useState('security key');
  const [password, setPassword] = useState('');
  const add = useAddSecurityKey();
  const ids = { name: useId(), password: useId() };
  const submit = (event: FormEvent) => {
    event.preventDefault();
    add.mutate(
      { name: name.trim(), password },
      { onSuccess: (answer) => onAdded(answer.recoveryCodes) },
    );
  };
  return (
    <form onSubmit={submit} aria-label="Add a security key" className="panel">
      <label htmlFor={ids.name}>Name of the security key</label>
      <input
        id={ids.name}
        autoComplete="off"
        value={name}
        onChange={(e) => setName(e.target.value)}
        maxLength={64}
        required
      />
      <label htmlFor={ids.password}>Your password</label>
      <input
        id={ids.password}
        type="password"
        autoComplete="current-password"
        value={password}
        onChange={(e) => setPassword(e.target.value)}
        required
      />
      {add.isError && <ErrorText error={add.error} />}
      <span className="actions">
        <button type="submit" disabled={add.isPending}>
          {add.isPending ? 'Touch your security key…' : 'Register the security key'}
        </button>
        <button type="button" className="link" onClick={onCancel}>
          Cancel
        </button>
      </span>
    </form>
  );
}

type Panel =
  | { kind: 'totp' }
  | { kind: 'webauthn' }
  | { kind: 'recovery' }
  | { kind: 'remove'; factor: FactorKind; id: string; name: string }
  | { kind: 'codes'; codes: string[] };

function FactorTables({
  overview,
  onRemove,
}: {
  overview: TfaOverview;
  onRemove: (factor: FactorKind, id: string, name: string) => void;
}) {
  return (
    <>
      <table aria-label="Authenticator apps">
        <thead>
          <tr>
            <th scope="col">Authenticator app</th>
            <th scope="col">Added</th>
            <th scope="col">State</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {overview.devices.length === 0 && (
            <tr>
              <td colSpan={4} className="muted">
                No authenticator app.
              </td>
            </tr>
          )}
          {overview.devices.map((d) => (
            <tr key={d.id}>
              <th scope="row">{d.name}</th>
              <td>{when(d.createdAt)}</td>
              <td>{d.confirmed ? 'in use' : 'not confirmed (does not count for logins)'}</td>
              <td>
                <button
                  type="button"
                  aria-label={`Remove ${d.name}`}
                  onClick={() => onRemove('totp', d.id, d.name)}
                >
                  Remove
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <table aria-label="Security keys">
        <thead>
          <tr>
            <th scope="col">Security key</th>
            <th scope="col">Added</th>
            <th scope="col">Last used</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {overview.webauthn.length === 0 && (
            <tr>
              <td colSpan={4} className="muted">
                No security key.
              </td>
            </tr>
          )}
          {overview.webauthn.map((k) => (
            <tr key={k.id}>
              <th scope="row">{k.name}</th>
              <td>{when(k.createdAt)}</td>
              <td>{when(k.lastUsedAt)}</td>
              <td>
                <button
                  type="button"
                  aria-label={`Remove ${k.name}`}
                  onClick={() => onRemove('webauthn', k.id, k.name)}
                >
                  Remove
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

/** The user's authenticator apps and security keys: list, add, remove; new recovery codes. */
function SecondFactors() {
  const overview = useTfaOverview();
  const [panel, setPanel] = useState<Panel | null>(null);
  const changed = useFactorsChanged();
  const remove = useRemoveFactor();
  const recovery = useNewRecoveryCodes();
  const close = () => {
    remove.reset();
    recovery.reset();
    setPanel(null);
  };
  const showCodes = (codes: string[] | null) =>
    setPanel(codes && codes.length > 0 ? { kind: 'codes', codes } : null);

  if (overview.isPending) return <p className="loading">Loading…</p>;
  if (overview.isError) return <ErrorText error={overview.error} />;
  const data = overview.data;
  return (
    <>
      {data.lockedUntil && new Date(data.lockedUntil) > new Date() && (
        <p role="status" className="notice">
          Second factors are refused until {when(data.lockedUntil)} after repeated failures.
        </p>
      )}
      {data.totpLocked && (
        <p role="status" className="notice">
          Authenticator app codes are refused after repeated wrong codes, until a recovery code is
          used or an administrator unlocks them.
        </p>
      )}
      <FactorTables
        overview={data}
        onRemove={(factor, id, name) => setPanel({ kind: 'remove', factor, id, name })}
      />
      <p>
        Recovery codes left:{' '}
        <strong data-testid="recovery-codes-left">{data.recoveryCodesLeft}</strong>
      </p>
      {panel === null && (
        <span className="actions">
          <button type="button" onClick={() => setPanel({ kind: 'totp' })}>
            Add authenticator app
          </button>
          <button type="button" onClick={() => setPanel({ kind: 'webauthn' })}>
            Add security key
          </button>
          <button type="button" onClick={() => setPanel({ kind: 'recovery' })}>
            New recovery codes
          </button>
        </span>
      )}
      {panel?.kind === 'totp' && (
        <div className="panel">
          <TotpEnrolment
            askPassword
            onConfirmed={() => void changed()}
            onDone={() => {
              void changed();
              setPanel(null);
            }}
            cancel={{
              label: 'Cancel',
              onCancel: () => {
                void changed();
                setPanel(null);
              },
            }}
          />
        </div>
      )}
      {panel?.kind === 'webauthn' && <AddSecurityKey onAdded={showCodes} onCancel={close} />}
      {panel?.kind === 'recovery' && (
        <PasswordConfirm
          label="New recovery codes"
          submitLabel="Replace the recovery codes"
          pending={recovery.isPending}
          error={recovery.error}
          onSubmit={(password) =>
            recovery.mutate(password, { onSuccess: (answer) => showCodes(answer.recoveryCodes) })
          }
          onCancel={close}
        />
      )}
      {panel?.kind === 'remove' && (
        <>
          <p>
            Remove <strong>{panel.name}</strong>? It no longer signs you in.
          </p>
          <PasswordConfirm
            label={`Remove ${panel.name}`}
            submitLabel="Remove"
            pending={remove.isPending}
            error={remove.error}
            onSubmit={(password) =>
              remove.mutate({ kind: panel.factor, id: panel.id, password }, { onSuccess: close })
            }
            onCancel={close}
          />
        </>
      )}
      {panel?.kind === 'codes' && (
        <div className="panel">
          <RecoveryCodes codes={panel.codes} onSaved={() => setPanel(null)} />
        </div>
      )}
    </>
  );
}

function Sessions() {
  const everywhere = useLogoutEverywhere();
  return (
    <>
      <p>Ends every session of your account, on every device, this one included.</p>
      <button type="button" onClick={() => everywhere.mutate()} disabled={everywhere.isPending}>
        Log out everywhere
      </button>
      {everywhere.isError && <ErrorText error={everywhere.error} />}
    </>
  );
}

/** The signed-in user's own settings: password, second factors, sessions (login sessions only). */
export function AccountPage({ signedIn }: { signedIn: SignedIn }) {
  return (
    <main className="account">
      <h1>Account</h1>
      {signedIn.via === 'token' ? (
        <p role="status" className="notice">
          You signed in with an API token. Account settings need a password login: log out and sign
          in with your username and password.
        </p>
      ) : (
        <>
          <section aria-labelledby="password-title">
            <h2 id="password-title">Password</h2>
            <ChangePassword />
          </section>
          <section aria-labelledby="tfa-title">
            <h2 id="tfa-title">Second factors</h2>
            <SecondFactors />
          </section>
          <section aria-labelledby="sessions-title">
            <h2 id="sessions-title">Sessions</h2>
            <Sessions />
          </section>
        </>
      )}
    </main>
  );
}
