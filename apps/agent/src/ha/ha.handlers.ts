import type { HaServiceHandlers } from '@debvisor/proto';
import type { RpcRouter } from '../rpc/rpc-router';
import type { HaService } from './ha.service';
import {
  emptyRequestSchema,
  listHaEventsRequestSchema,
  setHaPolicyRequestSchema,
  setMaintenanceRequestSchema,
  vmRefSchema,
} from './ha.requests';

export function haServiceHandlers(rpc: RpcRouter, ha: HaService): HaServiceHandlers {
  return {
    GetHaStatus: rpc.unary('HaService.GetHaStatus', emptyRequestSchema, () => ha.status()),
    SetHaPolicy: rpc.unary('HaService.SetHaPolicy', setHaPolicyRequestSchema, (input) =>
      ha.setPolicy(input),
    ),
    RemoveHaPolicy: rpc.unary('HaService.RemoveHaPolicy', vmRefSchema, (ref) =>
      ha.removePolicy(ref.uuid),
    ),
    ListHaEvents: rpc.unary('HaService.ListHaEvents', listHaEventsRequestSchema, (input) =>
      ha.events(input.after, input.limit),
    ),
    SetMaintenance: rpc.unary('HaService.SetMaintenance', setMaintenanceRequestSchema, (input) =>
      ha.setMaintenance(input.nodeId, input.enabled),
    ),
  };
}
