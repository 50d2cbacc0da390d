import { strictMock } from '@debvisor/testing/strict-mock';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { HypervisorDriver, VmInstance } from '../hypervisor.driver';
import { SimDiskWriter } from './sim-disk-writer';
import type { SimStorageDriver } from './sim-storage.driver';

const vm = (uuid: string, state: VmInstance['runtime']['state'], images: string[]) =>
  ({
    spec: { uuid, disks: images.map((image) => ({ pool: 'rbd', image })) },
    runtime: { state },
  }) as unknown as VmInstance;

describe('SimDiskWriter: running sim VMs write to their disks', () => {
  it('writes every disk of every running VM as that VM, and goes on when a write is refused', async () => {
    const hypervisor = strictMock<Pick<HypervisorDriver, 'list'>>('hypervisor', {
      list: async () => [
        vm('vm-a', 'running', ['a-disk0', 'a-disk1']),
        vm('vm-b', 'stopped', ['b-disk0']),
        vm('vm-c', 'running', ['c-disk0']),
      ],
    });
    const storage = strictMock<Pick<SimStorageDriver, 'writeImage'>>('storage', {
      writeImage: async (ref) => {
        if (ref.image === 'a-disk0')
          throw new AgentError(ErrorCode.FailedPrecondition, 'a non-primary mirror (read-only)');
        return { version: 2, checksum: 'x' };
      },
    });
    await new SimDiskWriter(hypervisor, storage, 1_000, pino({ level: 'silent' })).write();
    expect(storage.writeImage.mock.calls).toEqual([
      [{ pool: 'rbd', image: 'a-disk0' }, 'vm-a'],
      [{ pool: 'rbd', image: 'a-disk1' }, 'vm-a'],
      [{ pool: 'rbd', image: 'c-disk0' }, 'vm-c'],
    ]);
  });
});
