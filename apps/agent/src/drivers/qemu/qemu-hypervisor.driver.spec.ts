import { cleanupTempDirs, requireBinary, tempDir } from '@debvisor/testing';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, it, vi } from 'vitest';
import { ErrorCode } from '../../shared/agent-error';
import { systemClock } from '../../shared/clock';
import type { VmDefinition } from '../hypervisor.driver';
import type { QemuConfig } from './qemu-argv';
import { QemuHypervisorDriver } from './qemu-hypervisor.driver';
import { QemuProcessRepository } from './qemu-process.repository';

const binary = requireBinary('qemu-system-x86_64', 'qemu-system-x86');
const config: QemuConfig = { binary, accel: 'tcg', machine: 'q35', startTimeoutSeconds: 30 };
const stateDirs: string[] = [];

let counter = 0;
function definition(overrides: Partial<VmDefinition> = {}): VmDefinition {
  counter++;
  return {
    uuid: `3f0c2a4e-1d2b-4c3d-8e4f-${String(counter).padStart(12, '0')}`,
    name: `qemu-${counter}`,
    vcpus: 1,
    memoryBytes: 64 * 1024 * 1024,
    disks: [],
    nics: [],
    cpuModel: 'x86-64-v2',
    hugepages: false,
    tenant: '',
    labels: {},
    ...overrides,
  };
}

async function open(overrides: Partial<QemuConfig> = {}, stateDir = tempDir('dv-qemu-')) {
  stateDirs.push(stateDir);
  const driver = await QemuHypervisorDriver.open({
    config: { ...config, ...overrides },
    stateDir,
    clock: systemClock,
  });
  return { driver, stateDir };
}

/** The pid of a VM's QEMU, from its pidfile. */
function pidOf(stateDir: string, uuid: string): number {
  return Number(readFileSync(join(stateDir, 'run', uuid, 'pid'), 'utf8').trim());
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

afterAll(async () => {
  // whatever a failed test left running
  const processes = new QemuProcessRepository(binary);
  for (const stateDir of stateDirs) {
    for (const uuid of await processes.listDirs(join(stateDir, 'run'))) {
      const pidFile = join(stateDir, 'run', uuid, 'pid');
      const pid = await processes.readPid(pidFile);
      if (pid !== undefined) await processes.kill(pid, pidFile);
    }
  }
  cleanupTempDirs();
});

describe.concurrent('qemu hypervisor driver', () => {
  it('defines, starts, reboots and stops a VM as a real QEMU process', async ({ expect }) => {
    const { driver, stateDir } = await open();
    const { spec } = await driver.define(definition());
    expect(await driver.get(spec.uuid)).toMatchObject({
      runtime: { state: 'stopped', lockedBy: '', cpuUsage: 0 },
    });
    expect(
      JSON.parse(readFileSync(join(stateDir, 'qemu', `${spec.uuid}.json`), 'utf8')),
    ).toMatchObject({ spec, phase: 'defined', state: 'stopped' });

    const started = await driver.start(spec.uuid);
    expect(started.runtime).toMatchObject({ state: 'running', lockedBy: '' });
    expect(started.runtime.memoryUsedBytes).toBeGreaterThan(0);
    const pid = pidOf(stateDir, spec.uuid);
    expect(isAlive(pid)).toBe(true);
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toEqual(
      expect.arrayContaining(['-uuid', spec.uuid, '-machine', 'q35,accel=tcg']),
    );

    await expect(driver.reboot(spec.uuid)).resolves.toMatchObject({
      runtime: { state: 'running' },
    });
    expect(pidOf(stateDir, spec.uuid)).toBe(pid);
    await expect(driver.list()).resolves.toEqual([
      expect.objectContaining({ spec, runtime: expect.objectContaining({ state: 'running' }) }),
    ]);

    await expect(driver.stop(spec.uuid)).resolves.toMatchObject({
      runtime: { state: 'stopped', uptimeSeconds: 0, memoryUsedBytes: 0 },
    });
    expect(isAlive(pid)).toBe(false);
    await expect(driver.stop(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/is stopped; only a running VM can be stopped/),
    });
    await driver.close();
  });

  it('opens a guest agent channel; a guest without an agent is not frozen, with the reason, and thawing it is harmless', async ({
    expect,
  }) => {
    const { driver, stateDir } = await open();
    const { spec } = await driver.define(definition());
    await expect(driver.freezeFilesystems(spec.uuid, 1_000)).resolves.toEqual({
      frozen: false,
      reason: `VM ${spec.name} is stopped, not running`,
    });
    await driver.start(spec.uuid);
    expect(existsSync(join(stateDir, 'run', spec.uuid, 'qga.sock'))).toBe(true);
    const started = Date.now();
    await expect(driver.freezeFilesystems(spec.uuid, 1_000)).resolves.toEqual({
      frozen: false,
      reason: 'no QEMU guest agent answered within 1000 ms',
    });
    expect(Date.now() - started).toBeLessThan(5_000);
    await expect(driver.thawFilesystems(spec.uuid)).resolves.toBeUndefined();
    await expect(driver.get(spec.uuid)).resolves.toMatchObject({ runtime: { state: 'running' } });
    await driver.stop(spec.uuid);
  });

  it('refuses a second operation while the first holds the VM lock', async ({ expect }) => {
    const { driver } = await open();
    const { spec } = await driver.define(definition());
    const starting = driver.start(spec.uuid);
    expect((await driver.get(spec.uuid))!.runtime).toMatchObject({
      state: 'starting',
      lockedBy: 'start',
    });
    await expect(driver.stop(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/is busy: a start operation is in progress/),
    });
    await starting;
    await driver.stop(spec.uuid);
  });

  it('waits for the guest on shutdown, fails after the timeout leaving it running, and powers it off with forceStop', async ({
    expect,
  }) => {
    const { driver, stateDir } = await open();
    const { spec } = await driver.define(definition());
    await driver.start(spec.uuid);
    const pid = pidOf(stateDir, spec.uuid);
    // a guest without an OS ignores the ACPI power button
    await expect(driver.shutdown(spec.uuid, { timeoutSeconds: 1 })).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/did not shut down within 1 s; it is still running/),
    });
    expect((await driver.get(spec.uuid))!.runtime).toMatchObject({
      state: 'running',
      lockedBy: '',
    });
    expect(isAlive(pid)).toBe(true);
    await expect(
      driver.shutdown(spec.uuid, { timeoutSeconds: 1, forceStop: true }),
    ).resolves.toMatchObject({ runtime: { state: 'stopped' } });
    expect(isAlive(pid)).toBe(false);
  });

  it('re-attaches to running QEMUs when opened again, and reports one killed behind its back as crashed', async ({
    expect,
  }) => {
    const first = await open();
    const a = (await first.driver.define(definition())).spec;
    const b = (await first.driver.define(definition())).spec;
    await first.driver.start(a.uuid);
    await first.driver.start(b.uuid);
    const pidA = pidOf(first.stateDir, a.uuid);
    await first.driver.close();

    const { driver } = await open({}, first.stateDir);
    expect((await driver.get(a.uuid))!.runtime.state).toBe('running');
    expect(pidOf(first.stateDir, a.uuid)).toBe(pidA);
    await expect(driver.reboot(a.uuid)).resolves.toMatchObject({ runtime: { state: 'running' } });

    process.kill(pidOf(first.stateDir, b.uuid), 'SIGKILL');
    await expect.poll(async () => (await driver.get(b.uuid))!.runtime.state).toBe('crashed');
    await expect(driver.start(b.uuid)).resolves.toMatchObject({ runtime: { state: 'running' } });

    await driver.stop(a.uuid);
    await driver.stop(b.uuid);
    expect(isAlive(pidA)).toBe(false);
  });

  it('kills and forgets an incoming QEMU that was not committed when opened again', async ({
    expect,
  }) => {
    const first = await open();
    const spec = definition();
    const address = await first.driver.prepareIncoming(spec, {
      migrationId: 'm-1',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    expect(address).toEqual({ kind: 'unix', path: join(first.stateDir, 'run', spec.uuid, 'mig') });
    expect((await first.driver.get(spec.uuid))!.runtime).toMatchObject({
      state: 'migrating',
      lockedBy: 'migration',
    });
    const pid = pidOf(first.stateDir, spec.uuid);
    await first.driver.close();

    const { driver } = await open({}, first.stateDir);
    expect(await driver.get(spec.uuid)).toBeUndefined();
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(join(first.stateDir, 'run', spec.uuid))).toBe(false);
    expect(readdirSync(join(first.stateDir, 'qemu'))).toEqual([]);
  });

  it('runs disks from the image directory and refuses to start without the image', async ({
    expect,
  }) => {
    const imageDir = tempDir('dv-images-');
    const { driver } = await open({ imageDir });
    const spec = definition({
      disks: [{ pool: 'pool1', image: 'root', sizeBytes: 1024 * 1024, bus: 'virtio' }],
    });
    await driver.define(spec);
    await expect(driver.start(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/disk image pool1\/root of VM .* does not exist/),
    });
    expect((await driver.get(spec.uuid))!.runtime.state).toBe('stopped');
    mkdirSync(join(imageDir, 'pool1'));
    writeFileSync(join(imageDir, 'pool1', 'root.raw'), Buffer.alloc(1024 * 1024));
    await expect(driver.start(spec.uuid)).resolves.toMatchObject({ runtime: { state: 'running' } });
    await driver.stop(spec.uuid);
  });

  it("passes QEMU's own complaint on when it cannot start", async ({ expect }) => {
    const { driver } = await open({ machine: 'no-such-machine' });
    const { spec } = await driver.define(definition());
    await expect(driver.start(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/QEMU could not start VM .*unsupported machine type/),
    });
    expect((await driver.get(spec.uuid))!.runtime.state).toBe('stopped');
  });

  it('refuses hostile or unrunnable definitions before anything is saved', async ({ expect }) => {
    const bootDir = tempDir('dv-boot-');
    const { driver, stateDir } = await open({ bootDir });
    const refused: Array<[Partial<VmDefinition>, RegExp]> = [
      [{ labels: { 'qemu-kernel': '../../../etc/shadow' } }, /plain file name/],
      [
        { labels: { 'qemu-kernel': 'vmlinuz', 'qemu-append': 'quiet" -device foo' } },
        /qemu-append may only hold/,
      ],
      [{ name: 'web,01' }, /name/],
      [{ cpuModel: 'NoSuchCpu' }, /CPU model NoSuchCpu is not known to this QEMU/],
      [{ cpuModel: 'host,+vmx' }, /cpuModel/],
      [{ disks: [{ pool: 'p,q', image: 'x', sizeBytes: 1, bus: 'virtio' }] }, /disks/],
      [
        {
          nics: [
            { mac: '52:54:00:aa:bb:cc', bridge: 'br0,helper=/bin/sh', model: 'virtio', vlan: 0 },
          ],
        },
        /bridge/,
      ],
    ];
    for (const [overrides, message] of refused) {
      await expect(
        driver.define(definition(overrides)),
        JSON.stringify(overrides),
      ).rejects.toMatchObject({
        code: ErrorCode.InvalidArgument,
        message: expect.stringMatching(message),
      });
    }
    expect(await driver.list()).toEqual([]);
    expect(readdirSync(join(stateDir, 'qemu'))).toEqual([]);

    const { spec } = await driver.define(definition({ labels: { 'qemu-kernel': 'vmlinuz' } }));
    await expect(driver.start(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/boot file vmlinuz of VM .* does not exist/),
    });
    await expect(driver.define(definition({ uuid: spec.uuid }))).rejects.toMatchObject({
      code: ErrorCode.AlreadyExists,
    });
  });

  it('undefines a stopped VM only', async ({ expect }) => {
    const { driver, stateDir } = await open();
    const { spec } = await driver.define(definition());
    await driver.start(spec.uuid);
    await expect(driver.undefine(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/is running; only a stopped VM can be undefined/),
    });
    await driver.stop(spec.uuid);
    await driver.undefine(spec.uuid);
    expect(await driver.get(spec.uuid)).toBeUndefined();
    expect(readdirSync(join(stateDir, 'qemu'))).toEqual([]);
    await expect(driver.undefine(spec.uuid)).rejects.toMatchObject({ code: ErrorCode.NotFound });
  });

  it('reports the QEMU version in health and facts, and fails health when QEMU cannot run', async ({
    expect,
  }) => {
    const { driver } = await open();
    await expect(driver.health()).resolves.toMatchObject({
      name: 'qemu',
      status: 'ok',
      message: expect.stringMatching(/^QEMU \d+\.\d+\.\d+ \(tcg\), 0 VMs/),
    });
    const facts = await driver.facts();
    expect(facts.versions.qemu).toMatch(/^\d+\.\d+\.\d+$/);
    expect(facts.cpuCount).toBeGreaterThan(0);
    // Health runs with every heartbeat and HA probe: a version that answered is not asked again soon.
    const processes = new QemuProcessRepository(binary);
    const dir = tempDir('dv-qemu-');
    stateDirs.push(dir);
    const counted = await QemuHypervisorDriver.open({
      config,
      stateDir: dir,
      clock: systemClock,
      processes,
    });
    const asked = vi.spyOn(processes, 'version');
    await counted.health();
    await expect(counted.health()).resolves.toMatchObject({ status: 'ok' });
    expect(asked).toHaveBeenCalledTimes(1);
    const broken = await open({ binary: '/nonexistent/qemu-system-x86_64' });
    await expect(broken.driver.health()).resolves.toMatchObject({
      status: 'failed',
      message: expect.stringMatching(/QEMU cannot run/),
    });
  });

  it('refuses a state directory too long for unix socket paths', async ({ expect }) => {
    const deep = join(tempDir('dv-qemu-'), 'x'.repeat(80));
    await expect(
      QemuHypervisorDriver.open({ config, stateDir: deep, clock: systemClock }),
    ).rejects.toThrow(/too long for QEMU's unix sockets.*at most 107/);
  });
});
