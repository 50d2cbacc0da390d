import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { HypervisorDriver, VmDefinition, VmInstance } from '../drivers/hypervisor.driver';
import type { CallContext } from '../rpc/call-context';
import type { Logger } from '../shared/logger';
import { OperationLocks } from '../shared/operation-locks';
import type { VmDiskLocks } from '../vms/vm-disk-locks';
import type { VmIndexRepository, VmLocation } from '../vms/vm-index.repository';
import { FailoverService } from './failover.service';
import type { FenceRecord, MemberRecord } from './ha.records';
import type { HaRepository } from './ha.repository';

const UUID = '00000000-0000-4000-8000-000000000001';
const DETECTED = '2026-01-01T00:00:00.000Z';
const spec = { uuid: UUID, name: 'web-1', disks: [] } as unknown as VmDefinition;
const running: VmInstance = {
  spec,
  runtime: {
    state: 'running',
    cpuUsage: 0,
    memoryUsedBytes: 0,
    uptimeSeconds: 0,
    stateChangedAt: DETECTED,
    lockedBy: '',
  },
};
const coordinator: CallContext = {
  caller: { principal: 'agent:node-2', permissions: ['migration:vm:failover'] },
  forwarded: false,
  deadline: undefined,
  traceId: 't',
};

function fence(state: FenceRecord['state']): FenceRecord {
  return {
    nodeId: 'node-1',
    state,
    epoch: 7,
    blocklisted: [],
    locksBroken: [],
    vms: [UUID],
    at: DETECTED,
    reason: '',
    detectedAt: DETECTED,
    fencedAt: DETECTED,
  };
}

const clean = { cleanAfterEpoch: 7, cleanAfterFence: DETECTED } as MemberRecord;

/** node-1's agent, asked by the coordinator (node-2, epoch 7) to start UUID on node-1 itself. */
function home(records: {
  fence?: FenceRecord;
  member?: MemberRecord;
  location?: VmLocation;
  epoch?: number;
}) {
  const driver = strictMock<Pick<HypervisorDriver, 'get' | 'define' | 'start'>>('driver', {
    get: async () => undefined,
    define: async () => ({ ...running, runtime: { ...running.runtime, state: 'stopped' } }),
    start: async () => running,
  });
  const index = strictMock<Pick<VmIndexRepository, 'get' | 'put'>>('index', {
    get: async () => records.location,
    put: async () => undefined,
  });
  const service = new FailoverService({
    nodeId: 'node-1',
    enabled: true,
    driver,
    index,
    repository: strictMock<Pick<HaRepository, 'leader' | 'fence' | 'member' | 'spec'>>('ha', {
      leader: async () => ({ nodeId: 'node-2', epoch: records.epoch ?? 7, key: 'k' }),
      fence: async () => records.fence,
      member: async () => records.member,
      spec: async () => spec,
    }),
    vmLocks: new OperationLocks('VM'),
    disks: strictMock<Pick<VmDiskLocks, 'lock' | 'unlock'>>('disks', {
      lock: async () => undefined,
    }),
    logger: strictMock<Logger>('logger', { warn: () => undefined }),
  });
  const call = () =>
    service.failover(
      { uuid: UUID, targetNodeId: 'node-1', fencingEpoch: 7, sourceNodeId: 'node-1' },
      coordinator,
    );
  return { call, driver, index };
}

describe('FailoverVm onto the VM’s own node (docs/ha.md, a node that comes back)', () => {
  it('starts a VM of its last fence once that fence is lifted after the node reported clean', async () => {
    const { call, driver, index } = home({
      fence: fence('released'),
      member: clean,
      location: { nodeId: 'node-1', name: 'web-1' },
    });
    await expect(call()).resolves.toMatchObject({
      runtime: { state: 'running', nodeId: 'node-1' },
    });
    expect(index.put).toHaveBeenCalledWith(UUID, { nodeId: 'node-1', name: 'web-1' });
    expect(driver.define).toHaveBeenCalledWith(spec);
    expect(driver.start).toHaveBeenCalledWith(UUID);
  });

  it.each([
    ['the fence is not lifted yet', fence('fenced'), clean],
    ['the node did not report itself clean after that fence', fence('released'), undefined],
    [
      'the clean report is for an earlier fence',
      fence('released'),
      { ...clean, cleanAfterFence: '2025-12-31T00:00:00.000Z' },
    ],
    ['there is no fence record', undefined, clean],
    ['the fence did not name the VM', { ...fence('released'), vms: [] }, clean],
  ])('refuses and starts nothing when %s', async (_why, record, member) => {
    const { call, driver } = home({ fence: record, member: member as MemberRecord | undefined });
    await expect(call()).rejects.toThrow(/starts again on its own node node-1 only once/);
    expect(driver.start).not.toHaveBeenCalled();
  });

  it('refuses when the location index places the VM on another node', async () => {
    const { call, driver } = home({
      fence: fence('released'),
      member: clean,
      location: { nodeId: 'node-3', name: 'web-1' },
    });
    await expect(call()).rejects.toThrow(/placed on node node-3/);
    expect(driver.start).not.toHaveBeenCalled();
  });

  it('refuses a stale coordinator epoch before anything else', async () => {
    const { call, driver } = home({ fence: fence('released'), member: clean, epoch: 8 });
    await expect(call()).rejects.toThrow(/fencing epoch 7 is not the HA coordinator's \(8/);
    expect(driver.start).not.toHaveBeenCalled();
  });
});
