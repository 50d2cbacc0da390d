import { useQuery } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';
import type { NodeResource, VmDetail } from './migration-form';

export const migrationKeys = {
  all: ['migration'] as const,
  vm: (remote: string, vmid: string) => [...migrationKeys.all, 'vm', remote, vmid] as const,
  targets: () => [...migrationKeys.all, 'targets'] as const,
};

/** The VM to move, with its disks, NICs and the caller's privileges on it. */
export function useMigrationVm(remote: string, vmid: string) {
  return useQuery({
    queryKey: migrationKeys.vm(remote, vmid),
    queryFn: (): Promise<VmDetail> =>
      unwrap(
        api.GET('/api/v1/remotes/{remote}/vms/{vmid}', { params: { path: { remote, vmid } } }),
      ),
  });
}

/**
 * Where a VM could go: every node of every remote the caller sees, with each remote's status and
 * the caller's privileges there (GET /resources?type=node, from the manager's cache).
 */
export function useMigrationTargets() {
  return useQuery({
    queryKey: migrationKeys.targets(),
    queryFn: async () => {
      const answer: Schemas['ResourceList_Output'] = await unwrap(
        api.GET('/api/v1/resources', { params: { query: { type: 'node', limit: 5000 } } }),
      );
      return {
        remotes: answer.remotes,
        nodes: answer.items.filter((item): item is NodeResource => item.type === 'node'),
      };
    },
    refetchInterval: 15_000,
  });
}
