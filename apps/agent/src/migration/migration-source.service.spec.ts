import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import type { HypervisorDriver, VmInstance } from '../drivers/hypervisor.driver';
import { ErrorCode } from '../shared/agent-error';
import { OperationLocks } from '../shared/operation-locks';
import { MigrationSourceService, type MigrationSourceDeps } from './migration-source.service';
import type { MigrateVmInput } from './migration.requests';

const UUID = '6b1b8c52-5f4e-4c7b-9d59-2f3c8a1e0b11';
const vm: VmInstance = {
  spec: {
    uuid: UUID,
    name: 'web-01',
    vcpus: 1,
    memoryBytes: 2 ** 30,
    disks: [],
    nics: [],
    cpuModel: 'host-model',
    hugepages: false,
    tenant: '',
    labels: {},
  },
  runtime: {
    state: 'running',
    cpuUsage: 0,
    memoryUsedBytes: 0,
    uptimeSeconds: 0,
    stateChangedAt: '2026-01-01T00:00:00.000Z',
    lockedBy: '',
  },
};

function service(vmLocks: OperationLocks) {
  const deps = {
    nodeId: 'node-1',
    progressIntervalMs: 10,
    driver: strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => vm,
      facts: async () => ({ cpuModel: 'x86-64-v2', cpuFlags: [] }) as never,
    }),
    index: strictMock<MigrationSourceDeps['index']>('index'),
    tunnels: strictMock<MigrationSourceDeps['tunnels']>('tunnels'),
    data: strictMock<MigrationSourceDeps['data']>('data'),
    sockets: strictMock<MigrationSourceDeps['sockets']>('sockets'),
    vmLocks,
    disks: strictMock<MigrationSourceDeps['disks']>('disks'),
    storage: strictMock('storage'),
    mirrored: strictMock<MigrationSourceDeps['mirrored']>('mirrored'),
    clusterCa: undefined as never,
    clock: fakeClock(),
    logger: pino({ level: 'silent' }),
  } as MigrationSourceDeps;
  return new MigrationSourceService(deps);
}

describe('MigrationSourceService and storage operations', () => {
  it('refuses to migrate a VM while a storage operation holds it, naming the operation, before opening anything', async () => {
    const vmLocks = new OperationLocks('VM');
    vmLocks.hold(UUID, 'snapshot', 'web-01');
    const input = {
      uuid: UUID,
      migrationId: '0b6f2f7e-3f56-4a62-9a1e-7f8b1b2c3d4e',
    } as MigrateVmInput;
    await expect(service(vmLocks).migrate(input, () => undefined)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: 'the VM is busy with "snapshot"; wait until it finishes',
    });
  });

  it('reports the storage operation in its pre-flight', async () => {
    const vmLocks = new OperationLocks('VM');
    vmLocks.hold(UUID, 'rollback', 'web-01');
    const answer = await service(vmLocks).prepare({ vm: vm.spec, online: true } as never);
    expect(answer.ok).toBe(false);
    expect(answer.checks).toContainEqual({
      name: 'vm-lock',
      result: 'fail',
      reason: 'the VM is busy with "rollback"; wait until it finishes',
    });
  });
});
