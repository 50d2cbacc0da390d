import { useEffect, useId, useState } from 'react';
import { ApiError } from '../api/client';
import { may } from '../auth/permissions';
import type { SignedIn } from '../auth/queries';
import { ErrorNote } from '../ui/ErrorNote';
import { LastUpdated } from '../ui/LastUpdated';
import { navigate } from '../view';
import type { Sort } from './paging';
import { useFirstVmPage, useReloadResources, useVmOwners } from './queries';
import { ResourceTree } from './ResourceTree';
import './resources.css';
import { SEARCH_KEYS } from './search-terms';
import { VmTable } from './VmTable';

/** How long typing may pause before the search runs. */
const DEBOUNCE_MS = 250;

/**
 * The search box: what is typed goes into the address (#/resources?q=…) after a short pause or on
 * Enter, so that the back button returns to the previous search; the manager evaluates it.
 */
function SearchBox({ q, problem }: { q: string; problem: string | null }) {
  const [text, setText] = useState(q);
  const inputId = useId();
  const helpId = useId();
  const problemId = useId();

  // The address changed (back button, a tree link): show its search.
  useEffect(() => setText(q), [q]);
  useEffect(() => {
    if (text.trim() === q) return;
    const timer = setTimeout(() => navigate({ page: 'resources', q: text.trim() }), DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [text, q]);

  return (
    <form
      role="search"
      className="search"
      onSubmit={(event) => {
        event.preventDefault();
        if (text.trim() !== q) navigate({ page: 'resources', q: text.trim() });
      }}
    >
      <label htmlFor={inputId}>Search</label>
      <input
        id={inputId}
        type="search"
        value={text}
        onChange={(event) => setText(event.target.value)}
        placeholder="remote:dc-east status:running web"
        aria-describedby={problem ? `${problemId} ${helpId}` : helpId}
        aria-invalid={problem ? true : undefined}
        autoComplete="off"
        spellCheck={false}
      />
      {problem && (
        <p id={problemId} role="alert" className="error search-problem">
          {problem}
        </p>
      )}
      <p id={helpId} className="muted search-help">
        Terms all must match: <code>key:value</code> with the keys{' '}
        {SEARCH_KEYS.map((key, i) => [i > 0 && ', ', <code key={key}>{key}</code>])} (
        <code>label:env=prod</code>, <code>name:&quot;web 1&quot;</code>); the same key twice
        matches either; a bare word matches names.
      </p>
    </form>
  );
}

/** Remotes and nodes on the left; the VMs matching the search on the right, fetched page by page. */
export function ResourcesPage({ signedIn, q }: { signedIn: SignedIn; q: string }) {
  const [sort, setSort] = useState<Sort | undefined>(undefined);
  const first = useFirstVmPage(q, sort);
  const owners = useVmOwners(may(signedIn, 'access.audit'));
  const reload = useReloadResources();
  const badSearch =
    first.error instanceof ApiError && first.error.status === 400 ? first.error.message : null;
  const total = first.data?.total;
  return (
    <main className="resources">
      <header className="toolbar">
        <h1>Resources</h1>
        <LastUpdated
          at={first.dataUpdatedAt}
          fetching={first.isFetching}
          onRefresh={() => void reload()}
        />
      </header>
      <div className="resources-layout">
        <ResourceTree q={q} />
        <section aria-label="VMs" className="vm-list">
          <SearchBox q={q} problem={badSearch} />
          {!badSearch && <ErrorNote error={first.error} />}
          <p className="result-line" aria-live="polite">
            {first.isPending && !first.error && 'Searching…'}
            {total !== undefined && !first.error && (
              <>
                <span data-testid="result-count">{total}</span>{' '}
                {total === 1 ? 'VM matches' : 'VMs match'}
                {first.data && first.data.remotes.some((r) => r.status === 'unreachable') && (
                  <span className="warn-text">
                    {' '}
                    (some remotes are unreachable: their VMs show the last known state)
                  </span>
                )}
              </>
            )}
          </p>
          {total !== undefined && total > 0 && !first.error && (
            <VmTable q={q} sort={sort} total={total} owners={owners.data} onSort={setSort} />
          )}
          {total === 0 && !first.error && <p className="muted">No VM matches this search.</p>}
        </section>
      </div>
    </main>
  );
}
