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
const notYet = () => new AgentError(ErrorCode.FailedPrecondition, 'has not received the demotion snapshot of site dc-east yet');

function setup(storage: Partial<MirroredDisksDeps['storage']>, timeoutMs = 5_000) {
  const deps = {
    storage: strictMock<MirroredDisksDeps['storage']>('storage', storage),
    disks: strictMock<MirroredDisksDeps['disks']>('disks', { lock: async () => undefined, unlock: async () => undefined }),
    clock: fakeClock(),
    timeoutMs,
    logger: pino({ level: 'silent' }),
  };
  return { deps, mirrored: new MirroredDisks(deps) };
}

describe('MirroredDisks: a VM’s mirrored disks change sides at a cross-cluster switchover', () => {
  it('source: lets go of the disks and demotes each primary one', async () => {
    const { deps, mirrored } = setup({ mirrorStatus: async () => status(true), demote: async (ref: ImageRef) => ({ ...status(false), ...ref }) });
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
    expect(deps.storage.promote).toHaveBeenCalledExactlyOnceWith({ pool: 'rbd', image: 'web-1-disk0' }, true);
    expect(deps.disks.lock).toHaveBeenCalledWith(spec);
  });

  it('source: does nothing for disks that are not mirrored or not primary here', async () => {
    const { deps, mirrored } = setup({ mirrorStatus: async () => ({ enabled: false, primary: false }) as ImageMirrorStatus });
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
    await expect(mirrored.acquire(spec)).rejects.toMatchObject({ code: ErrorCode.FailedPrecondition, message: expect.stringMatching(/web-1-disk1 could not be promoted within 1 s: .*demotion snapshot/) });
    expect(deps.storage.demote).toHaveBeenCalledExactlyOnceWith({ pool: 'rbd', image: 'web-1-disk0' });
  });

  it('target: does not wait on an error that retrying cannot mend', async () => {
    const { deps, mirrored } = setup({ mirrorStatus: async () => status(false), promote: async () => Promise.reject(new AgentError(ErrorCode.NotFound, 'no RBD image')) });
    await expect(mirrored.acquire(spec)).rejects.toThrow(/no RBD image/);
    expect(deps.storage.promote).toHaveBeenCalledTimes(1);
  });
});
