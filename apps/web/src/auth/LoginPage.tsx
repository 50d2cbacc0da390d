import { useId, useState, type FormEvent } from 'react';
import { errorMessage, oidcLoginUrl } from '../api/client';
import { useLogin, useTokenSignIn, type LoginAnswer } from './mutations';
import { TfaStep } from './TfaStep';

/** The password form: username (`alice`, `alice@realm`) and password. */
function PasswordForm({ onSecondFactor }: { onSecondFactor: (answer: LoginAnswer) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const login = useLogin();
  const hintId = useId();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    login.mutate(
      { username: username.trim(), password },
      {
        onSuccess: (answer) => {
          setPassword('');
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
        <code>alice</code> for a local account, <code>alice@realm</code> for a directory realm
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

/** Single sign-on: the realm's identity provider, through a full-page navigation. */
function SingleSignOnForm() {
  const [realm, setRealm] = useState('');
  const submit = (event: FormEvent) => {
    event.preventDefault();
    window.location.assign(oidcLoginUrl(realm.trim()));
  };
  return (
    <form onSubmit={submit} aria-label="Single sign-on">
      <label htmlFor="sso-realm">Realm</label>
      <input
        id="sso-realm"
        name="realm"
        autoComplete="off"
        autoCapitalize="none"
        spellCheck={false}
        value={realm}
        onChange={(e) => setRealm(e.target.value)}
        pattern="[a-z][a-z0-9\-]{0,31}"
        title="The realm id: lowercase letters, digits and dashes, starting with a letter"
        required
      />
      <button type="submit">Sign in with single sign-on</button>
    </form>
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
export function LoginPage({ notice, resume }: { notice?: string | null; resume?: Pick<LoginAnswer, 'user' | 'methods'> }) {
  const [pending, setPending] = useState<Pick<LoginAnswer, 'user' | 'methods'> | null>(resume ?? null);
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
          <PasswordForm onSecondFactor={setPending} />
          <section aria-labelledby="other-ways" className="other-ways">
            <h2 id="other-ways">Other ways to sign in</h2>
            <SingleSignOnForm />
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
