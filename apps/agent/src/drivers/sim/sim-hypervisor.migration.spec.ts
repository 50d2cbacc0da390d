import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../shared/agent-error';
import { systemClock } from '../../shared/clock';
import type {
  HostFacts,
  MigrationAddress,
  MigrationStats,
  OutgoingOptions,
  VmDefinition,
} from '../hypervisor.driver';
import { DIRTY_RATE_LABEL, SimHypervisorDriver } from './sim-hypervisor.driver';
import { SWITCHOVER_COST_MS } from './sim-migration.model';
import { SimStateRepository, type SimVmRecord } from './sim-state.repository';

const TIME_SCALE = 0.02; // a 1 GiB VM's first pass at 10 GbE: 0.86 s modelled, 17 ms here
const GiB = 1024 ** 3;
const facts: HostFacts = {
  hostname: 'node-1',
  fqdn: 'node-1.test',
  addresses: ['127.0.0.1'],
  cpuModel: 'sim',
  cpuFlags: [],
  cpuCount: 16,
  memoryBytes: 64 * GiB,
  hugepages: { pageSizeBytes: 2 * 1024 * 1024, total: 0, free: 0 },
  bridges: ['vmbr0'],
  versions: {},
};

let counter = 0;
function definition(dirtyRate: number): VmDefinition {
  counter++;
  return {
    uuid: `7c2d9e63-6a5f-4d8c-8e6a-${String(counter).padStart(12, '0')}`,
    name: `app-${String(counter).padStart(2, '0')}`,
    vcpus: 2,
    memoryBytes: GiB,
    disks: [{ pool: 'rbd', image: `app-${counter}-disk0`, sizeBytes: 20 * GiB, bus: 'virtio' }],
    nics: [{ mac: '52:54:00:ab:cd:ef', bridge: 'vmbr0', model: 'virtio', vlan: 0 }],
    cpuModel: 'x86-64-v2',
    hugepages: false,
    tenant: '',
    labels: { [DIRTY_RATE_LABEL]: String(dirtyRate) },
  };
}

const opened: SimHypervisorDriver[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((driver) => driver.close()));
});

async function open(
  stateDir = mkdtempSync(join(tmpdir(), 'sim-mig-')),
  seed?: () => Promise<SimVmRecord[]>,
) {
  const driver = await SimHypervisorDriver.open({
    state: new SimStateRepository(stateDir),
    clock: systemClock,
    timeScale: TIME_SCALE,
    facts,
    seed,
    migrationBandwidthBytes: 1_250_000_000,
  });
  opened.push(driver);
  return { driver, stateDir };
}

/** Two nodes, a running VM on the source. */
async function nodes(dirtyRate = 0) {
  const source = await open();
  const target = await open();
  const { spec } = await source.driver.define(definition(dirtyRate));
  await source.driver.start(spec.uuid);
  return { source, target, spec, uuid: spec.uuid };
}

function outgoing(
  destination: MigrationAddress,
  overrides: Partial<OutgoingOptions> = {},
): OutgoingOptions {
  return {
    migrationId: 'mig-1',
    destination,
    downtimeLimitMs: 300,
    bandwidthLimitBytes: 0,
    autoConverge: false,
    allowPostcopy: false,
    ...overrides,
  };
}

const psk = () => ({ identity: 'debvisor-migration', key: randomBytes(32) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds; fails with the last value after a generous deadline (a guard, not a timing assertion). */
async function until<T>(read: () => Promise<T>, check: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`condition not met; last value: ${JSON.stringify(value)}`);
    await sleep(5);
  }
}
const status = (wanted: MigrationStats['status']) => (s: MigrationStats) => s.status === wanted;

describe('sim hypervisor driver: live migration', () => {
  it('migrates a running VM through a unix socket: the destination completes, runs it once committed, and the source forgets it', async () => {
    const { source, target, spec, uuid } = await nodes();
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    expect(address).toMatchObject({ kind: 'unix', path: expect.stringContaining(target.stateDir) });
    expect((await target.driver.get(uuid))!.runtime).toMatchObject({
      state: 'paused',
      lockedBy: 'migration',
    });
    expect(await target.driver.incomingStatus(uuid)).toBe('setup');

    await source.driver.startOutgoing(uuid, outgoing(address));
    expect((await source.driver.get(uuid))!.runtime).toMatchObject({
      state: 'migrating',
      lockedBy: 'migration',
    });
    await expect(source.driver.stop(uuid)).rejects.toMatchObject({
      message: expect.stringMatching(/busy: a migration operation/),
    });

    const done = await until(() => source.driver.outgoingStats(uuid), status('completed'));
    expect(done).toMatchObject({
      remainingBytes: 0,
      totalBytes: GiB,
      transferredBytes: GiB,
      downtimeMs: SWITCHOVER_COST_MS,
    });
    expect(done.totalTimeMs).toBeGreaterThan(800);
    expect(await target.driver.incomingStatus(uuid)).toBe('completed');
    expect((await source.driver.get(uuid))!.runtime).toMatchObject({
      state: 'paused',
      lockedBy: 'migration',
    });

    await expect(target.driver.commitIncoming(uuid)).resolves.toMatchObject({
      runtime: { state: 'running', lockedBy: '' },
    });
    await source.driver.finishOutgoing(uuid);
    expect(await source.driver.get(uuid)).toBeUndefined();

    await Promise.all([source.driver.close(), target.driver.close()]);
    expect((await (await open(target.stateDir)).driver.get(uuid))?.runtime.state).toBe('running');
    expect(await (await open(source.stateDir)).driver.get(uuid)).toBeUndefined();
  });

  it("migrates through a relay that carries the bytes both ways, as the agents' tunnel does", async () => {
    const { source, target, spec, uuid } = await nodes(300_000_000);
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    if (address.kind !== 'unix') throw new Error('expected a unix socket');
    const relayPath = join(mkdtempSync(join(tmpdir(), 'relay-')), 'r.sock');
    const relay = createServer((from) => {
      const to = connect({ path: address.path });
      from.pipe(to).on('error', () => undefined);
      to.pipe(from).on('error', () => undefined);
    });
    await new Promise<void>((resolve) => relay.listen(relayPath, resolve));
    try {
      await source.driver.startOutgoing(
        uuid,
        outgoing({ kind: 'unix', path: relayPath }, { downtimeLimitMs: 50 }),
      );
      const done = await until(() => source.driver.outgoingStats(uuid), status('completed'));
      expect(done.iteration).toBeGreaterThan(2);
      await expect(target.driver.commitIncoming(uuid)).resolves.toMatchObject({
        runtime: { state: 'running' },
      });
    } finally {
      relay.close();
    }
  });

  it('migrates over TCP when the source proves the PSK, keeping the guest uptime', async () => {
    const spec = definition(0);
    const uuid = spec.uuid;
    const bootedAt = new Date(Date.now() - 3_600_000).toISOString();
    const source = await open(undefined, async () => [
      { spec, state: 'running', stateChangedAt: bootedAt, bootedAt, transition: null },
    ]);
    const target = await open();
    const key = psk();
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'direct',
      listenHost: '127.0.0.1',
      psk: key,
      allowPostcopy: false,
    });
    expect(address).toMatchObject({ kind: 'tcp', host: '127.0.0.1', port: expect.any(Number) });
    await source.driver.startOutgoing(uuid, outgoing(address, { psk: key }));
    await until(() => source.driver.outgoingStats(uuid), status('completed'));
    const committed = await target.driver.commitIncoming(uuid);
    expect(committed.runtime.state).toBe('running');
    expect(committed.runtime.uptimeSeconds).toBeGreaterThanOrEqual(3600);
  });

  it('fails a direct migration whose source proves another key or none; the VM keeps running at the source', async () => {
    for (const [sourceKey, reason] of [
      [psk(), /proved another migration key/],
      [undefined, /did not prove the migration key/],
    ] as const) {
      const { source, target, spec, uuid } = await nodes();
      const address = await target.driver.prepareIncoming(spec, {
        migrationId: 'mig-1',
        transport: 'direct',
        listenHost: '127.0.0.1',
        psk: psk(),
        allowPostcopy: false,
      });
      await source.driver.startOutgoing(uuid, outgoing(address, { psk: sourceKey }));
      const failed = await until(() => source.driver.outgoingStats(uuid), status('failed'));
      expect(failed.error).toMatch(reason);
      expect((await source.driver.get(uuid))!.runtime).toMatchObject({
        state: 'running',
        lockedBy: '',
      });
      expect(await target.driver.incomingStatus(uuid)).toBe('failed');
      await target.driver.abortIncoming(uuid);
      await target.driver.abortIncoming(uuid);
      expect(await target.driver.list()).toEqual([]);
    }
  });

  it('takes one connection only: a stranger that connects first fails the incoming side and the source cannot connect', async () => {
    const { source, target, spec, uuid } = await nodes();
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'direct',
      listenHost: '127.0.0.1',
      psk: psk(),
      allowPostcopy: false,
    });
    if (address.kind !== 'tcp') throw new Error('expected a TCP address');
    const stranger = connect({ host: address.host, port: address.port });
    stranger.on('error', () => undefined);
    await new Promise((resolve) => stranger.once('connect', resolve));
    stranger.write('GET / HTTP/1.1\r\n\r\n');
    await until(
      () => target.driver.incomingStatus(uuid),
      (s) => s === 'failed',
    );
    stranger.destroy();
    await source.driver.startOutgoing(uuid, outgoing(address));
    expect(await source.driver.outgoingStats(uuid)).toMatchObject({
      status: 'failed',
      error: expect.stringMatching(/cannot connect to the migration destination/),
    });
    expect((await source.driver.get(uuid))!.runtime.state).toBe('running');
  });

  it('cancels a migration mid-way: the VM keeps running at the source and the destination sees the connection drop', async () => {
    const { source, target, spec, uuid } = await nodes(2_000_000_000);
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    await source.driver.startOutgoing(uuid, outgoing(address));
    const busy = await until(
      () => source.driver.outgoingStats(uuid),
      (s) => s.iteration >= 3,
    );
    expect(busy).toMatchObject({ status: 'active', dirtyRateBytes: 2_000_000_000 });
    expect(await target.driver.incomingStatus(uuid)).toBe('active');

    await source.driver.cancelOutgoing(uuid);
    expect(await source.driver.outgoingStats(uuid)).toMatchObject({ status: 'cancelled' });
    expect((await source.driver.get(uuid))!.runtime).toMatchObject({
      state: 'running',
      lockedBy: '',
    });
    await source.driver.cancelOutgoing(uuid);
    await until(
      () => target.driver.incomingStatus(uuid),
      (s) => s === 'failed',
    );
    await expect(target.driver.commitIncoming(uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
    });
    await target.driver.abortIncoming(uuid);
    expect(await target.driver.get(uuid)).toBeUndefined();
  });

  it('completes a non-convergent migration with post-copy: the VM runs at the destination while the rest is pulled', async () => {
    // 100 MB/s of dirtying over a 50 MB/s limit: pre-copy never gets there (and the pull takes ~0.4 s here).
    const { source, target, spec, uuid } = await nodes(100_000_000);
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'tunnel',
      allowPostcopy: true,
    });
    await source.driver.startOutgoing(
      uuid,
      outgoing(address, { bandwidthLimitBytes: 50_000_000, allowPostcopy: true }),
    );
    const stuck = await until(
      () => source.driver.outgoingStats(uuid),
      (s) => s.iteration >= 2,
    );
    expect(stuck).toMatchObject({ status: 'active', throughputBytes: 50_000_000 });
    expect(stuck.dirtyRateBytes).toBeGreaterThan(stuck.throughputBytes);

    await source.driver.switchToPostcopy(uuid);
    expect((await source.driver.get(uuid))!.runtime.state).toBe('paused');
    await expect(source.driver.cancelOutgoing(uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/post-copy migration cannot be cancelled/),
    });
    await until(
      () => target.driver.incomingStatus(uuid),
      (s) => s === 'postcopy-active' || s === 'completed',
    );
    await expect(target.driver.commitIncoming(uuid)).resolves.toMatchObject({
      runtime: { state: 'running' },
    });
    await expect(source.driver.finishOutgoing(uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
    });

    const done = await until(() => source.driver.outgoingStats(uuid), status('completed'));
    expect(done.downtimeMs).toBe(SWITCHOVER_COST_MS);
    expect(await target.driver.incomingStatus(uuid)).toBe('completed');
    await source.driver.finishOutgoing(uuid);
    expect(await source.driver.list()).toEqual([]);
  });

  it('refuses post-copy when the migration or the destination did not enable it', async () => {
    const { source, target, spec, uuid } = await nodes(2_000_000_000);
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    await source.driver.startOutgoing(uuid, outgoing(address, { allowPostcopy: true }));
    await until(() => source.driver.outgoingStats(uuid), status('active'));
    await expect(source.driver.switchToPostcopy(uuid)).rejects.toMatchObject({
      message: expect.stringMatching(/destination .* did not enable post-copy/),
    });
    await source.driver.cancelOutgoing(uuid);
    await target.driver.abortIncoming(uuid);

    const again = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-2',
      transport: 'tunnel',
      allowPostcopy: true,
    });
    await source.driver.startOutgoing(uuid, outgoing(again, { migrationId: 'mig-2' }));
    await expect(source.driver.switchToPostcopy(uuid)).rejects.toMatchObject({
      message: expect.stringMatching(/post-copy was not enabled/),
    });
  });

  it('refuses to prepare an incoming VM whose uuid or name is here already, and a stream for another migration', async () => {
    const { source, target, spec, uuid } = await nodes();
    await expect(
      source.driver.prepareIncoming(spec, {
        migrationId: 'mig-1',
        transport: 'tunnel',
        allowPostcopy: false,
      }),
    ).rejects.toMatchObject({ code: ErrorCode.AlreadyExists });
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    await expect(
      target.driver.prepareIncoming(spec, {
        migrationId: 'mig-1',
        transport: 'tunnel',
        allowPostcopy: false,
      }),
    ).rejects.toMatchObject({ code: ErrorCode.AlreadyExists });
    await source.driver.startOutgoing(uuid, outgoing(address, { migrationId: 'mig-other' }));
    const failed = await until(() => source.driver.outgoingStats(uuid), status('failed'));
    expect(failed.error).toMatch(/another migration/);
  });

  it('drops an uncommitted incoming VM and cancels an outgoing pre-copy when the drivers open again', async () => {
    const { source, target, spec, uuid } = await nodes(2_000_000_000);
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    await source.driver.startOutgoing(uuid, outgoing(address));
    await until(
      () => source.driver.outgoingStats(uuid),
      (s) => s.iteration >= 2,
    );
    await Promise.all([source.driver.close(), target.driver.close()]);

    const { driver: target2 } = await open(target.stateDir);
    expect(await target2.list()).toEqual([]);
    const { driver: source2 } = await open(source.stateDir);
    expect((await source2.get(uuid))!.runtime).toMatchObject({ state: 'running', lockedBy: '' });
    expect(await source2.outgoingStats(uuid)).toMatchObject({
      status: 'cancelled',
      error: expect.stringMatching(/agent stopped during the migration/),
    });
  });

  it('keeps a completed source paused and locked across a re-open, until finishOutgoing removes it', async () => {
    const { source, target, spec, uuid } = await nodes();
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    await source.driver.startOutgoing(uuid, outgoing(address));
    await until(() => source.driver.outgoingStats(uuid), status('completed'));
    await source.driver.close();
    const { driver: source2 } = await open(source.stateDir);
    expect((await source2.get(uuid))!.runtime).toMatchObject({
      state: 'paused',
      lockedBy: 'migration',
    });
    expect(await source2.outgoingStats(uuid)).toMatchObject({
      status: 'completed',
      downtimeMs: SWITCHOVER_COST_MS,
    });
    await source2.finishOutgoing(uuid);
    expect(await source2.list()).toEqual([]);
  });

  it('ignores a late switch to post-copy and resumes a completed source when the migration is cancelled before the destination took over', async () => {
    const { source, target, spec, uuid } = await nodes();
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig-1',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    await source.driver.startOutgoing(uuid, outgoing(address));
    await until(() => source.driver.outgoingStats(uuid), status('completed'));
    await source.driver.switchToPostcopy(uuid); // too late: changes nothing, as in QEMU
    expect(await source.driver.outgoingStats(uuid)).toMatchObject({ status: 'completed' });
    await source.driver.cancelOutgoing(uuid);
    expect((await source.driver.get(uuid))!.runtime).toMatchObject({
      state: 'running',
      lockedBy: '',
    });
    await expect(source.driver.finishOutgoing(uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
    });
  });

  it('undefines a stopped VM and refuses a running one', async () => {
    const { source, uuid } = await nodes();
    await expect(source.driver.undefine(uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/only a stopped VM can be undefined/),
    });
    await source.driver.stop(uuid);
    await source.driver.undefine(uuid);
    expect(await source.driver.get(uuid)).toBeUndefined();
    await expect(source.driver.undefine(uuid)).rejects.toMatchObject({ code: ErrorCode.NotFound });
  });
});
