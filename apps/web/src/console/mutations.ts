import { useMutation } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from '../api/client';

export type ConsoleTicket = Schemas['ConsoleTicket_Output'];

/** POST …/vms/{vmid}/console/ticket: a single-use ticket for the console WebSocket. */
export function useConsoleTicket(remote: string, vmid: string) {
  return useMutation({
    mutationFn: (): Promise<ConsoleTicket> =>
      unwrap(
        api.POST('/api/v1/remotes/{remote}/vms/{vmid}/console/ticket', {
          params: { path: { remote, vmid } },
        }),
      ),
  });
}
