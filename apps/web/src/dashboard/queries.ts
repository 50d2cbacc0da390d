import { useQuery } from '@tanstack/react-query';
import { api, ApiError, unwrap, type Schemas } from '../api/client';

export type Dashboard = Schemas['Dashboard_Output'];
export type DashboardRemote = Schemas['DashboardRemote_Output'];
export type DashboardTask = Schemas['DashboardTask_Output'];

/** The dashboard refreshes itself this often (the manager's cache is refreshed by its own poller). */
export const DASHBOARD_REFRESH_MS = 10_000;

export const dashboardKeys = {
  all: ['dashboard'] as const,
  overview: () => [...dashboardKeys.all, 'overview'] as const,
};

/** GET /dashboard: every visible remote with its figures, the totals, alerts and running tasks. */
export function useDashboard() {
  return useQuery({
    queryKey: dashboardKeys.overview(),
    queryFn: (): Promise<Dashboard> => unwrap(api.GET('/api/v1/dashboard')),
    // A refusal (403: no remote.audit anywhere) stays one: no point in asking every 10 s.
    refetchInterval: (query) =>
      query.state.error instanceof ApiError && query.state.error.status < 500
        ? false
        : DASHBOARD_REFRESH_MS,
  });
}
