import { useQuery } from '@tanstack/react-query';
import { api, ApiError, unwrap, type Schemas } from '../api/client';

export type HaOverview = Schemas['HaOverview_Output'];
export type HaRemoteSummary = Schemas['HaRemoteSummary_Output'];
export type RemoteHa = Schemas['RemoteHa_Output'];
export type HaNode = Schemas['HaNodeView_Output'];
export type HaVm = Schemas['HaVmView_Output'];
export type VmHa = Schemas['VmHa_Output'];
export type HaPolicy = Schemas['HaPolicy'];

export const haKeys = {
  all: ['ha'] as const,
  overview: () => [...haKeys.all, 'overview'] as const,
  remote: (remote: string) => [...haKeys.all, 'remote', remote] as const,
  vm: (remote: string, vmid: string) => [...haKeys.all, 'vm', remote, vmid] as const,
};

/** A refusal (4xx) stays one until something changes: polling it again only adds load. */
const refusedOr = (interval: number) => (query: { state: { error: Error | null } }) =>
  query.state.error instanceof ApiError && query.state.error.status < 500 ? false : interval;

/** Every remote's HA summary from the manager's last HA read (needs remote.audit). */
export function useHaOverview(enabled = true) {
  return useQuery({
    queryKey: haKeys.overview(),
    queryFn: (): Promise<HaOverview> => unwrap(api.GET('/api/v1/ha')),
    enabled,
    refetchInterval: refusedOr(10_000),
  });
}

/** One remote's HA state read now from its agents: coordinator, nodes with health, HA VMs. */
export function useRemoteHa(remote: string | null) {
  return useQuery({
    queryKey: haKeys.remote(remote ?? ''),
    queryFn: (): Promise<RemoteHa> =>
      unwrap(api.GET('/api/v1/remotes/{remote}/ha', { params: { path: { remote: remote! } } })),
    enabled: remote !== null,
    refetchInterval: refusedOr(5_000),
  });
}

/** One VM's HA state and policy read now, with its node's HA state. */
export function useVmHa(remote: string, vmid: string, enabled = true) {
  return useQuery({
    queryKey: haKeys.vm(remote, vmid),
    queryFn: (): Promise<VmHa> =>
      unwrap(
        api.GET('/api/v1/remotes/{remote}/vms/{vmid}/ha', { params: { path: { remote, vmid } } }),
      ),
    enabled,
    refetchInterval: refusedOr(10_000),
  });
}
