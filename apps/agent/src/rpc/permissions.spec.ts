import { requiredPermissionSchema } from '@debvisor/common';
import { debvisorV1 } from '@debvisor/proto';
import { describe, expect, it } from 'vitest';
import { RPC_PERMISSIONS } from './permissions';

describe('RPC permission table', () => {
  const v1 = debvisorV1() as unknown as Record<string, { service?: Record<string, unknown> }>;
  const rpcs = Object.entries(v1)
    .flatMap(([service, value]) =>
      value.service ? Object.keys(value.service).map((method) => `${service}.${method}`) : [],
    )
    .sort();

  it('finds the services of the proto', () => {
    expect(rpcs.length).toBeGreaterThan(20);
    expect(rpcs).toContain('VmService.StartVm');
  });

  it('names a permission for every RPC in proto/debvisor.proto and none for RPCs that do not exist', () => {
    expect(Object.keys(RPC_PERMISSIONS).sort()).toEqual(rpcs);
  });

  it('uses only fully qualified service:resource:action permissions', () => {
    for (const [rpc, permission] of Object.entries(RPC_PERMISSIONS)) {
      expect(requiredPermissionSchema.safeParse(permission).success, `${rpc}: ${permission}`).toBe(
        true,
      );
    }
  });

  it('keeps reading and changing VMs apart', () => {
    expect(RPC_PERMISSIONS['VmService.ListVms']).toBe('vm:instance:read');
    expect(RPC_PERMISSIONS['VmService.GetVm']).toBe('vm:instance:read');
    for (const rpc of ['StartVm', 'ShutdownVm', 'RebootVm', 'StopVm'] as const)
      expect(RPC_PERMISSIONS[`VmService.${rpc}`]).toBe('vm:instance:power');
  });
});
