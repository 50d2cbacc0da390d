import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { HypervisorDriver, VmInstance } from '../drivers/hypervisor.driver';
import type { NodeEntry } from '../registry/node.schema';
import type { CallContext } from '../rpc/call-context';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { OperationLocks } from '../shared/operation-locks';
import { VmService, type VmServiceDeps } from './vm.service';

const UUID = '6b1b8c52-5f4e-4c7b-9d59-2f3c8a1e0b11';
const context: CallContext = {
  caller: { principal: 'manager', permissions: ['*'], keyId: 'k' },
  forwarded: false,
  deadline: undefined,
  traceId: 't1',
};
const forwarded: CallContext = {
  ...context,
  forwarded: true,
  caller: { principal: 'manager', permissions: ['*'], forwardedBy: 'node-1' },
};

const vm = (uuid = UUID, state: VmInstance['runtime']['state'] = 'stopped'): VmInstance => ({
  spec: {
    uuid,
    name: 'web-01',
    vcpus: 2,
    memoryBytes: 2 ** 31,
    disks: [],
    nics: [],
    cpuModel: 'host-model',
    hugepages: false,
    tenant: '',
    labels: {},
  },
  runtime: {
    state,
    cpuUsage: 0,
    memoryUsedBytes: 0,
    uptimeSeconds: 0,
    stateChangedAt: '2026-01-01T00:00:00.000Z',
    lockedBy: '',
  },
});
const node = (nodeId: string, alive = true) =>
  ({
    info: { nodeId, agentEndpoint: `10.0.0.${nodeId.slice(-1)}:9443` },
    status: undefined,
    alive,
  }) as unknown as NodeEntry;

function service(deps: Partial<VmServiceDeps>) {
  return new VmService({
    nodeId: 'node-1',
    driver: strictMock<HypervisorDriver>('HypervisorDriver'),
    index: strictMock<VmServiceDeps['index']>('VmServiceDeps.index'),
    registry: strictMock<VmServiceDeps['registry']>('VmServiceDeps.registry'),
    peers: strictMock<VmServiceDeps['peers']>('VmServiceDeps.peers'),
    vmLocks: new OperationLocks('VM'),
    disks: strictMock<VmServiceDeps['disks']>('VmServiceDeps.disks'),
    logger: pino({ level: 'silent' }),
    ...deps,
  });
}

describe('VmService', () => {
  it('starts a VM of this node through the driver, without looking anywhere else', async () => {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => vm(),
      start: async () => vm(UUID, 'running'),
    });
    const disks = strictMock<VmServiceDeps['disks']>('disks', { lock: async () => undefined });
    const result = await service({ driver, disks }).start(UUID, context);
    expect(result.runtime).toMatchObject({ state: 'running', nodeId: 'node-1' });
  });

  it('forwards an operation on a VM of another node to that node, as the original caller', async () => {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', { get: async () => undefined });
    const index = strictMock<VmServiceDeps['index']>('VmServiceDeps.index', {
      get: async () => ({ nodeId: 'node-2', name: 'web-01' }),
    });
    const registry = strictMock<VmServiceDeps['registry']>('VmServiceDeps.registry', {
      find: async () => node('node-2'),
    });
    const peers = strictMock<VmServiceDeps['peers']>('VmServiceDeps.peers', {
      vmCall: async () => ({ spec: null, runtime: { state: 'stopped' } }) as never,
    });
    await service({ driver, index, registry, peers }).stop(UUID, context);
    expect(peers.vmCall).toHaveBeenCalledWith(
      { nodeId: 'node-2', endpoint: '10.0.0.2:9443' },
      'StopVm',
      { uuid: UUID },
      context,
      120_000,
    );
  });

  it('answers NOT_FOUND for a forwarded call on a VM that is not here, never forwarding again', async () => {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', { get: async () => undefined });
    await expect(service({ driver }).get(UUID, forwarded)).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
  });

  it('answers NOT_FOUND for a VM the location index does not know', async () => {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', { get: async () => undefined });
    const index = strictMock<VmServiceDeps['index']>('VmServiceDeps.index', {
      get: async () => undefined,
    });
    await expect(service({ driver, index }).reboot(UUID, context)).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
  });

  it('answers UNAVAILABLE for a VM whose node is not alive', async () => {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', { get: async () => undefined });
    const index = strictMock<VmServiceDeps['index']>('VmServiceDeps.index', {
      get: async () => ({ nodeId: 'node-2', name: 'web-01' }),
    });
    const registry = strictMock<VmServiceDeps['registry']>('VmServiceDeps.registry', {
      find: async () => node('node-2', false),
    });
    await expect(service({ driver, index, registry }).start(UUID, context)).rejects.toMatchObject({
      code: ErrorCode.Unavailable,
    });
  });

  it('lists the whole cluster, reporting nodes that did not answer instead of failing', async () => {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', { list: async () => [vm()] });
    const registry = strictMock<VmServiceDeps['registry']>('VmServiceDeps.registry', {
      aliveNodes: async () => [node('node-1'), node('node-2'), node('node-3')],
    });
    const remote = vm('0b6f2f7e-3f56-4a62-9a1e-7f8b1b2c3d4e', 'running');
    const peers = strictMock<VmServiceDeps['peers']>('VmServiceDeps.peers', {
      vmCall: async (target) => {
        if (target.nodeId === 'node-3')
          throw new AgentError(ErrorCode.Unavailable, 'node node-3 did not answer');
        return {
          vms: [{ spec: remote.spec, runtime: { ...remote.runtime, nodeId: 'node-2' } }],
          unreachableNodes: {},
        } as never;
      },
    });
    const result = await service({ driver, registry, peers }).list('', context);
    expect(result.vms!.map((v) => v.runtime!.nodeId)).toEqual(['node-1', 'node-2']);
    expect(result.unreachableNodes).toEqual({ 'node-3': 'node node-3 did not answer' });
    expect(peers.vmCall).toHaveBeenCalledTimes(2);
  });

  it('publishes its VMs in the location index and drops entries of VMs it no longer has', async () => {
    const gone = '11111111-2222-4333-8444-555555555555';
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', { list: async () => [vm()] });
    const index = strictMock<VmServiceDeps['index']>('VmServiceDeps.index', {
      list: async () =>
        new Map([
          [gone, { nodeId: 'node-1', name: 'old-01' }],
          ['99999999-2222-4333-8444-555555555555', { nodeId: 'node-2', name: 'db-01' }],
        ]),
      put: async () => undefined,
      removeIfOwnedBy: async () => undefined,
    });
    await service({ driver, index }).publishLocalVms();
    expect(index.put).toHaveBeenCalledWith(UUID, { nodeId: 'node-1', name: 'web-01' });
    expect(index.removeIfOwnedBy).toHaveBeenCalledTimes(1);
    expect(index.removeIfOwnedBy).toHaveBeenCalledWith(gone, { nodeId: 'node-1', name: 'old-01' });
  });
});

describe('VmService and disks', () => {
  const withDisk = (state: VmInstance['runtime']['state']): VmInstance => {
    const base = vm(UUID, state);
    return {
      ...base,
      spec: {
        ...base.spec,
        disks: [{ pool: 'rbd', image: 'web-01-disk0', sizeBytes: 2 ** 30, bus: 'virtio' }],
      },
    };
  };

  it('takes the disk locks before the hypervisor starts the VM', async () => {
    const order: string[] = [];
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => withDisk('stopped'),
      start: async () => (order.push('start'), withDisk('running')),
    });
    const disks = strictMock<VmServiceDeps['disks']>('disks', {
      lock: async () => void order.push('lock'),
    });
    await service({ driver, disks }).start(UUID, context);
    expect(order).toEqual(['lock', 'start']);
    expect(disks.lock).toHaveBeenCalledWith(withDisk('stopped').spec);
  });

  it('does not start a VM whose disk another VM holds, and says which', async () => {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => withDisk('stopped'),
    });
    const inUse = new AgentError(
      ErrorCode.FailedPrecondition,
      'image rbd/web-01-disk0 is in use by VM 0b6f2f7e-3f56-4a62-9a1e-7f8b1b2c3d4e (dns-01)',
    );
    const disks = strictMock<VmServiceDeps['disks']>('disks', {
      lock: async () => Promise.reject(inUse),
    });
    await expect(service({ driver, disks }).start(UUID, context)).rejects.toBe(inUse);
  });

  it('gives the disks back when the hypervisor cannot start the VM, but not when it runs already', async () => {
    const failed = new AgentError(ErrorCode.FailedPrecondition, 'QEMU could not start VM web-01');
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => withDisk('stopped'),
      start: async () => Promise.reject(failed),
    });
    const disks = strictMock<VmServiceDeps['disks']>('disks', {
      lock: async () => undefined,
      unlock: async () => undefined,
    });
    await expect(service({ driver, disks }).start(UUID, context)).rejects.toBe(failed);
    expect(disks.unlock).toHaveBeenCalledTimes(1);

    const running = strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => withDisk('running'),
      start: async () =>
        Promise.reject(
          new AgentError(
            ErrorCode.FailedPrecondition,
            'VM web-01 is running; only a stopped VM can be started',
          ),
        ),
    });
    const untouched = strictMock<VmServiceDeps['disks']>('disks');
    await expect(
      service({ driver: running, disks: untouched }).start(UUID, context),
    ).rejects.toMatchObject({ code: ErrorCode.FailedPrecondition });
  });

  it('releases the disks once a stop or shutdown left the VM stopped, not when the guest refused to shut down', async () => {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => withDisk('running'),
      stop: async () => withDisk('stopped'),
      shutdown: async () => withDisk('running'),
    });
    const disks = strictMock<VmServiceDeps['disks']>('disks', { unlock: async () => undefined });
    await service({ driver, disks }).stop(UUID, context);
    expect(disks.unlock).toHaveBeenCalledTimes(1);
    await service({ driver, disks }).shutdown(UUID, {}, context);
    expect(disks.unlock).toHaveBeenCalledTimes(1);
  });

  it('makes running VMs hold their disks at registration, leaving stopped and busy VMs alone', async () => {
    const busy = {
      ...withDisk('migrating'),
      runtime: { ...withDisk('migrating').runtime, lockedBy: 'migration' },
    };
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      list: async () => [withDisk('running'), withDisk('stopped'), busy],
    });
    const disks = strictMock<VmServiceDeps['disks']>('disks', { claim: async () => [] });
    await service({ driver, disks }).holdRunningVmDisks();
    expect(disks.claim).toHaveBeenCalledTimes(1);
    expect(disks.claim).toHaveBeenCalledWith(withDisk('running').spec);
  });

  it('refuses a power operation while a storage operation holds the VM, naming it, and shows it as lockedBy', async () => {
    const vmLocks = new OperationLocks('VM');
    const release = vmLocks.hold(UUID, 'rollback', 'web-01');
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => withDisk('stopped'),
    });
    await expect(service({ driver, vmLocks }).start(UUID, context)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message:
        'VM web-01 is busy: a rollback operation is in progress; try again when it has finished',
    });
    expect((await service({ driver, vmLocks }).get(UUID, context)).runtime).toMatchObject({
      lockedBy: 'rollback',
    });
    release();
    expect((await service({ driver, vmLocks }).get(UUID, context)).runtime).toMatchObject({
      lockedBy: '',
    });
  });
});

describe('VmService.define (DR failover from a kept definition)', () => {
  it('removes a stopped VM’s definition, its disk locks and its location entry (undefine)', async () => {
    const removed: unknown[] = [];
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => vm(),
      undefine: async () => undefined,
    });
    const index = strictMock<VmServiceDeps['index']>('VmServiceDeps.index', {
      get: async () => ({ nodeId: 'node-1', name: 'web-01' }),
      removeIfOwnedBy: async (...args) => void removed.push(args),
    });
    const disks = strictMock<VmServiceDeps['disks']>('disks', { unlock: async () => undefined });
    await expect(service({ driver, index, disks }).undefine(UUID, context)).resolves.toMatchObject({
      spec: { uuid: UUID },
    });
    expect(driver.undefine).toHaveBeenCalledWith(UUID);
    expect(disks.unlock).toHaveBeenCalledWith(vm().spec);
    expect(removed).toEqual([[UUID, { nodeId: 'node-1', name: 'web-01' }]]);
  });

  it('keeps the disk locks when undefining a stale copy of a VM the cluster runs on another node', async () => {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => vm(),
      undefine: async () => undefined,
    });
    const index = strictMock<VmServiceDeps['index']>('VmServiceDeps.index', {
      get: async () => ({ nodeId: 'node-2', name: 'web-01' }),
      removeIfOwnedBy: async () => undefined,
    });
    await expect(
      service({ driver, index, disks: strictMock<VmServiceDeps['disks']>('disks') }).undefine(
        UUID,
        context,
      ),
    ).resolves.toMatchObject({ spec: { uuid: UUID } });
  });

  it('defines the VM stopped on this node and names this node in the location index', async () => {
    const put: unknown[] = [];
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', {
      get: async () => undefined,
      define: async (spec) => ({ ...vm(), spec }),
    });
    const index = strictMock<VmServiceDeps['index']>('VmServiceDeps.index', {
      get: async () => undefined,
      put: async (...args) => void put.push(args),
    });
    const result = await service({ driver, index }).define(vm().spec, '', context);
    expect(result.runtime).toMatchObject({ state: 'stopped', nodeId: 'node-1' });
    expect(put).toEqual([[UUID, { nodeId: 'node-1', name: 'web-01' }]]);
  });

  it('refuses with ALREADY_EXISTS when the cluster knows the VM id, defining nothing', async () => {
    const driver = strictMock<HypervisorDriver>('HypervisorDriver', { get: async () => undefined });
    const index = strictMock<VmServiceDeps['index']>('VmServiceDeps.index', {
      get: async () => ({ nodeId: 'node-3', name: 'web-01' }),
    });
    await expect(
      service({ driver, index }).define(vm().spec, 'node-1', context),
    ).rejects.toMatchObject({
      code: ErrorCode.AlreadyExists,
      message: expect.stringMatching(/node-3/),
    });
  });

  it('forwards to the node named, and a forwarded call is never forwarded again', async () => {
    const registry = strictMock<VmServiceDeps['registry']>('VmServiceDeps.registry', {
      find: async () => node('node-2'),
    });
    const peers = strictMock<VmServiceDeps['peers']>('VmServiceDeps.peers', {
      vmCall: async () => ({ spec: null, runtime: { state: 'stopped' } }) as never,
    });
    await service({ registry, peers }).define(vm().spec, 'node-2', context);
    expect(peers.vmCall).toHaveBeenCalledWith(
      { nodeId: 'node-2', endpoint: '10.0.0.2:9443' },
      'DefineVm',
      { spec: vm().spec, nodeId: 'node-2' },
      context,
      120_000,
    );
    await expect(service({}).define(vm().spec, 'node-2', forwarded)).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
  });
});
