import { useQuery } from '@tanstack/react-query';
import { api, ApiError, unwrap, type Schemas } from '../api/client';

export type Pair = Schemas['PairDto_Output'];
export type PoolHealth = NonNullable<Pair['health']>['a'];
export type VmReplication = Schemas['VmReplicationDto_Output'];
export type ImageStatus = NonNullable<VmReplication['images']>[number];
export type FailoverPreview = Schemas['FailoverPreviewDto_Output'];
type PairList = Schemas['PairListDto_Output'];
type VmReplicationList = Schemas['VmReplicationListDto_Output'];

export const replicationKeys = {
  all: ['replication'] as const,
  pairs: () => [...replicationKeys.all, 'pairs'] as const,
  vms: () => [...replicationKeys.all, 'vms'] as const,
  vm: (remote: string, vmid: string) => [...replicationKeys.all, 'vm', remote, vmid] as const,
  failover: (remote: string, vmid: string) =>
    [...replicationKeys.vm(remote, vmid), 'failover'] as const,
};

/** A refusal (4xx) stays one until something changes: polling it again only adds load. */
const refusedOr = (interval: number) => (query: { state: { error: Error | null } }) =>
  query.state.error instanceof ApiError && query.state.error.status < 500 ? false : interval;

/** Every pair of remotes' pools, each with both sides' pool health read now (needs remote.audit). */
export function usePairs(enabled = true) {
  return useQuery({
    queryKey: replicationKeys.pairs(),
    queryFn: (): Promise<PairList> =>
      unwrap(api.GET('/api/v1/replication/pairs', { params: { query: { health: 'true' } } })),
    enabled,
    refetchInterval: refusedOr(30_000),
  });
}

/** Every mirrored VM the caller may see (a tenant: its own), with DR state and RPO from the manager's last poll. */
export function useReplicatedVms() {
  return useQuery({
    queryKey: replicationKeys.vms(),
    queryFn: (): Promise<VmReplicationList> => unwrap(api.GET('/api/v1/replication/vms')),
    refetchInterval: refusedOr(10_000),
  });
}

/** One VM's mirroring with every image at both sites, read now; null when the VM is not mirrored (404). */
export function useVmReplication(remote: string, vmid: string, enabled = true, refreshMs = 30_000) {
  return useQuery({
    queryKey: replicationKeys.vm(remote, vmid),
    queryFn: async (): Promise<VmReplication | null> => {
      try {
        return await unwrap(
          api.GET('/api/v1/remotes/{remote}/vms/{vmid}/replication', {
            params: { path: { remote, vmid } },
          }),
        );
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) return null;
        throw error;
      }
    },
    enabled,
    refetchInterval: refusedOr(refreshMs),
  });
}

/** What an unplanned failover would lose (RPO, last mirrored snapshot) and require, read when the dialog opens. */
export function useFailoverPreview(remote: string, vmid: string) {
  return useQuery({
    queryKey: replicationKeys.failover(remote, vmid),
    queryFn: (): Promise<FailoverPreview> =>
      unwrap(
        api.GET('/api/v1/remotes/{remote}/vms/{vmid}/replication/failover', {
          params: { path: { remote, vmid } },
        }),
      ),
    staleTime: 0,
    gcTime: 0,
  });
}
