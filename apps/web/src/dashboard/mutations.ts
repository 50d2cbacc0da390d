import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';
import { resourceKeys } from '../resources/queries';
import { dashboardKeys } from './queries';

/**
 * The Refresh button: the manager reads every visible remote now (GET /resources/refresh, which
 * changes nothing, so read-only users may ask), then the dashboard and resource lists reload.
 */
export function useRefreshDashboard() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (): Promise<Schemas['RemoteStatusListDto_Output']> =>
      unwrap(api.GET('/api/v1/resources/refresh')),
    onSettled: () =>
      Promise.all([
        queryClient.invalidateQueries({ queryKey: dashboardKeys.all }),
        queryClient.invalidateQueries({ queryKey: resourceKeys.all }),
      ]),
  });
}
