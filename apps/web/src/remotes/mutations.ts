import { useMutation, useQueryClient } from '@tanstack/react-query';
import { apiGet } from '../api/client';
import { resourceKeys } from './queries';

/** Asks the manager to poll the remotes now (all, or one), then reloads what the page shows. */
export function useRefreshResources() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (remote?: string) => apiGet<unknown>('/resources/refresh', { remote }),
    onSettled: () => queryClient.invalidateQueries({ queryKey: resourceKeys.all }),
  });
}
