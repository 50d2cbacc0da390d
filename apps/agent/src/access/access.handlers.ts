import type { AccessServiceHandlers } from '@debvisor/proto';
import type { RpcRouter } from '../rpc/rpc-router';

/** Authenticated and authorized like every RPC, then UNIMPLEMENTED until the identity-and-access milestone. */
export function accessServiceHandlers(rpc: RpcRouter): AccessServiceHandlers {
  return {
    SyncUsersGroups: rpc.unimplemented('AccessService.SyncUsersGroups', 'identity and access'),
  };
}
