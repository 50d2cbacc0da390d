import { useMutation, useQueryClient, type QueryClient } from '@tanstack/react-query';
import { useCallback } from 'react';
import { api, unwrap, type Schemas } from '../api/client';
import { dashboardKeys } from '../dashboard/queries';
import { resourceKeys } from './queries';

export type PowerAction = 'start' | 'shutdown' | 'reboot' | 'stop';
type TaskAccepted = Schemas['TaskAcceptedDto_Output'];

/** POST …/vms/{vmid}/{action}: 202 with the task that carries it out. */
function requestPower(remote: string, vmid: string, action: PowerAction): Promise<TaskAccepted> {
  const params = { params: { path: { remote, vmid } } };
  switch (action) {
    case 'start':
      return unwrap(api.POST('/api/v1/remotes/{remote}/vms/{vmid}/start', params));
    case 'shutdown':
      return unwrap(api.POST('/api/v1/remotes/{remote}/vms/{vmid}/shutdown', params));
    case 'reboot':
      return unwrap(api.POST('/api/v1/remotes/{remote}/vms/{vmid}/reboot', params));
    case 'stop':
      return unwrap(api.POST('/api/v1/remotes/{remote}/vms/{vmid}/stop', params));
  }
}

/** A power action on one VM; the VM, its tasks, the lists and the dashboard reload. */
export function useVmPower(remote: string, vmid: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (action: PowerAction) => requestPower(remote, vmid, action),
    onSettled: () => reloadVm(queryClient, remote, vmid),
  });
}

/** Reloads everything that shows the VM's state (its page and tasks, the lists, the dashboard). */
function reloadVm(queryClient: QueryClient, remote: string, vmid: string) {
  return Promise.all([
    queryClient.invalidateQueries({ queryKey: resourceKeys.vm(remote, vmid) }),
    queryClient.invalidateQueries({ queryKey: resourceKeys.vmLists() }),
    queryClient.invalidateQueries({ queryKey: resourceKeys.tree() }),
    queryClient.invalidateQueries({ queryKey: dashboardKeys.all }),
  ]);
}

/** For the page that follows the action's task: once it ends, the VM shows its new state. */
export function useReloadVm(remote: string, vmid: string) {
  const queryClient = useQueryClient();
  return useCallback(() => reloadVm(queryClient, remote, vmid), [queryClient, remote, vmid]);
}
