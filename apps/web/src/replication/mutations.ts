import { useMutation, useQueryClient, type QueryClient } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';
import { replicationKeys } from './queries';

type TaskAccepted = Schemas['TaskAcceptedDto_Output'];
type PairAccepted = Schemas['PairAcceptedDto_Output'];
export type NewPair = Schemas['CreatePairDto'];
export type EnableReplication = Schemas['EnableReplicationDto'];
export type Failover = Schemas['FailoverDto'];

/** The VM's mirroring and every list that shows it. */
function reload(queryClient: QueryClient, remote?: string, vmid?: string) {
  return Promise.all([
    queryClient.invalidateQueries({ queryKey: replicationKeys.vms() }),
    queryClient.invalidateQueries({ queryKey: replicationKeys.pairs() }),
    ...(remote && vmid
      ? [queryClient.invalidateQueries({ queryKey: replicationKeys.vm(remote, vmid) })]
      : []),
  ]);
}

/** POST /replication/pairs: 202 with the pairing task (the peer bootstrap token never reaches the browser). */
export function useCreatePair() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (body: NewPair): Promise<PairAccepted> =>
      unwrap(api.POST('/api/v1/replication/pairs', { body })),
    onSettled: () => reload(queryClient),
  });
}

/** DELETE /replication/pairs/{id}. */
export function useDeletePair() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async (id: string): Promise<void> => {
      await unwrap(api.DELETE('/api/v1/replication/pairs/{id}', { params: { path: { id } } }));
    },
    onSettled: () => reload(queryClient),
  });
}

export type DrAction = 'disable' | 'switchover' | 'resync';

/**
 * One DR action on a mirrored VM, named at `remote` (either of its two remotes): 202 with the
 * task. Failover has its own mutation (it needs the operator's confirmations).
 */
export function useDrAction(remote: string, vmid: string) {
  const queryClient = useQueryClient();
  const path = { params: { path: { remote, vmid } } };
  return useMutation({
    mutationFn: (action: DrAction): Promise<TaskAccepted> => {
      switch (action) {
        case 'disable':
          return unwrap(api.DELETE('/api/v1/remotes/{remote}/vms/{vmid}/replication', path));
        case 'switchover':
          return unwrap(
            api.POST('/api/v1/remotes/{remote}/vms/{vmid}/replication/switchover', {
              ...path,
              body: {},
            }),
          );
        case 'resync':
          return unwrap(
            api.POST('/api/v1/remotes/{remote}/vms/{vmid}/replication/resync', {
              ...path,
              body: {},
            }),
          );
      }
    },
    onSettled: () => reload(queryClient, remote, vmid),
  });
}

/** POST …/replication/failover: force-promote the copy at the survivor after fencing or declaring the source down. */
export function useFailover(remote: string, vmid: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (body: Failover): Promise<TaskAccepted> =>
      unwrap(
        api.POST('/api/v1/remotes/{remote}/vms/{vmid}/replication/failover', {
          params: { path: { remote, vmid } },
          body,
        }),
      ),
    onSettled: () => reload(queryClient, remote, vmid),
  });
}

/** POST …/replication: start mirroring the VM's disks to the paired remote. */
export function useEnableReplication(remote: string, vmid: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (body: EnableReplication): Promise<TaskAccepted> =>
      unwrap(
        api.POST('/api/v1/remotes/{remote}/vms/{vmid}/replication', {
          params: { path: { remote, vmid } },
          body,
        }),
      ),
    onSettled: () => reload(queryClient, remote, vmid),
  });
}
