import { mkdtempSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { ErrorCode } from '../../shared/agent-error';
import { systemClock } from '../../shared/clock';
import type { HostFacts, VmDefinition } from '../hypervisor.driver';
import { HUNG_GUEST_LABEL, SimHypervisorDriver } from './sim-hypervisor.driver';
import { SimStateRepository, type SimVmRecord } from './sim-state.repository';

const TIME_SCALE = 0.02; // start 80 ms, shutdown 120 ms, reboot 160 ms, stop 10 ms
const facts: HostFacts = {
  hostname: 'node-1',
  fqdn: 'node-1.test',
  addresses: ['127.0.0.1'],
  cpuModel: 'sim',
  cpuFlags: [],
  cpuCount: 16,
  memoryBytes: 64 * 1024 ** 3,
  hugepages: { pageSizeBytes: 2 * 1024 * 1024, total: 8192, free: 8192 },
  bridges: ['vmbr0'],
  versions: {},
};

let counter = 0;
function definition(overrides: Partial<VmDefinition> = {}): VmDefinition {
  counter++;
  return {
    uuid: `6b1b8c52-5f4e-4c7b-9d59-${String(counter).padStart(12, '0')}`,
    name: `web-${String(counter).padStart(2, '0')}`,
    vcpus: 2,
    memoryBytes: 4 * 1024 ** 3,
    disks: [
      { pool: 'rbd', image: `web-${counter}-disk0`, sizeBytes: 40 * 1024 ** 3, bus: 'virtio' },
    ],
    nics: [{ mac: '52:54:00:12:34:56', bridge: 'vmbr0', model: 'virtio', vlan: 0 }],
    cpuModel: 'x86-64-v2',
    hugepages: false,
    tenant: 'tenant-acme',
    labels: {},
    ...overrides,
  };
}

async function open(
  stateDir = mkdtempSync(join(tmpdir(), 'sim-')),
  seed?: () => Promise<SimVmRecord[]>,
) {
  const driver = await SimHypervisorDriver.open({
    state: new SimStateRepository(stateDir),
    clock: systemClock,
    timeScale: TIME_SCALE,
    facts,
    seed,
  });
  return { driver, stateDir };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sim hypervisor driver', () => {
  it('starts a stopped VM through "starting" to "running", holding the lock meanwhile', async () => {
    const { driver } = await open();
    const { spec } = await driver.define(definition());
    const starting = driver.start(spec.uuid);
    await sleep(20);
    expect((await driver.get(spec.uuid))!.runtime).toMatchObject({
      state: 'starting',
      lockedBy: 'start',
    });
    const started = await starting;
    expect(started.runtime).toMatchObject({ state: 'running', lockedBy: '' });
    expect(started.runtime.cpuUsage).toBeGreaterThan(0);
    expect(started.runtime.memoryUsedBytes).toBeGreaterThan(0);
  });

  it('refuses a second operation on a VM while the first one is under way', async () => {
    const { driver } = await open();
    const { spec } = await driver.define(definition());
    const starting = driver.start(spec.uuid);
    await expect(driver.stop(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/is busy: a start operation is in progress/),
    });
    await starting;
    await expect(driver.stop(spec.uuid)).resolves.toMatchObject({ runtime: { state: 'stopped' } });
  });

  it('refuses operations that do not fit the VM state', async () => {
    const { driver } = await open();
    const { spec } = await driver.define(definition());
    await expect(driver.reboot(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/is stopped; only a running VM can be rebooted/),
    });
    await driver.start(spec.uuid);
    await expect(driver.start(spec.uuid)).rejects.toMatchObject({
      message: expect.stringMatching(/is running; only a stopped VM can be started/),
    });
    await expect(driver.start('00000000-0000-4000-8000-000000000000')).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
  });

  it('shuts a VM down and reboots it, taking the scaled time', async () => {
    const { driver } = await open();
    const { spec } = await driver.define(definition());
    await driver.start(spec.uuid);
    let started = Date.now();
    await expect(driver.reboot(spec.uuid)).resolves.toMatchObject({
      runtime: { state: 'running' },
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    started = Date.now();
    await expect(driver.shutdown(spec.uuid)).resolves.toMatchObject({
      runtime: { state: 'stopped', uptimeSeconds: 0, cpuUsage: 0 },
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(110);
  });

  it('fails the shutdown of a hung guest after the timeout, leaving it running; force_stop powers it off', async () => {
    const { driver } = await open();
    const { spec } = await driver.define(definition({ labels: { [HUNG_GUEST_LABEL]: 'hung' } }));
    await driver.start(spec.uuid);
    await expect(driver.shutdown(spec.uuid, { timeoutSeconds: 5 })).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(
        /did not shut down within 5 s; it is still running \(retry with force_stop/,
      ),
    });
    expect((await driver.get(spec.uuid))!.runtime.state).toBe('running');
    await expect(
      driver.shutdown(spec.uuid, { timeoutSeconds: 5, forceStop: true }),
    ).resolves.toMatchObject({ runtime: { state: 'stopped' } });
  });

  it('keeps VMs with their states and uptime when it is opened again', async () => {
    const { driver, stateDir } = await open();
    const running = await driver.define(definition());
    const stopped = await driver.define(definition());
    await driver.start(running.spec.uuid);
    const before = (await driver.get(running.spec.uuid))!.runtime.stateChangedAt;
    await driver.close();
    const { driver: reopened } = await open(stateDir);
    expect((await reopened.list()).map((vm) => [vm.spec.uuid, vm.runtime.state])).toEqual([
      [running.spec.uuid, 'running'],
      [stopped.spec.uuid, 'stopped'],
    ]);
    expect((await reopened.get(running.spec.uuid))!.runtime.stateChangedAt).toBe(before);
  });

  it('settles an operation that was under way when the agent stopped, as the hypervisor finishes it', async () => {
    const { driver, stateDir } = await open();
    const { spec } = await driver.define(definition());
    let started = false;
    const starting = driver.start(spec.uuid).finally(() => (started = true));
    // Reopen once "starting" is on disk (the save fsyncs, which takes a while on a loaded machine).
    while (!readFileSync(join(stateDir, 'sim', 'vms.json'), 'utf8').includes('"starting"')) {
      if (started)
        throw new Error('the start finished before its "starting" state was seen on disk');
      await sleep(2);
    }
    const { driver: restarted } = await open(stateDir);
    expect((await restarted.get(spec.uuid))!.runtime).toMatchObject({
      state: 'running',
      lockedBy: '',
    });
    await starting;
  });

  it('writes its state atomically, leaving no temporary files behind', async () => {
    const { driver, stateDir } = await open();
    const { spec } = await driver.define(definition());
    await driver.start(spec.uuid);
    await driver.stop(spec.uuid);
    expect(readdirSync(join(stateDir, 'sim'))).toEqual(['vms.json']);
  });

  it('refuses to open a corrupt state file, naming it', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'sim-'));
    mkdirSync(join(stateDir, 'sim'));
    writeFileSync(join(stateDir, 'sim', 'vms.json'), '{"version":1,"vms":[{"spec":{}}]}');
    await expect(open(stateDir)).rejects.toThrow(/sim VM state file .*vms\.json is corrupt/);
  });

  it('seeds VMs on a first start only', async () => {
    const seed = vi.fn(async (): Promise<SimVmRecord[]> => [
      {
        spec: definition(),
        state: 'running',
        stateChangedAt: new Date().toISOString(),
        bootedAt: new Date().toISOString(),
        transition: null,
      },
    ]);
    const { driver, stateDir } = await open(undefined, seed);
    expect(await driver.list()).toHaveLength(1);
    await open(stateDir, seed);
    expect(seed).toHaveBeenCalledTimes(1);
  });

  it('reports host usage that grows with running VMs and the hugepages they hold', async () => {
    const { driver } = await open();
    const idle = await driver.usage();
    const { spec } = await driver.define(
      definition({ vcpus: 8, hugepages: true, memoryBytes: 2 * 1024 ** 3 }),
    );
    await driver.start(spec.uuid);
    const busy = await driver.usage();
    expect(busy.cpuUsage).toBeGreaterThan(idle.cpuUsage);
    expect(busy.memoryUsedBytes).toBeGreaterThan(idle.memoryUsedBytes);
    expect((await driver.facts()).hugepages.free).toBe(8192 - 1024);
  });
});
