import { useId, useState, type FormEvent } from 'react';
import { errorMessage, oidcLoginUrl } from '../api/client';
import {
  loginTarget,
  passwordRealms,
  realmLabel,
  singleSignOnRealms,
  type LoginRealm,
} from './login-realms';
import { useLogin, useTokenSignIn, type LoginAnswer } from './mutations';
import { useLoginRealms } from './queries';
import { TfaStep } from './TfaStep';

const REMEMBERED_REALM = 'debvisor.loginRealm';

/** The realm chosen at the last login on this browser (a convenience, not a secret). */
function rememberedRealm(): string {
  try {
    return localStorage.getItem(REMEMBERED_REALM) ?? 'local';
  } catch {
    return 'local';
  }
}

/** The password form: username, password and — when there is more than one — the realm (local or a directory). */
function PasswordForm({
  realms,
  onSecondFactor,
}: {
  realms: readonly LoginRealm[];
  onSecondFactor: (answer: LoginAnswer) => void;
}) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [chosen, setChosen] = useState(rememberedRealm);
  const login = useLogin();
  const hintId = useId();
  const realmHintId = useId();
  const choices = passwordRealms(realms);
  const target = loginTarget(username.trim(), chosen, realms);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    login.mutate(
      { username: target.username, password, ...(target.realm ? { realm: target.realm } : {}) },
      {
        onSuccess: (answer) => {
          setPassword('');
          try {
            if (target.realm) localStorage.setItem(REMEMBERED_REALM, target.realm);
          } catch {
            // storage refused (private mode): nothing to remember
          }
          if (answer.stage === 'tfa') onSecondFactor(answer);
        },
      },
    );
  };
  return (
    <form onSubmit={submit} aria-label="Sign in">
      <label htmlFor="username">Username</label>
      <input
        id="username"
        name="username"
        autoComplete="username"
        autoCapitalize="none"
        spellCheck={false}
        aria-describedby={hintId}
        value={username}
        onChange={(e) => setUsername(e.target.value)}
        required
      />
      <span id={hintId} className="muted">
        {choices.length > 1 ? (
          <>
            or <code>name@realm</code>, e.g. <code>alice@{choices[1]!.id}</code>
          </>
        ) : (
          <>
            <code>alice</code> for a local account, <code>alice@realm</code> for a directory realm
          </>
        )}
      </span>
      <label htmlFor="password">Password</label>
      <input
        id="password"
        name="password"
        type="password"
        autoComplete="current-password"
        value={password}
        onChange={(e) => setPassword(e.target.value)}
        required
      />
      {choices.length > 1 && (
        <>
          <label htmlFor="realm">Realm</label>
          <select
            id="realm"
            name="realm"
            value={target.realm ?? chosen}
            onChange={(e) => setChosen(e.target.value)}
            disabled={target.fromUsername}
            aria-describedby={target.fromUsername ? realmHintId : undefined}
          >
            {choices.map((realm) => (
              <option key={realm.id} value={realm.id}>
                {realmLabel(realm)}
              </option>
            ))}
          </select>
          {target.fromUsername && (
            <span id={realmHintId} className="muted">
              Taken from the username.
            </span>
          )}
        </>
      )}
      {login.isError && (
        <p role="alert" className="error">
          {errorMessage(login.error)}
        </p>
      )}
      <button type="submit" disabled={login.isPending}>
        {login.isPending ? 'Signing in…' : 'Sign in'}
      </button>
    </form>
  );
}

/** Single sign-on: one button per OpenID Connect realm, each a full-page navigation to its identity provider. */
function SingleSignOn({ realms }: { realms: readonly LoginRealm[] }) {
  if (realms.length === 0) return null;
  return (
    <ul className="sso" aria-label="Single sign-on">
      {realms.map((realm) => (
        <li key={realm.id}>
          <button type="button" onClick={() => window.location.assign(oidcLoginUrl(realm.id))}>
            Sign in with {realm.comment || realm.id}
          </button>
        </li>
      ))}
    </ul>
  );
}

/** An API token instead of a login (scripts' credential; also what the manager prints at its first start). */
function TokenForm() {
  const [token, setToken] = useState('');
  const signIn = useTokenSignIn();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void signIn(token.trim());
  };
  return (
    <form onSubmit={submit} aria-label="Sign in with an API token">
      <label htmlFor="token">API token</label>
      <input
        id="token"
        name="token"
        type="password"
        autoComplete="off"
        value={token}
        onChange={(e) => setToken(e.target.value)}
        placeholder="dvdm_…"
        pattern="dvdm_[0-9a-f]{16}_[A-Za-z0-9_\-]{43}"
        title="dvdm_ followed by the token id and secret"
        required
      />
      <button type="submit">Sign in with the token</button>
    </form>
  );
}

/**
 * The login page: password first, then the second factor when the account has one. Single sign-on
 * and API tokens are the other ways in. `notice` says why the user is here again (an ended session);
 * `resume` continues a login that waits for its second factor (after single sign-on).
 */
export function LoginPage({
  notice,
  resume,
}: {
  notice?: string | null;
  resume?: Pick<LoginAnswer, 'user' | 'methods'>;
}) {
  const [pending, setPending] = useState<Pick<LoginAnswer, 'user' | 'methods'> | null>(
    resume ?? null,
  );
  const realms = useLoginRealms().data ?? [];
  return (
    <main className="narrow">
      <h1>DebVisor Datacenter Manager</h1>
      {notice && (
        <p role="status" className="notice">
          {notice}
        </p>
      )}
      {pending ? (
        <TfaStep user={pending.user} methods={pending.methods} onCancel={() => setPending(null)} />
      ) : (
        <>
          <PasswordForm realms={realms} onSecondFactor={setPending} />
          <section aria-labelledby="other-ways" className="other-ways">
            <h2 id="other-ways">Other ways to sign in</h2>
            <SingleSignOn realms={singleSignOnRealms(realms)} />
            <details>
              <summary>Sign in with an API token</summary>
              <TokenForm />
            </details>
          </section>
        </>
      )}
    </main>
  );
}
