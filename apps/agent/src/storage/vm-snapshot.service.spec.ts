import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import type { VmInstance } from '../drivers/hypervisor.driver';
import type { ImageRef, ImageSnapshot } from '../drivers/storage.driver';
import type { NodeEntry } from '../registry/node.schema';
import type { CallContext } from '../rpc/call-context';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { OperationLocks } from '../shared/operation-locks';
import type { VmSnapshotRecord } from './vm-snapshot.repository';
import { VmSnapshotService, type VmSnapshotServiceDeps } from './vm-snapshot.service';

const UUID = '6b1b8c52-5f4e-4c7b-9d59-2f3c8a1e0b11';
const OTHER = '0b6f2f7e-3f56-4a62-9a1e-7f8b1b2c3d4e';
const context: CallContext = {
  caller: { principal: 'manager', permissions: ['*'], keyId: 'k' },
  forwarded: false,
  deadline: undefined,
  traceId: 't1',
};
const forwarded: CallContext = {
  ...context,
  forwarded: true,
  caller: { principal: 'manager', permissions: ['*'], forwardedBy: 'node-2' },
};
const ROOT: ImageRef = { pool: 'rbd', image: 'web-01-root' };
const DATA: ImageRef = { pool: 'fast', image: 'web-01-data' };

function vm(
  state: VmInstance['runtime']['state'],
  options: { lockedBy?: string; disks?: ImageRef[] } = {},
): VmInstance {
  const disks = (options.disks ?? [ROOT, DATA]).map((d) => ({
    ...d,
    sizeBytes: 2 ** 30,
    bus: 'virtio' as const,
  }));
  return {
    spec: {
      uuid: UUID,
      name: 'web-01',
      vcpus: 1,
      memoryBytes: 2 ** 30,
      disks,
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
      lockedBy: options.lockedBy ?? '',
    },
  };
}

const snap = (
  ref: ImageRef,
  snapshot: string,
  createdAt = '2026-01-01T10:00:00.000Z',
): ImageSnapshot => ({ ...ref, snapshot, createdAt, sizeBytes: 2 ** 30 });

type Deps = VmSnapshotServiceDeps;

function service(deps: Partial<Deps>) {
  return new VmSnapshotService({
    nodeId: 'node-1',
    hypervisor: strictMock<Deps['hypervisor']>('hypervisor'),
    storage: strictMock<Deps['storage']>('storage'),
    records: strictMock<Deps['records']>('records'),
    index: strictMock<Deps['index']>('index'),
    registry: strictMock<Deps['registry']>('registry'),
    peers: strictMock<Deps['peers']>('peers'),
    vmLocks: new OperationLocks('VM'),
    imageLocks: new OperationLocks('image'),
    clock: fakeClock(),
    logger: pino({ level: 'silent' }),
    freezeTimeoutMs: 2_000,
    ...deps,
  });
}

/** Storage that takes snapshots of whatever it is given, recording the order of events. */
function recordingStorage(events: string[], fail?: AgentError) {
  return strictMock<Deps['storage']>('storage', {
    createSnapshot: async (images, snapshot) => {
      events.push(`snapshot ${images.map((i) => `${i.pool}/${i.image}`).join('+')}`);
      if (fail) throw fail;
      return images.map((i) => snap(i, snapshot));
    },
  });
}

describe('VmSnapshotService: taking a snapshot', () => {
  it('freezes a running guest, snapshots every disk at once, thaws, and records it as application-consistent', async () => {
    const events: string[] = [];
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('running'),
      freezeFilesystems: async (_uuid, timeoutMs) => (
        events.push(`freeze ${timeoutMs}`),
        { frozen: true, reason: 'froze 2 filesystems' }
      ),
      thawFilesystems: async () => void events.push('thaw'),
    });
    const records = strictMock<Deps['records']>('records', { put: async () => undefined });
    const result = await service({
      hypervisor,
      storage: recordingStorage(events),
      records,
    }).snapshot({ vmUuid: UUID, snapshot: 'before-upgrade', freeze: true }, context);
    expect(events).toEqual(['freeze 2000', 'snapshot rbd/web-01-root+fast/web-01-data', 'thaw']);
    expect(result).toMatchObject({
      vmUuid: UUID,
      snapshot: 'before-upgrade',
      consistency: 'application',
      consistencyReason: '',
      group: true,
    });
    expect(result.disks!.map((d) => d.image)).toEqual(['web-01-root', 'web-01-data']);
    expect(records.put).toHaveBeenCalledWith(UUID, 'before-upgrade', {
      consistency: 'application',
      consistencyReason: '',
      group: true,
      createdAt: '2026-01-01T10:00:00.000Z',
    });
  });

  it('states crash consistency with the reason when no guest agent answered, and still thaws', async () => {
    const events: string[] = [];
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('running'),
      freezeFilesystems: async () => (
        events.push('freeze'),
        { frozen: false, reason: 'no QEMU guest agent answered within 2000 ms' }
      ),
      thawFilesystems: async () => void events.push('thaw'),
    });
    const records = strictMock<Deps['records']>('records', { put: async () => undefined });
    const result = await service({
      hypervisor,
      storage: recordingStorage(events),
      records,
    }).snapshot({ vmUuid: UUID, snapshot: 's1', freeze: true }, context);
    expect(result).toMatchObject({
      consistency: 'crash',
      consistencyReason: 'no QEMU guest agent answered within 2000 ms',
    });
    expect(events).toEqual(['freeze', 'snapshot rbd/web-01-root+fast/web-01-data', 'thaw']);
  });

  it('thaws the guest when the snapshot itself fails, and records nothing', async () => {
    const events: string[] = [];
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('running'),
      freezeFilesystems: async () => (events.push('freeze'), { frozen: true, reason: '' }),
      thawFilesystems: async () => void events.push('thaw'),
    });
    const failure = new AgentError(
      ErrorCode.AlreadyExists,
      'image rbd/web-01-root has a snapshot s1 already',
    );
    await expect(
      service({ hypervisor, storage: recordingStorage(events, failure) }).snapshot(
        { vmUuid: UUID, snapshot: 's1', freeze: true },
        context,
      ),
    ).rejects.toBe(failure);
    expect(events).toEqual(['freeze', 'snapshot rbd/web-01-root+fast/web-01-data', 'thaw']);
  });

  it('thaws after a freeze that threw (the guest may have frozen late) and takes a crash-consistent snapshot', async () => {
    const events: string[] = [];
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('running'),
      freezeFilesystems: async () =>
        Promise.reject(new AgentError(ErrorCode.Unavailable, 'the QEMU monitor does not answer')),
      thawFilesystems: async () => void events.push('thaw'),
    });
    const records = strictMock<Deps['records']>('records', { put: async () => undefined });
    const result = await service({
      hypervisor,
      storage: recordingStorage(events),
      records,
    }).snapshot({ vmUuid: UUID, snapshot: 's1', freeze: true }, context);
    expect(result).toMatchObject({
      consistency: 'crash',
      consistencyReason: 'freezing failed: the QEMU monitor does not answer',
    });
    expect(events).toEqual(['snapshot rbd/web-01-root+fast/web-01-data', 'thaw']);
  });

  it('does not try to freeze a stopped VM or when freezing was not asked for, and says why', async () => {
    const events: string[] = [];
    const records = strictMock<Deps['records']>('records', { put: async () => undefined });
    const stopped = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('stopped', { disks: [ROOT] }),
    });
    const one = await service({
      hypervisor: stopped,
      storage: recordingStorage(events),
      records,
    }).snapshot({ vmUuid: UUID, snapshot: 's1', freeze: true }, context);
    expect(one).toMatchObject({
      consistency: 'crash',
      consistencyReason: 'the VM was stopped: no guest to freeze',
      group: false,
    });
    const running = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('running'),
    });
    const two = await service({
      hypervisor: running,
      storage: recordingStorage(events),
      records,
    }).snapshot({ vmUuid: UUID, snapshot: 's2', freeze: false }, context);
    expect(two).toMatchObject({
      consistency: 'crash',
      consistencyReason: 'freezing the guest filesystems was not asked for',
    });
  });

  it('refuses while a migration holds the VM, naming it, before touching the guest or the storage', async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('migrating', { lockedBy: 'migration' }),
    });
    await expect(
      service({ hypervisor }).snapshot({ vmUuid: UUID, snapshot: 's1', freeze: true }, context),
    ).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message:
        'VM web-01 is busy: a migration operation is in progress; try again when it has finished',
    });
  });

  it('refuses a second operation on the VM while the first holds it on this node', async () => {
    const vmLocks = new OperationLocks('VM');
    vmLocks.hold(UUID, 'rollback', 'web-01');
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('stopped'),
    });
    await expect(
      service({ hypervisor, vmLocks }).snapshot(
        { vmUuid: UUID, snapshot: 's1', freeze: false },
        context,
      ),
    ).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringContaining('a rollback operation is in progress'),
    });
  });

  it('refuses while an image-level operation holds one of the disks', async () => {
    const imageLocks = new OperationLocks('image');
    imageLocks.hold('fast/web-01-data', 'demote');
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('stopped'),
    });
    const vmLocks = new OperationLocks('VM');
    await expect(
      service({ hypervisor, imageLocks, vmLocks }).snapshot(
        { vmUuid: UUID, snapshot: 's1', freeze: false },
        context,
      ),
    ).rejects.toMatchObject({
      message:
        'image fast/web-01-data is busy: a demote operation is in progress; try again when it has finished',
    });
    expect(vmLocks.holder(UUID)).toBeUndefined();
  });

  it('refuses a VM without disks', async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('running', { disks: [] }),
    });
    await expect(
      service({ hypervisor }).snapshot({ vmUuid: UUID, snapshot: 's1', freeze: true }, context),
    ).rejects.toMatchObject({ code: ErrorCode.FailedPrecondition });
  });
});

describe('VmSnapshotService: routing', () => {
  const node = (nodeId: string, alive = true) =>
    ({
      info: { nodeId, agentEndpoint: '10.0.0.2:9443' },
      status: undefined,
      alive,
    }) as unknown as NodeEntry;

  it('forwards a call on a VM of another node to that node, as the original caller', async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', { get: async () => undefined });
    const index = strictMock<Deps['index']>('index', {
      get: async () => ({ nodeId: 'node-2', name: 'web-01' }),
    });
    const registry = strictMock<Deps['registry']>('registry', { find: async () => node('node-2') });
    const peers = strictMock<Deps['peers']>('peers', {
      storageCall: async () => ({ vmUuid: UUID, snapshot: 's1' }) as never,
    });
    const input = { vmUuid: UUID, snapshot: 's1', freeze: true };
    await service({ hypervisor, index, registry, peers }).snapshot(input, context);
    expect(peers.storageCall).toHaveBeenCalledWith(
      { nodeId: 'node-2', endpoint: '10.0.0.2:9443' },
      'SnapshotVm',
      input,
      context,
      120_000,
    );
  });

  it('answers NOT_FOUND for a forwarded call on a VM that is not here, never forwarding again', async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', { get: async () => undefined });
    await expect(
      service({ hypervisor }).rollback({ vmUuid: UUID, snapshot: 's1' }, forwarded),
    ).rejects.toMatchObject({ code: ErrorCode.NotFound });
  });

  it('answers UNAVAILABLE when the VM is on a node that is not alive', async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', { get: async () => undefined });
    const index = strictMock<Deps['index']>('index', {
      get: async () => ({ nodeId: 'node-2', name: 'web-01' }),
    });
    const registry = strictMock<Deps['registry']>('registry', {
      find: async () => node('node-2', false),
    });
    await expect(
      service({ hypervisor, index, registry }).list(UUID, context),
    ).rejects.toMatchObject({ code: ErrorCode.Unavailable });
  });
});

describe('VmSnapshotService: listing, deleting, rolling back', () => {
  const records = (entries: Record<string, VmSnapshotRecord> = {}) =>
    strictMock<Deps['records']>('records', {
      list: async () => new Map(Object.entries(entries)),
      remove: async () => undefined,
    });

  it("lists the names every disk has, with each snapshot's recorded consistency, oldest first", async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('running'),
    });
    const storage = strictMock<Deps['storage']>('storage', {
      listSnapshots: async (ref) =>
        ref.image === 'web-01-root'
          ? [
              snap(ROOT, 'nightly', '2026-01-02T00:00:00.000Z'),
              snap(ROOT, 'by-hand'),
              snap(ROOT, 'root-only'),
            ]
          : [snap(DATA, 'by-hand'), snap(DATA, 'nightly', '2026-01-02T00:00:01.000Z')],
    });
    const recorded: VmSnapshotRecord = {
      consistency: 'application',
      consistencyReason: '',
      group: true,
      createdAt: '2026-01-02T00:00:00.000Z',
    };
    const { snapshots } = await service({
      hypervisor,
      storage,
      records: records({ nightly: recorded }),
    }).list(UUID, context);
    expect(snapshots!.map((s) => [s.snapshot, s.consistency])).toEqual([
      ['by-hand', 'crash'],
      ['nightly', 'application'],
    ]);
    expect(snapshots![0]).toMatchObject({
      consistencyReason: 'no record of a guest freeze for this snapshot',
      group: true,
    });
  });

  it('refuses to roll back a running VM, saying to stop it first', async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('running'),
    });
    await expect(
      service({ hypervisor }).rollback({ vmUuid: UUID, snapshot: 'nightly' }, context),
    ).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message:
        'VM web-01 is running; stop it first: only a stopped VM can be rolled back to a snapshot',
    });
  });

  it('rolls every disk of a stopped VM back to the snapshot', async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('stopped'),
    });
    const storage = strictMock<Deps['storage']>('storage', {
      listSnapshots: async (ref) => [snap(ref, 'nightly')],
      imageHolder: async () => UUID,
      rollbackSnapshot: async () => undefined,
    });
    const result = await service({ hypervisor, storage, records: records() }).rollback(
      { vmUuid: UUID, snapshot: 'nightly' },
      context,
    );
    expect(storage.rollbackSnapshot).toHaveBeenCalledWith([ROOT, DATA], 'nightly');
    expect(result).toMatchObject({ snapshot: 'nightly', group: true });
  });

  it('does not roll back a disk that another VM holds', async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('stopped'),
    });
    const storage = strictMock<Deps['storage']>('storage', {
      listSnapshots: async (ref) => [snap(ref, 'nightly')],
      imageHolder: async (ref) => (ref.pool === 'fast' ? OTHER : undefined),
    });
    await expect(
      service({ hypervisor, storage, records: records() }).rollback(
        { vmUuid: UUID, snapshot: 'nightly' },
        context,
      ),
    ).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: `image fast/web-01-data is in use by VM ${OTHER}; stop that VM first`,
    });
  });

  it('refuses a rollback to a snapshot that covers only some disks, and NOT_FOUND for one it does not have', async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('stopped'),
    });
    const storage = strictMock<Deps['storage']>('storage', {
      listSnapshots: async (ref) => (ref.pool === 'rbd' ? [snap(ref, 'partial')] : []),
    });
    await expect(
      service({ hypervisor, storage, records: records() }).rollback(
        { vmUuid: UUID, snapshot: 'partial' },
        context,
      ),
    ).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringContaining('covers only rbd/web-01-root'),
    });
    await expect(
      service({ hypervisor, storage, records: records() }).rollback(
        { vmUuid: UUID, snapshot: 'nothing' },
        context,
      ),
    ).rejects.toMatchObject({ code: ErrorCode.NotFound });
  });

  it('deletes the snapshot from the disks that have it, with its record', async () => {
    const hypervisor = strictMock<Deps['hypervisor']>('hypervisor', {
      get: async () => vm('running'),
    });
    const storage = strictMock<Deps['storage']>('storage', {
      listSnapshots: async (ref) => (ref.pool === 'rbd' ? [snap(ref, 'old')] : []),
      removeSnapshot: async () => undefined,
    });
    const recordsMock = records();
    await expect(
      service({ hypervisor, storage, records: recordsMock }).delete(
        { vmUuid: UUID, snapshot: 'old' },
        context,
      ),
    ).resolves.toEqual({ deleted: true });
    expect(storage.removeSnapshot).toHaveBeenCalledWith([ROOT], 'old');
    expect(recordsMock.remove).toHaveBeenCalledWith(UUID, 'old');
    await expect(
      service({ hypervisor, storage, records: recordsMock }).delete(
        { vmUuid: UUID, snapshot: 'gone' },
        context,
      ),
    ).rejects.toMatchObject({ code: ErrorCode.NotFound });
  });
});
