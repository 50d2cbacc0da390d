import { useQuery } from '@tanstack/react-query';
import { apiGet } from '../api/client';

export interface RemoteStatus {
  remote: string;
  status: 'pending' | 'online' | 'unreachable';
  lastRefreshAt: string | null;
  nodes: { total: number; alive: number };
  vms: { total: number; running: number };
  error: { code: string; message: string } | null;
  since: string | null;
}

export interface ResourceList {
  items: Array<{ type: 'node' | 'vm'; remote: string; id: string; name: string; status: string }>;
  remotes: RemoteStatus[];
}

export const resourceKeys = {
  all: ['resources'] as const,
  list: (filter: { remote?: string; type?: 'node' | 'vm' }) => [...resourceKeys.all, 'list', filter] as const,
};

/** Remote statuses and resources from the manager's cache, refreshed every 15 s. */
export function useResources(filter: { remote?: string; type?: 'node' | 'vm' } = {}) {
  return useQuery({
    queryKey: resourceKeys.list(filter),
    queryFn: () => apiGet<ResourceList>('/resources', filter),
    refetchInterval: 15_000,
  });
}
