import { useEffect } from 'react';
import { ApiError, errorMessage } from '../api/client';
import { holds, type SignedIn } from '../auth/queries';
import { useRefreshResources } from './mutations';
import { useResources, type RemoteStatus } from './queries';

function StatusBadge({ remote }: { remote: RemoteStatus }) {
  const label = remote.status === 'unreachable' ? `unreachable since ${new Date(remote.since ?? '').toLocaleString()}` : remote.status;
  return <span className={`badge badge-${remote.status}`}>{label}</span>;
}

/** `onUnauthorized`: the credential stopped working (session ended, token revoked); the message says why. */
export function RemotesPage({ signedIn, onUnauthorized }: { signedIn: SignedIn; onUnauthorized: (message: string) => void }) {
  const { data, error, isLoading, dataUpdatedAt, isFetching } = useResources({ type: 'node' });
  const refresh = useRefreshResources();
  const unauthorized = [error, refresh.error].find((e): e is ApiError => e instanceof ApiError && e.status === 401);
  useEffect(() => {
    if (unauthorized) onUnauthorized(unauthorized.message);
  }, [unauthorized, onUnauthorized]);
  // Refreshing needs remote.audit on /remotes or below it. The session lists what is held on / only;
  // a remote in the list proves a grant below it.
  const mayRefresh = holds(signedIn, 'remote.audit') || (data?.remotes.length ?? 0) > 0;
  return (
    <main>
      <header className="toolbar">
        <h1>Remotes</h1>
        <span className="muted" aria-live="polite">
          {dataUpdatedAt ? `Last updated ${new Date(dataUpdatedAt).toLocaleTimeString()}` : ''}
        </span>
        {mayRefresh && (
          <button type="button" onClick={() => refresh.mutate(undefined)} disabled={refresh.isPending || isFetching}>
            {refresh.isPending ? 'Refreshing…' : 'Refresh'}
          </button>
        )}
      </header>
      {isLoading && <p>Loading…</p>}
      {!unauthorized &&
        [error, refresh.error].map(
          (e, i) =>
            e && (
              <p key={i} role="alert" className="error">
                {errorMessage(e)}
              </p>
            ),
        )}
      {data && data.remotes.length === 0 && <p>No remotes yet. Add one through the API (see docs/manager.md).</p>}
      {data && data.remotes.length > 0 && (
        <table>
          <caption className="visually-hidden">Remotes and their health</caption>
          <thead>
            <tr>
              <th scope="col">Remote</th>
              <th scope="col">Status</th>
              <th scope="col">Nodes up</th>
              <th scope="col">VMs running</th>
              <th scope="col">Last answer</th>
            </tr>
          </thead>
          <tbody>
            {data.remotes.map((remote) => (
              <tr key={remote.remote} className={remote.status === 'unreachable' ? 'row-bad' : undefined}>
                <th scope="row">{remote.remote}</th>
                <td>
                  <StatusBadge remote={remote} />
                  {remote.error && <div className="muted">{remote.error.message}</div>}
                </td>
                <td>
                  {remote.nodes.alive} / {remote.nodes.total}
                </td>
                <td>
                  {remote.vms.running} / {remote.vms.total}
                </td>
                <td>{remote.lastRefreshAt ? new Date(remote.lastRefreshAt).toLocaleTimeString() : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
