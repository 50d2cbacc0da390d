import {
  buildTinyGuest,
  killQemus,
  qemuProcessSource,
  RunSampler,
  startCephCluster,
  startCluster,
  tinyGuestAppend,
  writeQemuVm,
  type AgentClient,
  type CephCluster,
  type LiveVmSource,
  type TestAgent,
  type TestCluster,
  type TestVmSpec,
} from '@debvisor/testing';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coordinator, FAST_HA, haEvents, haStatus, protect, type HaEvent } from './ha-cluster';
import { eventually } from './helpers';

const MiB = 1024 ** 2;
const IMAGE = 'ha-qemu-disk0';

/** The tiny guest (kernel + busybox initramfs) on TCG, its disk an RBD image. */
const vm: TestVmSpec = {
  uuid: randomUUID(),
  name: 'ha-qemu',
  vcpus: 1,
  memoryBytes: 128 * MiB,
  disks: [{ pool: 'rbd', image: IMAGE, sizeBytes: 64 * MiB, bus: 'virtio' }],
  nics: [],
  cpuModel: 'x86-64-v2',
  hugepages: false,
  tenant: '',
  labels: {
    'qemu-kernel': 'kernel',
    'qemu-initrd': 'initrd.cpio',
    'qemu-append': tinyGuestAppend({ dirtyMibPerSecond: 0 }),
  },
};

interface Locker {
  name: string;
  cookie: string;
  addr: string;
}

/**
 * HA with the QEMU driver: three agents on a real Ceph cluster (one per file), an HA VM running a
 * real QEMU guest (TCG) from an RBD image. Its node's agent and its QEMU are killed with SIGKILL;
 * after the fence the VM runs on another node as a real QEMU process, exactly once — checked from
 * the QEMU processes themselves (/proc, every 100 ms), from QMP (through the new node's agent)
 * and from the RBD lock owner and blocklist. First with the coordinator killed while it fences
 * (fencing on Ceph takes seconds), then plainly.
 */
describe('HA with the QEMU driver (real QEMU, real Ceph)', { timeout: 240_000 }, () => {
  let ceph: CephCluster;
  let cluster: TestCluster;
  let apiKey: string;
  const clients = new Map<string, AgentClient>();
  let sources: Record<string, LiveVmSource>;
  let sampler: RunSampler | undefined;

  beforeAll(async () => {
    const [tiny, started] = await Promise.all([buildTinyGuest(), startCephCluster()]);
    ceph = started;
    await ceph.exec('rbd', ['create', '--size', '64M', '--', `rbd/${IMAGE}`]);
    cluster = await startCluster({
      clusterId: 'ha-qemu',
      nodes: 3,
      vmsPerNode: 0,
      // Each heartbeat asks Ceph for its health (a CLI call of about a second on this machine).
      leaseTtlSeconds: 15,
      heartbeatIntervalSeconds: 3,
      agentConfig: () => ({
        hypervisor: { driver: 'qemu' },
        qemu: { accel: 'tcg', machine: 'pc', bootDir: tiny.dir },
        storage: { driver: 'rbd' },
        rbd: {
          cluster: ceph.name,
          conf: ceph.confPath,
          keyring: ceph.clientKeyringPath,
          clientId: ceph.clientId,
        },
        ha: FAST_HA,
      }),
      prepareNode: (nodeId, stateDir) => {
        if (nodeId === 'node-1') writeQemuVm(stateDir, vm);
      },
    });
    apiKey = await cluster.createApiKey(['ha:*', 'vm:*', 'node:*', 'storage:*'], {
      principal: 'manager:ha-qemu',
    });
    for (const a of cluster.agents) clients.set(a.nodeId, cluster.connect(apiKey, a));
    sources = Object.fromEntries(
      cluster.agents.map((a) => [a.nodeId, qemuProcessSource(a.stateDir)]),
    );
  }, 180_000);
  afterAll(async () => {
    await sampler?.stop();
    for (const c of clients.values()) c.close();
    await cluster?.stop();
    await ceph?.stop();
  });

  const agent = (nodeId: string): TestAgent => cluster.agents.find((a) => a.nodeId === nodeId)!;

  /** The VM lock on the image's header (`rados lock info`), as the rbd driver takes it. */
  async function vmLock(): Promise<Locker[]> {
    const info = await ceph.json<{ id: string }>('rbd', ['info', `rbd/${IMAGE}`]);
    const lock = await ceph.json<{ lockers: Locker[] }>('rados', [
      ...['-p', 'rbd', 'lock', 'info', `rbd_header.${info.id}`, 'debvisor'],
    ]);
    return lock.lockers;
  }

  /** The clients that have the image open (its QEMU), by address. */
  async function watchers(): Promise<string[]> {
    const status = await ceph.json<{ watchers: { address: string }[] }>('rbd', [
      ...['status', `rbd/${IMAGE}`],
    ]);
    return status.watchers.map((w) => w.address);
  }

  /** The nodes with a QEMU process of the VM, read from /proc. */
  async function qemuNodes(): Promise<string[]> {
    const nodes: string[] = [];
    for (const [nodeId, source] of Object.entries(sources))
      for (const uuid of await source()) if (uuid === vm.uuid) nodes.push(nodeId);
    return nodes;
  }

  function story(events: HaEvent[], nodes: string[]): string {
    const lines = events.map((e) => `${e.at} ${e.kind} ${e.nodeId} ${e.epoch} ${e.message}`);
    const logs = nodes.flatMap((n) =>
      agent(n)
        .process.output()
        .split('\n')
        .filter((l) => /"level":(40|50|60)/.test(l))
        .slice(-8),
    );
    return `${lines.join('\n')}\n${logs.join('\n')}`;
  }

  /** What the VM's old node left, and where the VM is before the fault. */
  interface Before {
    lock: Locker;
    open: string[];
  }

  async function before(): Promise<Before> {
    const [lock] = await vmLock();
    expect(lock?.cookie).toBe(vm.uuid);
    const open = await watchers();
    expect(open.length, "the QEMU's client has the disk open").toBeGreaterThan(0);
    return { lock: lock!, open };
  }

  /**
   * Waits until the VM is recovered and runs as one QEMU process on one of `onto`; then checks
   * QMP, the disk in its command line, the lock and the blocklist.
   */
  async function expectRecovered(from: string, onto: string[], was: Before, after: number) {
    const { value: target } = await eventually(async () => {
      const events = (await haEvents(cluster)).slice(after);
      if (!events.some((e) => e.kind === 'vm-recovered' && e.vmUuid === vm.uuid)) return undefined;
      const nodes = await qemuNodes();
      return nodes.length === 1 && onto.includes(nodes[0]!) ? nodes[0] : undefined;
    }, 120_000).catch(async (error: Error) => {
      throw new Error(`${error.message}\n${story(await haEvents(cluster), onto)}`);
    });
    const events = (await haEvents(cluster)).slice(after);
    const fencedAt = events.findIndex((e) => e.kind === 'fenced' && e.nodeId === from);
    expect(fencedAt, `a "fenced" event for ${from}`).toBeGreaterThanOrEqual(0);
    expect(
      events.findIndex((e) => e.kind === 'vm-recovered' && e.vmUuid === vm.uuid),
    ).toBeGreaterThan(fencedAt);
    // QMP, through the new node's own agent: the guest runs there.
    const running = await clients.get(target)!.vm.getVm({ uuid: vm.uuid });
    expect(running.runtime).toMatchObject({ state: 'running' });
    const pid = Number(await readFile(`${agent(target).stateDir}/run/${vm.uuid}/pid`, 'utf8'));
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    expect(argv.find((arg) => arg.startsWith('file=rbd:'))).toContain(`rbd:rbd/${IMAGE}:`);
    // The disk lock changed hands (the same VM, taken anew); the old QEMU's client is blocklisted,
    // so Ceph refuses its writes. Ceph 16 prints two JSON arrays with --format json: plain listing.
    const lockers = await vmLock();
    expect(lockers.map((l) => l.cookie)).toEqual([vm.uuid]);
    expect(`${lockers[0]!.name}@${lockers[0]!.addr}`).not.toBe(`${was.lock.name}@${was.lock.addr}`);
    const listing = (await ceph.exec('ceph', ['osd', 'blocklist', 'ls'])).stdout.toString();
    const blocklist = listing.split('\n').map((line) => line.trim().split(/\s+/)[0]);
    for (const address of was.open) expect(blocklist).toContain(address);
    expect((await watchers()).filter((address) => was.open.includes(address))).toEqual([]);
    return { target, events };
  }

  /** A killed node comes back: it starts no QEMU of the VM, and its fence (if any) is lifted. */
  async function expectRejoined(nodeId: string) {
    await agent(nodeId).restart();
    await eventually(async () => {
      const status = await haStatus(clients.get(nodeId)!);
      const node = status.nodes.find((n) => n.nodeId === nodeId);
      return node?.alive && (!node.fence || node.fence.state === 'released') ? node : undefined;
    }, 60_000);
    for (let i = 0; i < 5; i++) await sampler!.sample();
    expect(await sources[nodeId]!()).toEqual([]);
  }

  it('kill -9 of a node and its QEMU, and of the coordinator while it fences: the next coordinator fences, the VM runs once elsewhere', async () => {
    const first = clients.get('node-1')!;
    // node-1 holds the VM; the coordinator must be another node (a clean restart hands the lead on:
    // node-1 has no HA VM yet, so nothing is fenced).
    if ((await coordinator(first)) === 'node-1') {
      await agent('node-1').restart();
      await eventually(
        async () => ((await coordinator(first)) !== 'node-1' ? true : undefined),
        30_000,
      );
    }
    await expect(
      first.vm.startVm({ uuid: vm.uuid }, { deadlineMs: 60_000 }),
    ).resolves.toMatchObject({
      runtime: { state: 'running' },
    });
    const leader = await coordinator(first);
    const survivor = cluster.agents.find((a) => a.nodeId !== 'node-1' && a.nodeId !== leader)!;
    await protect(cluster, clients.get(survivor.nodeId)!, [vm.uuid]);
    expect(await qemuNodes()).toEqual(['node-1']);
    const was = await before();
    const after = (await haEvents(cluster)).length;

    sampler = new RunSampler(cluster, apiKey, [vm.uuid], 100, sources);
    sampler.start();
    await agent('node-1').kill();
    killQemus(agent('node-1').stateDir);
    await eventually(async () => ((await qemuNodes()).length === 0 ? true : undefined), 10_000);
    // The coordinator starts fencing node-1 (after the lease, 15 s): kill it there.
    const { value: started } = await eventually(
      async () =>
        (await haEvents(cluster))
          .slice(after)
          .find((e) => e.kind === 'fence-started' && e.nodeId === 'node-1'),
      60_000,
      20,
    );
    await agent(leader).kill();
    expect(started.epoch, 'the fence was started by the coordinator killed').toBeGreaterThan(0);

    const { events } = await expectRecovered('node-1', [survivor.nodeId], was, after);
    const fenced = events.filter((e) => e.kind === 'fenced' && e.nodeId === 'node-1');
    expect(
      fenced.map((e) => e.epoch),
      'only the next coordinator confirmed the fence: the killed one did not finish it',
    ).not.toContain(started.epoch);
    expect(await coordinator(clients.get(survivor.nodeId)!)).toBe(survivor.nodeId);
    expect(Number((await haStatus(clients.get(survivor.nodeId)!)).fencingEpoch)).toBeGreaterThan(
      started.epoch,
    );

    await expectRejoined(leader);
    await expectRejoined('node-1');
    expect(await qemuNodes()).toEqual([survivor.nodeId]);
    expect(sampler.samples.filter((s) => s.silent.length > 0)).toEqual([]);
    expect(sampler.doubleRuns).toEqual([]);
  });

  it('kill -9 of the node and its QEMU: fenced, then the VM runs once on another node, as a QEMU process holding the disk lock', async () => {
    const [from] = await qemuNodes();
    expect(from, 'the VM runs on one node').toBeDefined();
    const others = cluster.agents.map((a) => a.nodeId).filter((n) => n !== from);
    const was = await before();
    const after = (await haEvents(cluster)).length;
    await agent(from!).kill();
    killQemus(agent(from!).stateDir);
    const { target } = await expectRecovered(from!, others, was, after);
    const status = await haStatus(clients.get(target)!);
    expect(status.nodes.find((n) => n.nodeId === from)?.fence?.state).toBe('fenced');
    expect(status.resources.find((r) => r.vmUuid === vm.uuid)).toMatchObject({
      state: 'protected',
      nodeId: target,
    });
    await expectRejoined(from!);
    expect(await qemuNodes()).toEqual([target]);
    await sampler!.stop();
    expect(sampler!.samples.filter((s) => s.silent.length > 0)).toEqual([]);
    expect(sampler!.doubleRuns).toEqual([]);
  });
});
