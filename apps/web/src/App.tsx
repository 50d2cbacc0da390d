import { useEffect, useState } from 'react';
import { AccountPage } from './account/AccountPage';
import { errorMessage } from './api/client';
import { LoginPage } from './auth/LoginPage';
import { useLogout, useSignedOut } from './auth/mutations';
import { useSignedIn, type SignedIn } from './auth/queries';
import { TfaSetup } from './auth/TfaSetup';
import { RemotesPage } from './remotes/RemotesPage';
import { useView, VIEW_HASH, type View } from './view';

/** How the page was reached: `/?login=tfa` or `/?login=setup` after a single sign-on whose second factor follows. */
export type Arrival = 'tfa' | 'setup' | null;

function AccountBar({ signedIn, view }: { signedIn: SignedIn; view: View }) {
  const logout = useLogout();
  return (
    <header className="appbar">
      <span className="product">DebVisor Datacenter Manager</span>
      <nav aria-label="Pages" className="pages">
        <a href={VIEW_HASH.remotes} aria-current={view === 'remotes' ? 'page' : undefined}>
          Remotes
        </a>
        <a href={VIEW_HASH.account} aria-current={view === 'account' ? 'page' : undefined}>
          Account
        </a>
      </nav>
      <span>
        Signed in as <strong data-testid="signed-in-user">{signedIn.user}</strong>
      </span>
      <button type="button" onClick={() => logout.mutate()} disabled={logout.isPending}>
        Log out
      </button>
      {logout.isError && (
        <span role="alert" className="error">
          {errorMessage(logout.error)}
        </span>
      )}
    </header>
  );
}

/**
 * Start-up asks the manager whether a session exists (GET /auth/session): signed in → the remotes;
 * a second factor to enrol → its setup; otherwise the login page.
 */
export function App({ arrival = null }: { arrival?: Arrival }) {
  const signedIn = useSignedIn();
  const signedOut = useSignedOut();
  const logout = useLogout();
  const view = useView();
  const [notice, setNotice] = useState<string | null>(() =>
    arrival === 'tfa' ? 'Your single sign-on login needs a second factor, and this page could not resume it: please sign in again.' : null,
  );

  // A notice explains one return to the login page; once signed in again, it is done.
  useEffect(() => {
    if (signedIn.data) setNotice(null);
  }, [signedIn.data]);

  if (signedIn.isPending) return <p className="loading">Loading…</p>;
  if (signedIn.isError) {
    return (
      <main className="narrow">
        <h1>DebVisor Datacenter Manager</h1>
        <p role="alert" className="error">
          {errorMessage(signedIn.error)}
        </p>
        <button type="button" onClick={() => void signedIn.refetch()}>
          Try again
        </button>
      </main>
    );
  }
  const current = signedIn.data;
  if (!current) return <LoginPage notice={notice} />;
  if (current.stage === 'tfa') return <LoginPage notice={notice} resume={{ user: current.user, methods: [...(current.methods ?? ['totp', 'recovery'])] }} />;
  if (current.stage === 'setup') return <TfaSetup user={current.user} askPassword={arrival !== 'setup'} onLogOut={() => logout.mutate()} />;
  return (
    <>
      <AccountBar signedIn={current} view={view} />
      {view === 'account' ? (
        <AccountPage signedIn={current} />
      ) : (
        <RemotesPage
          signedIn={current}
          onUnauthorized={(message) => {
            setNotice(`Signed out: ${message}`);
            signedOut();
          }}
        />
      )}
    </>
  );
}
