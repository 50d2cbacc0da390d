import { cleanupTempDirs, requireBinary, tempDir } from '@debvisor/testing';
import {
  buildTinyGuest,
  lastTinyGuestTick,
  TINY_GUEST_READY,
  tinyGuestAppend,
} from '@debvisor/testing/tiny-guest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { ErrorCode } from '../../shared/agent-error';
import { systemClock } from '../../shared/clock';
import type {
  MigrationAddress,
  MigrationPsk,
  MigrationStats,
  OutgoingOptions,
  VmDefinition,
} from '../hypervisor.driver';
import type { QemuConfig } from './qemu-argv';
import { QemuHypervisorDriver } from './qemu-hypervisor.driver';
import { QemuProcessRepository } from './qemu-process.repository';

const binary = requireBinary('qemu-system-x86_64', 'qemu-system-x86');
const config: QemuConfig = { binary, accel: 'tcg', machine: 'q35', startTimeoutSeconds: 30 };
const MiB = 1024 * 1024;
const stateDirs: string[] = [];

let counter = 0;
function definition(overrides: Partial<VmDefinition> = {}): VmDefinition {
  counter++;
  return {
    uuid: `9a1e6f2c-7b3d-4e5f-a607-${String(counter).padStart(12, '0')}`,
    name: `mig-${counter}`,
    vcpus: 1,
    memoryBytes: 64 * MiB,
    disks: [],
    nics: [],
    cpuModel: 'host-model',
    hugepages: false,
    tenant: '',
    labels: {},
    ...overrides,
  };
}

interface Host {
  driver: QemuHypervisorDriver;
  stateDir: string;
}

async function host(overrides: Partial<QemuConfig> = {}): Promise<Host> {
  const stateDir = tempDir('dv-mig-');
  stateDirs.push(stateDir);
  return {
    driver: await QemuHypervisorDriver.open({
      config: { ...config, ...overrides },
      stateDir,
      clock: systemClock,
    }),
    stateDir,
  };
}

/** A source running a fresh VM, and a target, as two agents on one machine. */
async function pair(
  spec: VmDefinition,
  overrides: Partial<QemuConfig> = {},
): Promise<{ source: Host; target: Host }> {
  const [source, target] = await Promise.all([host(overrides), host(overrides)]);
  await source.driver.define(spec);
  await source.driver.start(spec.uuid);
  return { source, target };
}

function outgoing(
  destination: OutgoingOptions['destination'],
  overrides: Partial<OutgoingOptions> = {},
): OutgoingOptions {
  return {
    migrationId: 'mig',
    destination,
    downtimeLimitMs: 300,
    bandwidthLimitBytes: 0,
    autoConverge: false,
    allowPostcopy: false,
    ...overrides,
  };
}

function psk(seed: number): MigrationPsk {
  return { identity: 'debvisor-migration', key: Buffer.alloc(32, seed) };
}

function pidOf(h: Host, uuid: string): number {
  return Number(readFileSync(join(h.stateDir, 'run', uuid, 'pid'), 'utf8').trim());
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function serialLog(h: Host, uuid: string): string {
  return readFileSync(join(h.stateDir, 'run', uuid, 'serial.log'), 'utf8');
}

/**
 * Waits until the guest on `h` printed more than one tick beyond `after`. When it does not, the
 * failure says what its QEMU does (run state, threads with their CPU times, serial log's tail):
 * what tells a stuck TCG guest (a vCPU at 100 %, nothing printed) from a slow one.
 */
async function ticksBeyond(h: Host, uuid: string, after: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (lastTinyGuestTick(serialLog(h, uuid)) <= after + 1) {
    if (Date.now() > deadline) {
      const pid = pidOf(h, uuid);
      const threads = readdirSync(`/proc/${pid}/task`).map((task) => {
        const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return `${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))} ${fields[0]} ${fields[11]} ${fields[12]}`;
      });
      const vm = await h.driver.get(uuid);
      throw new Error(
        `no tick beyond ${after + 1} within 60 s; the VM: ${JSON.stringify(vm?.runtime)}; QEMU threads (name state utime stime): ${threads.join(', ')}; serial log tail: ${JSON.stringify(serialLog(h, uuid).slice(-400))}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Polls the source's figures until `done` holds for them. */
async function statsUntil(
  h: Host,
  uuid: string,
  done: (stats: MigrationStats) => boolean,
  timeoutMs = 30_000,
): Promise<MigrationStats> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await h.driver.outgoingStats(uuid);
    if (done(stats)) return stats;
    if (Date.now() > deadline)
      throw new Error(
        `the migration did not get there within ${timeoutMs} ms: ${JSON.stringify(stats)}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * The link between the two hosts, as the test controls it: a unix socket the source's QEMU sends
 * to, relayed to the target's socket at `bytesPerSecond` (the pace of a datacenter link); cut()
 * breaks every connection, and a later connection goes to wherever retarget() points.
 */
class Link {
  private readonly sockets = new Set<Socket>();
  private constructor(
    readonly path: string,
    private readonly server: Server,
    private target: string,
    private readonly bytesPerSecond: number,
  ) {
    server.on('connection', (source) => this.relay(source));
  }

  static async open(path: string, target: string, bytesPerSecond: number): Promise<Link> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, resolve);
    });
    return new Link(path, server, target, bytesPerSecond);
  }

  retarget(target: string): void {
    this.target = target;
  }

  cut(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  close(): void {
    this.cut();
    this.server.close();
  }

  private relay(source: Socket): void {
    const target = createConnection(this.target);
    for (const socket of [source, target]) {
      this.sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => (source.destroy(), target.destroy()));
    }
    target.pipe(source);
    source.on('data', (chunk: Buffer) => {
      target.write(chunk);
      // the link's pace: this chunk takes its share of a second
      source.pause();
      setTimeout(() => source.resume(), (chunk.length / this.bytesPerSecond) * 1000);
    });
  }
}

const settled = (stats: MigrationStats) =>
  ['completed', 'failed', 'cancelled'].includes(stats.status);

afterAll(async () => {
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

describe.concurrent('qemu driver live migration', () => {
  it('migrates a running VM through a unix socket: the target runs it, the source forgets it, QEMU reports the downtime', async ({
    expect,
  }) => {
    const spec = definition({ memoryBytes: 128 * MiB });
    const { source, target } = await pair(spec);
    const sourcePid = pidOf(source, spec.uuid);

    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    expect(address).toEqual({ kind: 'unix', path: join(target.stateDir, 'run', spec.uuid, 'mig') });
    await expect(
      target.driver.prepareIncoming(spec, {
        migrationId: 'mig',
        transport: 'tunnel',
        allowPostcopy: false,
      }),
    ).rejects.toMatchObject({ code: ErrorCode.AlreadyExists });
    await source.driver.startOutgoing(spec.uuid, outgoing(address));
    expect((await source.driver.get(spec.uuid))!.runtime).toMatchObject({
      state: 'migrating',
      lockedBy: 'migration',
    });
    await expect(source.driver.stop(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/busy: a migration operation/),
    });

    const stats = await statsUntil(source, spec.uuid, settled);
    expect(stats).toMatchObject({ status: 'completed', remainingBytes: 0 });
    expect(stats.totalBytes).toBeGreaterThanOrEqual(128 * MiB);
    expect(stats.transferredBytes).toBeGreaterThan(0);
    expect(stats.downtimeMs).toBeGreaterThanOrEqual(0);
    expect(stats.totalTimeMs).toBeGreaterThan(0);
    // as the migration service does: the target runs the VM as soon as the source saw its side complete, then the source ends
    const committed = await target.driver.commitIncoming(spec.uuid);
    expect(committed.runtime).toMatchObject({ state: 'running', lockedBy: '' });
    expect(await target.driver.incomingStatus(spec.uuid)).toBe('completed');
    expect(
      JSON.parse(readFileSync(join(target.stateDir, 'qemu', `${spec.uuid}.json`), 'utf8')),
    ).toMatchObject({ phase: 'defined', state: 'running' });
    await source.driver.finishOutgoing(spec.uuid);
    expect(isAlive(sourcePid)).toBe(false);
    expect(await source.driver.get(spec.uuid)).toBeUndefined();
    expect(readdirSync(join(source.stateDir, 'qemu'))).toEqual([]);
    await expect(target.driver.abortIncoming(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(/runs here already/),
    });
    await target.driver.stop(spec.uuid);
  });

  it("reacts to QEMU's MIGRATION events: each end's waiter wakes at a change, none waits out its timeout", async ({
    expect,
  }) => {
    const spec = definition({ memoryBytes: 128 * MiB });
    const { source, target } = await pair(spec);
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    // Far longer than the migration takes: a waiter that is not woken by an event answers false.
    const NEVER_MS = 10 * 60_000;
    const incoming = target.driver.migrationEvent(spec.uuid, NEVER_MS);
    let next = source.driver.migrationEvent(spec.uuid, NEVER_MS);
    await source.driver.startOutgoing(spec.uuid, outgoing(address));
    const seen: string[] = [];
    for (;;) {
      // as the source service does: the next event is asked for before the status is read
      expect(await next).toBe(true);
      next = source.driver.migrationEvent(spec.uuid, NEVER_MS);
      const stats = await source.driver.outgoingStats(spec.uuid);
      seen.push(stats.status);
      if (settled(stats)) break;
    }
    expect(seen.at(-1)).toBe('completed');
    expect(await incoming).toBe(true);
    await target.driver.commitIncoming(spec.uuid);
    await source.driver.finishOutgoing(spec.uuid);
    await target.driver.stop(spec.uuid);
  });

  it('migrates directly over TCP with TLS-PSK and removes the key files afterwards', async ({
    expect,
  }) => {
    const spec = definition();
    const { source, target } = await pair(spec);
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig',
      transport: 'direct',
      listenHost: '127.0.0.1',
      psk: psk(7),
      allowPostcopy: false,
    });
    expect(address).toEqual({ kind: 'tcp', host: '127.0.0.1', port: expect.any(Number) });
    expect(readFileSync(join(target.stateDir, 'run', spec.uuid, 'psk', 'keys.psk'), 'utf8')).toBe(
      `debvisor-migration:${'07'.repeat(32)}\n`,
    );

    await source.driver.startOutgoing(spec.uuid, outgoing(address, { psk: psk(7) }));
    expect(existsSync(join(source.stateDir, 'run', spec.uuid, 'psk-out'))).toBe(false);
    await expect(statsUntil(source, spec.uuid, settled)).resolves.toMatchObject({
      status: 'completed',
    });
    await expect(target.driver.commitIncoming(spec.uuid)).resolves.toMatchObject({
      runtime: { state: 'running' },
    });
    expect(existsSync(join(target.stateDir, 'run', spec.uuid, 'psk'))).toBe(false);
    await source.driver.finishOutgoing(spec.uuid);
    await target.driver.stop(spec.uuid);
  });

  it('fails a direct migration with the wrong key and leaves the source running', async ({
    expect,
  }) => {
    const spec = definition();
    const { source, target } = await pair(spec);
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig',
      transport: 'direct',
      listenHost: '127.0.0.1',
      psk: psk(1),
      allowPostcopy: false,
    });
    await source.driver.startOutgoing(spec.uuid, outgoing(address, { psk: psk(2) }));
    const stats = await statsUntil(source, spec.uuid, settled);
    expect(stats).toMatchObject({ status: 'failed', error: expect.any(String) });
    // nothing got through the handshake: QEMU still waits for a stream
    expect(['none', 'setup', 'failed']).toContain(await target.driver.incomingStatus(spec.uuid));

    await source.driver.cancelOutgoing(spec.uuid);
    expect((await source.driver.get(spec.uuid))!.runtime).toMatchObject({
      state: 'running',
      lockedBy: '',
    });
    const targetPid = pidOf(target, spec.uuid);
    await target.driver.abortIncoming(spec.uuid);
    expect(isAlive(targetPid)).toBe(false);
    expect(await target.driver.list()).toEqual([]);
    await source.driver.stop(spec.uuid);
  });

  it('resumes the source when a completed migration is cancelled because the target could not take over', async ({
    expect,
  }) => {
    const spec = definition();
    const { source, target } = await pair(spec);
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    await source.driver.startOutgoing(spec.uuid, outgoing(address));
    await expect(statsUntil(source, spec.uuid, settled)).resolves.toMatchObject({
      status: 'completed',
    });
    // QEMU paused the source at switchover; nothing runs the VM now
    await target.driver.abortIncoming(spec.uuid);
    await source.driver.cancelOutgoing(spec.uuid);
    expect((await source.driver.get(spec.uuid))!.runtime).toMatchObject({
      state: 'running',
      lockedBy: '',
    });
    await source.driver.stop(spec.uuid);
  });

  it('cancels a slow migration: the source keeps running, and aborting the target leaves nothing behind', async ({
    expect,
  }) => {
    const spec = definition();
    const { source, target } = await pair(spec);
    const address = await target.driver.prepareIncoming(spec, {
      migrationId: 'mig',
      transport: 'tunnel',
      allowPostcopy: false,
    });
    const targetPid = pidOf(target, spec.uuid);
    // even a zero page costs a few bytes on the wire: at 16 KiB/s 64 MiB take far longer than this test
    await source.driver.startOutgoing(
      spec.uuid,
      outgoing(address, { bandwidthLimitBytes: 16 * 1024 }),
    );
    await statsUntil(source, spec.uuid, (s) => s.status === 'active' && s.transferredBytes > 0);
    expect(await target.driver.incomingStatus(spec.uuid)).toBe('active');
    await expect(source.driver.finishOutgoing(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
      message: expect.stringMatching(
        /is active; the source can only be finished once it completed/,
      ),
    });

    await source.driver.cancelOutgoing(spec.uuid);
    expect((await source.driver.get(spec.uuid))!.runtime).toMatchObject({
      state: 'running',
      lockedBy: '',
    });
    await expect(source.driver.outgoingStats(spec.uuid)).rejects.toMatchObject({
      code: ErrorCode.FailedPrecondition,
    });
    await source.driver.cancelOutgoing(spec.uuid); // idempotent

    await target.driver.abortIncoming(spec.uuid);
    await target.driver.abortIncoming(spec.uuid); // idempotent
    expect(isAlive(targetPid)).toBe(false);
    expect(await target.driver.get(spec.uuid)).toBeUndefined();
    expect(readdirSync(join(target.stateDir, 'run'))).toEqual([]);
    expect(readdirSync(join(target.stateDir, 'qemu'))).toEqual([]);
    // and the source can go again
    await expect(source.driver.reboot(spec.uuid)).resolves.toMatchObject({
      runtime: { state: 'running' },
    });
    await source.driver.stop(spec.uuid);
  });

  // a Linux guest under TCG: booting it and a first pass over its memory at the limit take a while
  it(
    'does not converge in pre-copy for a guest dirtying memory faster than the bandwidth limit, and completes in post-copy',
    { timeout: 180_000 },
    async ({ expect }) => {
      const guest = await buildTinyGuest();
      const labels = {
        'qemu-kernel': basename(guest.kernelPath),
        'qemu-initrd': basename(guest.initrdPath),
        'qemu-append': tinyGuestAppend({ dirtyMibPerSecond: 32, workingSetMib: 16 }),
      };
      const spec = definition({ memoryBytes: 128 * MiB, labels });
      const { source, target } = await pair(spec, { bootDir: guest.dir });
      await expect
        .poll(() => serialLog(source, spec.uuid), { timeout: 120_000, interval: 200 })
        .toContain(TINY_GUEST_READY);

      const address = await target.driver.prepareIncoming(spec, {
        migrationId: 'mig',
        transport: 'tunnel',
        allowPostcopy: true,
      });
      await source.driver.startOutgoing(
        spec.uuid,
        outgoing(address, {
          bandwidthLimitBytes: 8 * MiB,
          downtimeLimitMs: 50,
          allowPostcopy: true,
        }),
      );
      // two full pre-copy passes, and the next one finds the working set dirty again
      const precopy = await statsUntil(
        source,
        spec.uuid,
        (s) => s.iteration >= 3 || settled(s),
        120_000,
      );
      expect(precopy.status).toBe('active');
      expect(precopy.remainingBytes).toBeGreaterThan(0);
      expect(precopy.dirtyRateBytes).toBeGreaterThan(0);
      expect(precopy.expectedDowntimeMs).toBeGreaterThan(50);

      await source.driver.switchToPostcopy(spec.uuid);
      await statsUntil(source, spec.uuid, (s) => s.status === 'postcopy-active' || settled(s));
      await expect(source.driver.cancelOutgoing(spec.uuid)).rejects.toMatchObject({
        code: ErrorCode.FailedPrecondition,
        message: expect.stringMatching(/post-copy/),
      });
      expect(['postcopy-active', 'completed']).toContain(
        await target.driver.incomingStatus(spec.uuid),
      );
      await expect(target.driver.commitIncoming(spec.uuid)).resolves.toMatchObject({
        runtime: { state: 'running' },
      });
      await expect(statsUntil(source, spec.uuid, settled)).resolves.toMatchObject({
        status: 'completed',
      });
      await source.driver.finishOutgoing(spec.uuid);

      // the guest goes on ticking on the target
      await ticksBeyond(target, spec.uuid, lastTinyGuestTick(serialLog(target, spec.uuid)));
      await target.driver.stop(spec.uuid);
    },
  );
  it(
    'recovers a post-copy migration whose link broke: both ends pause, keep every page, and finish once the link is back',
    { timeout: 240_000 },
    async ({ expect }) => {
      const guest = await buildTinyGuest();
      // page_poison=1: no page of the guest is zero, so post-copy has ~128 MiB to send over the link
      const labels = {
        'qemu-kernel': basename(guest.kernelPath),
        'qemu-initrd': basename(guest.initrdPath),
        'qemu-append': `${tinyGuestAppend({ dirtyMibPerSecond: 0 })} page_poison=1`,
      };
      const spec = definition({ memoryBytes: 128 * MiB, labels });
      const { source, target } = await pair(spec, { bootDir: guest.dir });
      await expect
        .poll(() => serialLog(source, spec.uuid), { timeout: 120_000, interval: 200 })
        .toContain(TINY_GUEST_READY);
      const sourcePid = pidOf(source, spec.uuid);
      const targetAddress = await target.driver.prepareIncoming(spec, {
        migrationId: 'mig',
        transport: 'tunnel',
        allowPostcopy: true,
      });
      if (targetAddress.kind !== 'unix')
        throw new Error('the tunnel transport listens on a unix socket');
      const link = await Link.open(join(tempDir('dv-link-'), 'link'), targetAddress.path, 16 * MiB);
      try {
        await source.driver.startOutgoing(
          spec.uuid,
          outgoing({ kind: 'unix', path: link.path }, { allowPostcopy: true }),
        );
        await statsUntil(source, spec.uuid, (s) => s.status === 'active' || settled(s));
        await source.driver.switchToPostcopy(spec.uuid);
        const postcopy = await statsUntil(
          source,
          spec.uuid,
          (s) => s.status === 'postcopy-active' || settled(s),
        );
        expect(postcopy.status).toBe('postcopy-active');
        await target.driver.commitIncoming(spec.uuid);

        // the link breaks in the middle of post-copy: both QEMUs pause and neither lets go
        link.cut();
        const paused = await statsUntil(source, spec.uuid, (s) => s.status !== 'postcopy-active');
        expect(paused.status).toBe('postcopy-paused');
        expect(paused.remainingBytes).toBeGreaterThan(0);
        expect(isAlive(sourcePid)).toBe(true);
        await expect(source.driver.cancelOutgoing(spec.uuid)).rejects.toMatchObject({
          code: ErrorCode.FailedPrecondition,
        });

        // the link is back: the target listens again (once it noticed the break), the source resumes
        const deadline = Date.now() + 30_000;
        let resumeAt: MigrationAddress | undefined;
        while (!resumeAt) {
          resumeAt = await target.driver.recoverIncoming(spec.uuid).catch((error: unknown) => {
            const code = (error as { code?: unknown }).code;
            if (code !== ErrorCode.FailedPrecondition || Date.now() > deadline) throw error;
            return undefined;
          });
          if (!resumeAt) await target.driver.migrationEvent(spec.uuid, 500);
        }
        if (resumeAt.kind !== 'unix') throw new Error('a recovery listens on a unix socket');
        link.retarget(resumeAt.path);
        await source.driver.recoverOutgoing(spec.uuid, { kind: 'unix', path: link.path });
        const done = await statsUntil(source, spec.uuid, settled, 120_000);
        expect(done.status).toBe('completed');
        await source.driver.finishOutgoing(spec.uuid);

        // the guest goes on ticking at the target, with every page it had
        const ticked = lastTinyGuestTick(serialLog(target, spec.uuid));
        await expect
          .poll(() => lastTinyGuestTick(serialLog(target, spec.uuid)), {
            timeout: 60_000,
            interval: 200,
          })
          .toBeGreaterThan(ticked + 1);
        await target.driver.stop(spec.uuid);
      } finally {
        link.close();
      }
    },
  );
});
