import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';
import { snapshotKeys } from './queries';

type SnapshotAccepted = Schemas['SnapshotAcceptedDto_Output'];
type Schedule = Schemas['ScheduleDto_Output'];
export type NewSchedule = Schemas['CreateScheduleBodyDto'];

/** POST …/snapshots: 202 with the task that takes it (and the name, generated when none was given). */
export function useCreateSnapshot(remote: string, vmid: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (body: { name?: string; freeze: boolean }): Promise<SnapshotAccepted> =>
      unwrap(
        api.POST('/api/v1/remotes/{remote}/vms/{vmid}/snapshots', {
          params: { path: { remote, vmid } },
          body,
        }),
      ),
    onSettled: () => queryClient.invalidateQueries({ queryKey: snapshotKeys.vm(remote, vmid) }),
  });
}

/** DELETE …/snapshots/{snapshot}: 202 with the task that removes it from every disk. */
export function useDeleteSnapshot(remote: string, vmid: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (snapshot: string): Promise<SnapshotAccepted> =>
      unwrap(
        api.DELETE('/api/v1/remotes/{remote}/vms/{vmid}/snapshots/{snapshot}', {
          params: { path: { remote, vmid, snapshot } },
        }),
      ),
    onSettled: () => queryClient.invalidateQueries({ queryKey: snapshotKeys.vm(remote, vmid) }),
  });
}

/** POST …/snapshots/{snapshot}/rollback: 202 with the task; stopFirst stops a VM that is not stopped. */
export function useRollbackSnapshot(remote: string, vmid: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: ({
      snapshot,
      stopFirst,
    }: {
      snapshot: string;
      stopFirst: boolean;
    }): Promise<SnapshotAccepted> =>
      unwrap(
        api.POST('/api/v1/remotes/{remote}/vms/{vmid}/snapshots/{snapshot}/rollback', {
          params: { path: { remote, vmid, snapshot } },
          body: { stopFirst },
        }),
      ),
    onSettled: () => queryClient.invalidateQueries({ queryKey: snapshotKeys.vm(remote, vmid) }),
  });
}

/** POST /snapshot-schedules: the schedule, with its first run planned. */
export function useCreateSchedule() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (body: NewSchedule): Promise<Schedule> =>
      unwrap(api.POST('/api/v1/snapshot-schedules', { body })),
    onSettled: () => queryClient.invalidateQueries({ queryKey: snapshotKeys.schedules() }),
  });
}

/** DELETE /snapshot-schedules/{id} (its snapshots stay until deleted by hand). */
export function useDeleteSchedule() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async (id: string): Promise<void> => {
      await unwrap(api.DELETE('/api/v1/snapshot-schedules/{id}', { params: { path: { id } } }));
    },
    onSettled: () => queryClient.invalidateQueries({ queryKey: snapshotKeys.schedules() }),
  });
}
