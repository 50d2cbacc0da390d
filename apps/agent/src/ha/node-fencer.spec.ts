import { strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it } from 'vitest';
import type { RbdCliRepository } from '../drivers/rbd/rbd-cli.repository';
import type { FenceResult, ImageRef, StorageDriver } from '../drivers/storage.driver';
import { CephNodeFencer } from './node-fencer';

const DISKS: ImageRef[] = [
  { pool: 'rbd', image: 'vm-a-disk0' },
  { pool: 'rbd', image: 'vm-b-disk0' },
];
const WEEK = 7 * 86_400;

/**
 * The Ceph fence's decisions with the Ceph tools stood in for: what it blocklists (once, with the
 * HA expiry), and when it confirms — the OSD map lists every entry, no disk is left open by a
 * client that is not blocklisted, no VM lock is left (as fenceImage read them after breaking).
 */
function fencer(options: {
  fenced: (ref: ImageRef) => FenceResult;
  listed: string[];
  addresses?: string[];
}) {
  const commands: string[][] = [];
  const cli = strictMock<Pick<RbdCliRepository, 'run' | 'json'>>('RbdCliRepository', {
    run: async (tool, args) => {
      commands.push([tool, ...args]);
      if (args.join(' ') === 'osd blocklist ls')
        return `${options.listed.map((entry) => `${entry} 2026-12-14T00:00:00.000000+0000`).join('\n')}\nlisted ${options.listed.length} entries\n`;
      return '';
    },
  });
  const fenceOptions: unknown[] = [];
  const storage = strictMock<Pick<StorageDriver, 'fenceImage' | 'imageHolder'>>('StorageDriver', {
    fenceImage: async (ref, opts) => {
      fenceOptions.push(opts);
      return options.fenced(ref);
    },
  });
  const run = () =>
    new CephNodeFencer(cli, storage, WEEK).fence({
      nodeId: 'node-3',
      addresses: options.addresses ?? [],
      images: DISKS,
    });
  return { run, commands, fenceOptions };
}

const clean = (ref: ImageRef): FenceResult => ({
  blocklisted: [`127.0.0.1:0/${ref.image.length}01`],
  locksBroken: ['client.4100'],
  after: { watchers: [], holder: undefined },
});

describe('CephNodeFencer', () => {
  it('confirms once every entry is listed and no disk is open or locked, writing each entry once with the HA expiry', async () => {
    const f = fencer({
      addresses: ['10.0.0.3'],
      listed: ['10.0.0.3:0/0', '127.0.0.1:0/1001'],
      fenced: clean,
    });
    const outcome = await f.run();
    expect(outcome).toMatchObject({
      confirmed: true,
      blocklisted: ['10.0.0.3:0/0', '127.0.0.1:0/1001'],
      locksBroken: ['rbd/vm-a-disk0:client.4100', 'rbd/vm-b-disk0:client.4100'],
    });
    // The node-wide entry by the fencer, the watchers by fenceImage (with the same expiry): no entry twice.
    expect(f.commands).toEqual([
      ['ceph', 'osd', 'blocklist', 'add', '--', '10.0.0.3:0/0', String(WEEK)],
      ['ceph', 'osd', 'blocklist', 'ls'],
    ]);
    expect(f.fenceOptions).toEqual([{ blocklistSeconds: WEEK }, { blocklistSeconds: WEEK }]);
  });

  it('is not confirmed while the OSD map does not list an entry', async () => {
    const outcome = await fencer({ listed: [], fenced: clean }).run();
    expect(outcome.confirmed).toBe(false);
    expect(outcome.reason).toBe('the OSD map does not list 127.0.0.1:0/1001');
  });

  it('is not confirmed while a disk is still locked or open by a client that is not blocklisted', async () => {
    const outcome = await fencer({
      listed: ['127.0.0.1:0/1001'],
      fenced: (ref) =>
        ref.image === 'vm-a-disk0'
          ? { ...clean(ref), after: { watchers: [], holder: 'vm-a' } }
          : {
              blocklisted: [],
              locksBroken: [],
              after: { watchers: ['127.0.0.1:0/1001', '127.0.0.2:0/77'], holder: undefined },
            },
    }).run();
    expect(outcome.confirmed).toBe(false);
    expect(outcome.reason).toContain('rbd/vm-a-disk0 is still locked by VM vm-a');
    // A client covered by its own entry is fine; one from elsewhere, not blocklisted, is not.
    expect(outcome.reason).toContain(
      'rbd/vm-b-disk0 is still open by 127.0.0.2:0/77, which is not blocklisted',
    );
  });
});
