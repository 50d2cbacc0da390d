import { QueryCache, QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { ApiError } from './api/client';
import { App, type Arrival } from './App';
import './styles.css';
import { reportUnauthorized } from './unauthorized';

// A refusal (4xx) does not change by asking again; anything else is retried once.
const queryClient = new QueryClient({
  queryCache: new QueryCache({
    onError: (error, query) => reportUnauthorized(error, query.queryKey),
  }),
  defaultOptions: {
    queries: {
      retry: (failures, error) =>
        failures < 1 && !(error instanceof ApiError && error.status < 500),
      staleTime: 5_000,
    },
  },
});

/** Reads and removes `?login=` (set by the manager after a single sign-on), once. */
function takeArrival(): Arrival {
  const url = new URL(window.location.href);
  const login = url.searchParams.get('login');
  if (login === null) return null;
  url.searchParams.delete('login');
  window.history.replaceState(null, '', url.pathname + url.search + url.hash);
  return login === 'tfa' || login === 'setup' ? login : null;
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <App arrival={takeArrival()} />
    </QueryClientProvider>
  </StrictMode>,
);
