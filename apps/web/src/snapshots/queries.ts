import { useQuery } from '@tanstack/react-query';
import { api, ApiError, unwrap, type Schemas } from '../api/client';

export type Snapshot = Schemas['SnapshotListDto_Output']['items'][number];
export type SnapshotList = Schemas['SnapshotListDto_Output'];
export type Schedule = Schemas['ScheduleDto_Output'];
type ScheduleList = Schemas['ScheduleListDto_Output'];

export const snapshotKeys = {
  all: ['snapshots'] as const,
  vm: (remote: string, vmid: string) => [...snapshotKeys.all, 'vm', remote, vmid] as const,
  schedules: () => [...snapshotKeys.all, 'schedules'] as const,
};

/** A refusal (4xx) stays one until something changes: polling it again only adds load. */
const refusedOr = (interval: number) => (query: { state: { error: Error | null } }) =>
  query.state.error instanceof ApiError && query.state.error.status < 500 ? false : interval;

/** The VM's snapshots as its remote has them (oldest first), with the caller's quota. */
export function useVmSnapshots(remote: string, vmid: string) {
  return useQuery({
    queryKey: snapshotKeys.vm(remote, vmid),
    queryFn: (): Promise<SnapshotList> =>
      unwrap(
        api.GET('/api/v1/remotes/{remote}/vms/{vmid}/snapshots', {
          params: { path: { remote, vmid } },
        }),
      ),
    refetchInterval: refusedOr(30_000),
  });
}

/** Every snapshot schedule the caller may see (the manager has no per-VM filter: the VM page picks its own). */
export function useSnapshotSchedules() {
  return useQuery({
    queryKey: snapshotKeys.schedules(),
    queryFn: (): Promise<ScheduleList> => unwrap(api.GET('/api/v1/snapshot-schedules')),
    refetchInterval: refusedOr(60_000),
  });
}
