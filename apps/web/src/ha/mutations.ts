import { useMutation, useQueryClient, type QueryClient } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';
import { haKeys, type HaPolicy } from './queries';

type TaskAccepted = Schemas['TaskAcceptedDto_Output'];
type VmHa = Schemas['VmHa_Output'];
type HaNode = Schemas['HaNodeView_Output'];

const reload = (queryClient: QueryClient) =>
  queryClient.invalidateQueries({ queryKey: haKeys.all });

/** PUT …/vms/{vmid}/ha: the VM under HA with this policy (vm.ha). */
export function useSetHaPolicy(remote: string, vmid: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (body: HaPolicy): Promise<VmHa> =>
      unwrap(
        api.PUT('/api/v1/remotes/{remote}/vms/{vmid}/ha', {
          params: { path: { remote, vmid } },
          body,
        }),
      ),
    onSettled: () => reload(queryClient),
  });
}

/** DELETE …/vms/{vmid}/ha: the VM no longer recovered by HA (vm.ha). */
export function useRemoveHaPolicy(remote: string, vmid: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async (): Promise<void> => {
      await unwrap(
        api.DELETE('/api/v1/remotes/{remote}/vms/{vmid}/ha', {
          params: { path: { remote, vmid } },
        }),
      );
    },
    onSettled: () => reload(queryClient),
  });
}

/** POST …/nodes/{node}/maintenance: drain the node (202 + the ha.drain task); DELETE: back to service. */
export function useMaintenance(remote: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: ({
      node,
      enter,
    }: {
      node: string;
      enter: boolean;
    }): Promise<TaskAccepted | HaNode> => {
      const params = { params: { path: { remote, node } } };
      return enter
        ? unwrap(api.POST('/api/v1/remotes/{remote}/nodes/{node}/maintenance', params))
        : unwrap(api.DELETE('/api/v1/remotes/{remote}/nodes/{node}/maintenance', params));
    },
    onSettled: () => reload(queryClient),
  });
}
