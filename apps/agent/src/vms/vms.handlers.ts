import type { VmServiceHandlers } from '@debvisor/proto';
import type { RpcRouter } from '../rpc/rpc-router';
import type { VmService } from './vm.service';
import {
  defineVmRequestSchema,
  listVmsRequestSchema,
  shutdownVmRequestSchema,
  vmRefSchema,
} from './vm.requests';

/** Every VmService handler but Console (console/console.handlers.ts). */
export function vmServiceHandlers(
  rpc: RpcRouter,
  vms: VmService,
): Omit<VmServiceHandlers, 'Console'> {
  return {
    ListVms: rpc.unary('VmService.ListVms', listVmsRequestSchema, ({ nodeId }, context) =>
      vms.list(nodeId, context),
    ),
    GetVm: rpc.unary('VmService.GetVm', vmRefSchema, ({ uuid }, context) => vms.get(uuid, context)),
    StartVm: rpc.unary('VmService.StartVm', vmRefSchema, ({ uuid }, context) =>
      vms.start(uuid, context),
    ),
    ShutdownVm: rpc.unary(
      'VmService.ShutdownVm',
      shutdownVmRequestSchema,
      ({ uuid, ...options }, context) => vms.shutdown(uuid, options, context),
    ),
    RebootVm: rpc.unary('VmService.RebootVm', vmRefSchema, ({ uuid }, context) =>
      vms.reboot(uuid, context),
    ),
    StopVm: rpc.unary('VmService.StopVm', vmRefSchema, ({ uuid }, context) =>
      vms.stop(uuid, context),
    ),
    DefineVm: rpc.unary('VmService.DefineVm', defineVmRequestSchema, ({ spec, nodeId }, context) =>
      vms.define(spec, nodeId, context),
    ),
    UndefineVm: rpc.unary('VmService.UndefineVm', vmRefSchema, ({ uuid }, context) =>
      vms.undefine(uuid, context),
    ),
  };
}
