import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { requireBinary } from './binaries';
import { spawnManaged, type ManagedProcess } from './processes';
import { cleanupTempDirs, tempDir } from './temp';
import {
  buildTinyGuest,
  lastTinyGuestTick,
  TINY_GUEST_ERROR,
  TINY_GUEST_READY,
  tinyGuestAppend,
  type TinyGuestLoad,
} from './tiny-guest';

afterAll(() => cleanupTempDirs());

describe('tinyGuestAppend', () => {
  it('puts the console on ttyS0, runs /init, reboots on panic and passes the load', () => {
    expect(tinyGuestAppend({ dirtyMibPerSecond: 100, workingSetMib: 32 })).toBe(
      'console=ttyS0 quiet panic=-1 rdinit=/init dirty_mib_s=100 dirty_mib=32',
    );
  });

  it('leaves the working set to the guest when none is given', () => {
    expect(tinyGuestAppend({ dirtyMibPerSecond: 0 })).toBe(
      'console=ttyS0 quiet panic=-1 rdinit=/init dirty_mib_s=0',
    );
  });

  it('rejects a negative or fractional rate and an empty working set', () => {
    expect(() => tinyGuestAppend({ dirtyMibPerSecond: -1 })).toThrow(/dirtyMibPerSecond/);
    expect(() => tinyGuestAppend({ dirtyMibPerSecond: 1.5 })).toThrow(/dirtyMibPerSecond/);
    expect(() => tinyGuestAppend({ dirtyMibPerSecond: 1, workingSetMib: 0 })).toThrow(
      /workingSetMib/,
    );
  });
});

describe('buildTinyGuest', () => {
  it('names linux-image-amd64 when there is no kernel', async () => {
    await expect(buildTinyGuest({ bootDir: tempDir(), cacheRoot: tempDir() })).rejects.toThrow(
      /apt-get install linux-image-amd64/,
    );
  });

  it('names busybox-static when busybox is missing or dynamically linked', async () => {
    const cacheRoot = tempDir();
    await expect(
      buildTinyGuest({ busyboxPath: join(tempDir(), 'busybox'), cacheRoot }),
    ).rejects.toThrow(/apt-get install busybox-static/);
    await expect(buildTinyGuest({ busyboxPath: '/bin/ls', cacheRoot })).rejects.toThrow(
      /not a statically linked.*busybox-static/,
    );
  });

  it('publishes one complete cache directory when builds race', async () => {
    const cacheRoot = tempDir();
    const guests = await Promise.all([1, 2, 3].map(() => buildTinyGuest({ cacheRoot })));
    expect(new Set(guests.map((guest) => guest.dir)).size).toBe(1);
    expect(await readdir(cacheRoot)).toEqual([guests[0]!.dir.slice(cacheRoot.length + 1)]);
    expect(new Set(await readdir(guests[0]!.dir))).toEqual(new Set(['kernel', 'initrd.cpio']));
    const initrd = await readFile(guests[0]!.initrdPath);
    expect(initrd.toString('latin1', 0, 6)).toBe('070701');
    expect(initrd.includes('TRAILER!!!')).toBe(true);
  });
});

describe('the tiny guest under QEMU (TCG)', () => {
  const qemuBinary = requireBinary('qemu-system-x86_64', 'qemu-system-x86');
  let qemu: ManagedProcess | undefined;
  afterEach(async () => {
    await qemu?.kill();
    qemu = undefined;
  });

  async function boot(load: TinyGuestLoad): Promise<string> {
    const guest = await buildTinyGuest();
    const serialLog = join(tempDir(), 'serial.log');
    qemu = spawnManaged('qemu', qemuBinary, [
      '-accel',
      'tcg',
      '-nodefaults',
      '-no-reboot',
      '-nographic',
      '-monitor',
      'none',
      '-m',
      '256',
      '-kernel',
      guest.kernelPath,
      '-initrd',
      guest.initrdPath,
      '-append',
      tinyGuestAppend(load),
      '-serial',
      `file:${serialLog}`,
    ]);
    return serialLog;
  }

  /** Polls the serial log until `done` holds; fails early when QEMU exits (a guest panic does). */
  async function serialUntil(
    serialLog: string,
    done: (log: string) => boolean,
    timeoutMs = 90_000,
  ): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const log = await readFile(serialLog, 'utf8').catch(() => '');
      if (done(log)) return log;
      if (qemu?.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(
          `serial log did not reach the expected state (QEMU exit code ${qemu?.child.exitCode}):\n${log.slice(-4000)}\n${qemu?.output()}`,
        );
      }
      await sleep(200);
    }
  }

  it('boots, reports READY and keeps ticking while idle', { timeout: 120_000 }, async () => {
    const serialLog = await boot({ dirtyMibPerSecond: 0 });
    const log = await serialUntil(serialLog, (text) => lastTinyGuestTick(text) >= 3);
    expect(log).toContain('DEBVISOR-GUEST dirty_mib_s=0 dirty_mib=64');
    expect(log).toContain(TINY_GUEST_READY);
    expect(log.indexOf(TINY_GUEST_READY)).toBeLessThan(log.indexOf('DEBVISOR-GUEST TICK 1'));
    expect(log).not.toContain(TINY_GUEST_ERROR);
  });

  it(
    'keeps ticking while it dirties 100 MiB/s of a 32 MiB working set',
    { timeout: 120_000 },
    async () => {
      const serialLog = await boot({ dirtyMibPerSecond: 100, workingSetMib: 32 });
      const log = await serialUntil(serialLog, (text) => lastTinyGuestTick(text) >= 3);
      expect(log).toContain('DEBVISOR-GUEST dirty_mib_s=100 dirty_mib=32');
      expect(log).toContain(TINY_GUEST_READY);
      expect(log).not.toContain(TINY_GUEST_ERROR);
    },
  );
});
