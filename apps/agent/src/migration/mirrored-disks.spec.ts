import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { VmDefinition } from '../drivers/hypervisor.driver';
import type { ImageMirrorStatus, ImageRef } from '../drivers/storage.driver';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { MirroredDisks, type MirroredDisksDeps } from './mirrored-disks';

const spec = {
  uuid: '6c2b7f7e-5a8f-4d5e-9a3b-1f2e3d4c5b6a',
  name: 'web-1',
  disks: [
    { pool: 'rbd', image: 'web-1-disk0', sizeBytes: 1, bus: 'virtio' },
    { pool: 'rbd', image: 'web-1-disk1', sizeBytes: 1, bus: 'virtio' },
  ],
} as unknown as VmDefinition;
const status = (primary: boolean) => ({ enabled: true, primary }) as ImageMirrorStatus;
const notYet = () =>
  new AgentError(
    ErrorCode.FailedPrecondition,
    'has not received the demotion snapshot of site dc-east yet',
  );

function setup(storage: Partial<MirroredDisksDeps['storage']>, timeoutMs = 5_000) {
  const deps = {
    storage: strictMock<MirroredDisksDeps['storage']>('storage', storage),
    disks: strictMock<MirroredDisksDeps['disks']>('disks', {
      lock: async () => undefined,
      unlock: async () => undefined,
    }),
    clock: fakeClock(),
    timeoutMs,
    logger: pino({ level: 'silent' }),
  };
  return { deps, mirrored: new MirroredDisks(deps) };
}

describe('MirroredDisks: a VM’s mirrored disks change sides at a cross-cluster switchover', () => {
  it('source: lets go of the disks and demotes each primary one', async () => {
    const { deps, mirrored } = setup({
      mirrorStatus: async () => status(true),
      demote: async (ref: ImageRef) => ({ ...status(false), ...ref }),
    });
    expect(await mirrored.release(spec)).toEqual([
      { pool: 'rbd', image: 'web-1-disk0' },
      { pool: 'rbd', image: 'web-1-disk1' },
    ]);
    expect(deps.disks.unlock).toHaveBeenCalledWith(spec);
    expect(deps.storage.demote).toHaveBeenCalledTimes(2);
  });

  it('source: promotes back what it demoted when a later disk cannot be demoted, and holds the disks again', async () => {
    let demotes = 0;
    const { deps, mirrored } = setup({
      mirrorStatus: async () => status(true),
      demote: async () => {
        if (++demotes === 2) throw new AgentError(ErrorCode.Unavailable, 'etcd does not answer');
        return status(false);
      },
      promote: async () => status(true),
    });
    await expect(mirrored.release(spec)).rejects.toThrow(/etcd does not answer/);
    expect(deps.storage.promote).toHaveBeenCalledExactlyOnceWith(
      { pool: 'rbd', image: 'web-1-disk0' },
      true,
    );
    expect(deps.disks.lock).toHaveBeenCalledWith(spec);
  });

  it('source: does nothing for disks that are not mirrored or not primary here', async () => {
    const { deps, mirrored } = setup({
      mirrorStatus: async () => ({ enabled: false, primary: false }) as ImageMirrorStatus,
    });
    expect(await mirrored.release(spec)).toEqual([]);
    expect(deps.disks.unlock).not.toHaveBeenCalled();
  });

  it('target: waits until the demotion snapshot was replayed, then promotes without force', async () => {
    let tries = 0;
    const { deps, mirrored } = setup({
      mirrorStatus: async () => status(false),
      promote: async () => {
        if (++tries < 4) throw notYet();
        return status(true);
      },
    });
    expect(await mirrored.acquire(spec)).toHaveLength(2);
    expect(deps.storage.promote).toHaveBeenCalledTimes(5);
    for (const call of deps.storage.promote.mock.calls) expect(call[1]).toBe(false);
  });

  it('target: gives up after the timeout and demotes again what it had promoted', async () => {
    const { deps, mirrored } = setup(
      {
        mirrorStatus: async () => status(false),
        promote: async (ref: ImageRef) => {
          if (ref.image === 'web-1-disk1') throw notYet();
          return status(true);
        },
        demote: async () => status(false),
      },
      1_000,
    );
    await expect(mirrored.acquire(spec)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(
        /web-1-disk1 could not be promoted within 1 s: .*demotion snapshot/,
      ),
    });
    expect(deps.storage.demote).toHaveBeenCalledExactlyOnceWith({
      pool: 'rbd',
      image: 'web-1-disk0',
    });
  });

  it('target: does not wait on an error that retrying cannot mend', async () => {
    const { deps, mirrored } = setup({
      mirrorStatus: async () => status(false),
      promote: async () => Promise.reject(new AgentError(ErrorCode.NotFound, 'no RBD image')),
    });
    await expect(mirrored.acquire(spec)).rejects.toThrow(/no RBD image/);
    expect(deps.storage.promote).toHaveBeenCalledTimes(1);
  });
});

describe('MirroredDisks: the final mirror snapshot while the VM is paused', () => {
  const at = (second: number) => new Date(Date.UTC(2026, 11, 7, 13, 0, second)).toISOString();
  const mirror = (lastMirroredSnapshotAt: string, state = 'up+replaying', secondsUntilSynced = 0) =>
    ({
      enabled: true,
      primary: false,
      state,
      lastMirroredSnapshotAt,
      secondsUntilSynced,
    }) as ImageMirrorStatus;

  it('source: takes a final mirror snapshot of every disk and answers when each was taken', async () => {
    const { mirrored } = setup({
      createMirrorSnapshot: async (ref: ImageRef) => ({
        ...status(true),
        ...ref,
        lastSnapshotAt: ref.image.endsWith('0') ? at(10) : at(11),
      }),
    });
    expect(await mirrored.finalSnapshots(spec)).toEqual([
      { index: 0, takenAt: at(10) },
      { index: 1, takenAt: at(11) },
    ]);
  });

  it('source: fails when a disk cannot be snapshotted (not mirrored, not primary): nothing else changes', async () => {
    const { deps, mirrored } = setup({
      createMirrorSnapshot: async (ref: ImageRef) => {
        if (ref.image.endsWith('1'))
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            'mirroring is not enabled on the RBD image rbd/web-1-disk1',
          );
        return { ...status(true), lastSnapshotAt: at(10) };
      },
    });
    await expect(mirrored.finalSnapshots(spec)).rejects.toThrow(
      /not enabled on the RBD image rbd\/web-1-disk1/,
    );
    expect(deps.disks.unlock).not.toHaveBeenCalled();
  });

  it('target: waits until every mirror holds its final snapshot, telling how far they are once per change', async () => {
    const answers: Record<string, ImageMirrorStatus[]> = {
      'web-1-disk0': [
        mirror(at(5), 'up+replaying', 3),
        mirror(at(5), 'up+replaying', 3),
        mirror(at(12)),
      ],
      'web-1-disk1': [mirror(at(11))],
    };
    const { deps, mirrored } = setup({
      mirrorStatus: async (ref: ImageRef) =>
        answers[ref.image].length > 1 ? answers[ref.image].shift()! : answers[ref.image][0],
    });
    const progress: string[] = [];
    expect(
      await mirrored.waitReplayed(
        spec,
        [
          { index: 0, takenAt: at(10) },
          { index: 1, takenAt: at(11) },
        ],
        (message) => progress.push(message),
      ),
    ).toEqual([
      { pool: 'rbd', image: 'web-1-disk0' },
      { pool: 'rbd', image: 'web-1-disk1' },
    ]);
    expect(progress).toEqual([
      'waiting for 1 of 2 disk mirrors to hold the final mirror snapshot: rbd/web-1-disk0 up+replaying, about 3 s to go',
    ]);
    expect(deps.storage.mirrorStatus).toHaveBeenCalledTimes(6);
  });

  it('target: gives up after the timeout, naming the mirror behind and its state', async () => {
    const { mirrored } = setup({ mirrorStatus: async () => mirror(at(5), 'down+unknown') }, 1_000);
    await expect(
      mirrored.waitReplayed(spec, [{ index: 0, takenAt: at(10) }], () => undefined),
    ).rejects.toMatchObject({
      code: ErrorCode.DeadlineExceeded,
      message:
        "the disks' mirrors here did not receive the final mirror snapshot within 1 s (rbd/web-1-disk0 down+unknown)",
    });
  });

  it('target: refuses a disk index the VM does not have before asking the storage', async () => {
    const { mirrored } = setup({});
    // The strict mock fails any storage call.
    await expect(
      mirrored.waitReplayed(spec, [{ index: 2, takenAt: at(10) }], () => undefined),
    ).rejects.toMatchObject({ code: ErrorCode.InvalidArgument, message: 'the VM has no disk 2' });
  });
});

describe('MirroredDisks: the target gives the disks back when the VM could not run there', () => {
  it('demotes each promoted mirror again and answers those it could not demote', async () => {
    const { mirrored } = setup({
      demote: async (ref: ImageRef) => {
        if (ref.image.endsWith('1'))
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            'the RBD image rbd/web-1-disk1 is in use by auto 4242',
          );
        return status(false);
      },
    });
    const disks = spec.disks.map(({ pool, image }) => ({ pool, image }));
    expect(await mirrored.giveBack(disks)).toEqual([{ pool: 'rbd', image: 'web-1-disk1' }]);
    expect(await mirrored.giveBack([])).toEqual([]);
  });
});

describe('MirroredDisks: disks the switchover has just seen are not asked for again while the VM is paused', () => {
  const disk0 = { pool: 'rbd', image: 'web-1-disk0' };

  it('source: demotes the disks it is given without asking for their status', async () => {
    const { deps, mirrored } = setup({ demote: async () => status(false) });
    expect(await mirrored.release(spec, [disk0])).toEqual([disk0]);
    expect(deps.storage.demote).toHaveBeenCalledExactlyOnceWith(disk0);
  });

  it('target: promotes the mirrors it is given without asking for their status', async () => {
    const { deps, mirrored } = setup({ promote: async () => status(true) });
    expect(await mirrored.acquire(spec, [disk0])).toEqual([disk0]);
    expect(deps.storage.promote).toHaveBeenCalledExactlyOnceWith(disk0, false);
  });

  it('target: refuses to wait on a mirror that is primary here as well (split brain)', async () => {
    const { mirrored } = setup({
      mirrorStatus: async () =>
        ({ ...status(true), lastMirroredSnapshotAt: '' }) as ImageMirrorStatus,
    });
    await expect(
      mirrored.waitReplayed(
        spec,
        [{ index: 0, takenAt: new Date().toISOString() }],
        () => undefined,
      ),
    ).rejects.toThrow(/rbd\/web-1-disk0 is primary here as well/);
  });
});
