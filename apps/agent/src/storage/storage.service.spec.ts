import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { ImageMirrorStatus, StorageDriver } from '../drivers/storage.driver';
import type { CallContext } from '../rpc/call-context';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { OperationLocks } from '../shared/operation-locks';
import { StorageService, type StorageServiceDeps } from './storage.service';

const HOLDER = '6b1b8c52-5f4e-4c7b-9d59-2f3c8a1e0b11';
const context: CallContext = {
  caller: { principal: 'manager', permissions: ['*'], keyId: 'k' },
  forwarded: false,
  deadline: undefined,
  traceId: 't1',
};
const ref = { pool: '', image: 'web-01-root' };

function service(deps: Partial<StorageServiceDeps>) {
  return new StorageService({
    clusterId: 'east',
    nodeId: 'node-1',
    driver: strictMock<StorageDriver>('StorageDriver'),
    vms: strictMock<StorageServiceDeps['vms']>('vms'),
    imageLocks: new OperationLocks('image'),
    logger: pino({ level: 'silent' }),
    ...deps,
  });
}

const vmHeldBy = (lockedBy: string) =>
  strictMock<StorageServiceDeps['vms']>('vms', {
    get: async () => ({ spec: { name: 'web-01' }, runtime: { lockedBy } }) as never,
  });
const status = {
  pool: 'rbd',
  image: 'web-01-root',
  enabled: true,
  primary: true,
} as ImageMirrorStatus;

describe('StorageService', () => {
  it("takes an image snapshot in Ceph's default pool when the request names none", async () => {
    const driver = strictMock<StorageDriver>('StorageDriver', {
      imageHolder: async () => undefined,
      createSnapshot: async (images, snapshot) =>
        images.map((i) => ({
          ...i,
          snapshot,
          createdAt: '2026-01-01T00:00:00.000Z',
          sizeBytes: 1,
        })),
    });
    await expect(
      service({ driver }).snapshotImage({ ...ref, snapshot: 's1' }, context),
    ).resolves.toMatchObject({ pool: 'rbd', image: 'web-01-root', snapshot: 's1' });
    expect(driver.createSnapshot).toHaveBeenCalledWith(
      [{ pool: 'rbd', image: 'web-01-root' }],
      's1',
    );
  });

  it('refuses an image operation while a migration holds the VM using the image, naming both', async () => {
    const driver = strictMock<StorageDriver>('StorageDriver', { imageHolder: async () => HOLDER });
    const vms = vmHeldBy('migration');
    await expect(service({ driver, vms }).demote(ref, context)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message:
        'VM web-01 (using image rbd/web-01-root) is busy: a migration operation is in progress; try again when it has finished',
    });
    // asked as the agent itself: the caller may hold storage rights only
    expect(vms.get).toHaveBeenCalledWith(HOLDER, {
      ...context,
      caller: { principal: 'agent:node-1', permissions: ['vm:instance:read'] },
    });
  });

  it('goes ahead when the VM holding the image is free, or its node cannot be asked', async () => {
    const driver = strictMock<StorageDriver>('StorageDriver', {
      imageHolder: async () => HOLDER,
      createMirrorSnapshot: async () => status,
    });
    await expect(
      service({ driver, vms: vmHeldBy('') }).createMirrorSnapshot(ref, context),
    ).resolves.toMatchObject({ enabled: true });
    const down = strictMock<StorageServiceDeps['vms']>('vms', {
      get: async () =>
        Promise.reject(new AgentError(ErrorCode.Unavailable, 'node node-2 is not alive')),
    });
    await expect(
      service({ driver, vms: down }).createMirrorSnapshot(ref, context),
    ).resolves.toMatchObject({ enabled: true });
  });

  it('refuses a second operation on an image while the first runs, naming it', async () => {
    let finish!: () => void;
    const driver = strictMock<StorageDriver>('StorageDriver', {
      imageHolder: async () => undefined,
      resync: () => new Promise<ImageMirrorStatus>((resolve) => (finish = () => resolve(status))),
    });
    const storage = service({ driver });
    const first = storage.resync(ref, context);
    await expect(storage.promote({ ...ref, force: false }, context)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message:
        'image rbd/web-01-root is busy: a resync operation is in progress; try again when it has finished',
    });
    await vi.waitFor(() => expect(finish).toBeDefined());
    finish();
    await expect(first).resolves.toMatchObject({ enabled: true });
  });

  it('refuses to roll back an image a VM holds', async () => {
    const driver = strictMock<StorageDriver>('StorageDriver', { imageHolder: async () => HOLDER });
    await expect(
      service({ driver, vms: vmHeldBy('') }).rollbackImage({ ...ref, snapshot: 's1' }, context),
    ).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: `image rbd/web-01-root is in use by VM ${HOLDER}; stop the VM before rolling its disk back`,
    });
  });

  it('fences an image without asking the VM it belongs to (its site may be gone)', async () => {
    const driver = strictMock<StorageDriver>('StorageDriver', {
      fenceImage: async () => ({ blocklisted: ['10.0.0.5:0/123'], locksBroken: ['client.4242'] }),
    });
    await expect(service({ driver }).fenceImage(ref)).resolves.toEqual({
      blocklisted: ['10.0.0.5:0/123'],
      locksBroken: ['client.4242'],
    });
  });

  it('names this cluster as the mirroring site unless the request names one', async () => {
    const driver = strictMock<StorageDriver>('StorageDriver', {
      createPeerBootstrap: async () => 'c2VjcmV0',
    });
    await expect(
      service({ driver }).createPeerBootstrap({ pool: '', siteName: '' }),
    ).resolves.toEqual({ token: 'c2VjcmV0', siteName: 'east' });
    expect(driver.createPeerBootstrap).toHaveBeenCalledWith('rbd', 'east');
  });
});
