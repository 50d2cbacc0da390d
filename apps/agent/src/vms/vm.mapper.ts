import type { Vm } from '@debvisor/proto';
import type { VmInstance } from '../drivers/hypervisor.driver';

export function toProtoVm(instance: VmInstance, nodeId: string): Vm {
  return { spec: instance.spec, runtime: { ...instance.runtime, nodeId } };
}
