import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { VmInstance } from '../drivers/hypervisor.driver';
import type { HaConfig } from './ha-config.schema';
import { HaNodeService, type HaNodeDeps } from './ha-node.service';
import type { HaRepository } from './ha.repository';

const UUID = '5c667f5c-c6f1-4f68-9c61-1db8ea6b5295';

/** node-1 holds a running copy of an HA VM that the VM index still places on node-2. */
function setup(arriving: boolean) {
  const dropped: string[] = [];
  const vm = {
    spec: { uuid: UUID, name: 'files-01' },
    runtime: { state: 'running' },
  } as unknown as VmInstance;
  const repository = strictMock<HaRepository>('HaRepository', {
    snapshot: async () =>
      ({
        policies: new Map([[UUID, { vmUuid: UUID, policy: { enabled: true } }]]),
      }) as unknown as Awaited<ReturnType<HaRepository['snapshot']>>,
    fence: async () => undefined,
    member: async () => undefined,
    putMember: async () => undefined,
    spec: async () => vm.spec as never,
  });
  const deps = {
    nodeId: 'node-1',
    config: {
      selfFence: false,
      tickMs: 60_000,
      fenceAddresses: [],
      groups: [],
    } as unknown as HaConfig,
    driver: {
      list: async () => [vm],
      facts: async () => ({ cpuModel: 'host', cpuFlags: [] }),
      stop: async (uuid: string) => void dropped.push(`stop ${uuid}`),
      undefine: async (uuid: string) => void dropped.push(`undefine ${uuid}`),
    },
    index: { get: async () => ({ nodeId: 'node-2', name: 'files-01' }) },
    repository,
    gate: { beat: () => undefined },
    arriving: (uuid: string) => arriving && uuid === UUID,
    clock: { now: () => new Date('2026-12-08T03:00:00Z') },
    logger: { warn: () => undefined, error: () => undefined },
  } as unknown as HaNodeDeps;
  return { service: new HaNodeService(deps), dropped };
}

describe('HaNodeService', () => {
  it('keeps a VM a migration is bringing here although the VM index still names its source', async () => {
    const { service, dropped } = setup(true);
    await service.start();
    await service.stop();
    expect(dropped).toEqual([]);
  });

  it('drops a copy of an HA VM that the VM index places on another node', async () => {
    const { service, dropped } = setup(false);
    await service.start();
    await service.stop();
    expect(dropped).toEqual([`stop ${UUID}`, `undefine ${UUID}`]);
  });
});
