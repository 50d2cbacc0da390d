import { useState, type FormEvent } from 'react';
import { credential } from './api/client';
import { RemotesPage } from './remotes/RemotesPage';

/** Sign-in with an API token (milestone 1; realms and two-factor login come with the identity work). */
function TokenForm({ onSignedIn }: { onSignedIn: () => void }) {
  const [token, setToken] = useState('');
  const submit = (event: FormEvent) => {
    event.preventDefault();
    credential.set(token.trim());
    onSignedIn();
  };
  return (
    <main className="narrow">
      <h1>DebVisor Datacenter Manager</h1>
      <form onSubmit={submit}>
        <label htmlFor="token">API token</label>
        <input
          id="token"
          type="password"
          autoComplete="off"
          value={token}
          onChange={(e) => setToken(e.target.value)}
          placeholder="dvdm_…"
          pattern="dvdm_[0-9a-f]{16}_[A-Za-z0-9_\-]{43}"
          required
        />
        <button type="submit">Sign in</button>
      </form>
    </main>
  );
}

export function App() {
  const [signedIn, setSignedIn] = useState(() => credential.get() !== null);
  if (!signedIn) return <TokenForm onSignedIn={() => setSignedIn(true)} />;
  return (
    <RemotesPage
      onUnauthorized={() => {
        credential.clear();
        setSignedIn(false);
      }}
    />
  );
}
