import {
  RunSampler,
  startCephCluster,
  startCluster,
  type AgentClient,
  type CephCluster,
  type TestAgent,
  type TestCluster,
} from '@debvisor/testing';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coordinator, FAST_HA, haEvents, haStatus, protect, runningOn } from './ha-cluster';
import { eventually } from './helpers';

interface LockInfo {
  lockers: { name: string; cookie: string; addr: string }[];
}

/**
 * Fencing on a real Ceph cluster (one per file): agents with the sim hypervisor and the rbd
 * storage driver. Each protected VM's disk gets a real librbd writer on the victim (`rbd bench`,
 * standing in for the VM's QEMU, which outlives its agent as under libvirt): after the fence, Ceph
 * refuses its writes, the VM runs exactly once elsewhere, and its disk lock changed hands.
 */
describe(
  'HA fencing on a real Ceph cluster (sim hypervisor, rbd storage)',
  { timeout: 180_000 },
  () => {
    let ceph: CephCluster;
    let cluster: TestCluster;
    let apiKey: string;
    let client: AgentClient;
    const writers: ChildProcess[] = [];

    beforeAll(async () => {
      ceph = await startCephCluster();
      cluster = await startCluster({
        clusterId: 'ha-ceph',
        nodes: 3,
        vmsPerNode: 2,
        // Each heartbeat asks Ceph for its health (a CLI call of about a second on this machine).
        leaseTtlSeconds: 15,
        heartbeatIntervalSeconds: 3,
        agentConfig: () => ({
          storage: { driver: 'rbd' },
          rbd: {
            cluster: ceph.name,
            conf: ceph.confPath,
            keyring: ceph.clientKeyringPath,
            clientId: ceph.clientId,
          },
          ha: FAST_HA,
        }),
      });
      apiKey = await cluster.createApiKey(['ha:*', 'vm:*', 'node:*', 'storage:*'], {
        principal: 'manager:ha-ceph',
      });
    }, 180_000);
    afterAll(async () => {
      for (const writer of writers) writer.kill('SIGKILL');
      client?.close();
      await cluster?.stop();
      await ceph?.stop();
    });

    /** The VM lock on an image's header (`rados lock info`), as the rbd driver takes it. */
    async function vmLock(pool: string, image: string): Promise<LockInfo['lockers']> {
      const info = await ceph.json<{ id: string }>('rbd', ['info', `${pool}/${image}`]);
      const lock = await ceph.json<LockInfo>('rados', [
        '-p',
        pool,
        'lock',
        'info',
        `rbd_header.${info.id}`,
        'debvisor',
      ]);
      return lock.lockers;
    }

    async function watchers(pool: string, image: string): Promise<string[]> {
      const status = await ceph.json<{ watchers: { address: string }[] }>('rbd', [
        'status',
        `${pool}/${image}`,
      ]);
      return status.watchers.map((w) => w.address);
    }

    it('kill -9 of a node whose VMs still write: Ceph refuses their writes, each VM runs once elsewhere with its disk lock', async () => {
      const leader = await coordinator(cluster.connect(apiKey));
      const victim: TestAgent = cluster.agents.find((a) => a.nodeId !== leader)!;
      client = cluster.connect(
        apiKey,
        cluster.agents.find((a) => a.nodeId === leader)!,
      );
      const uuids = await runningOn(cluster, apiKey, victim);
      expect(uuids.length).toBeGreaterThan(0);
      await protect(cluster, client, uuids).catch(async (error: Error) => {
        const status = await haStatus(client).catch(() => undefined);
        const logs = cluster.agents.map((a) =>
          a.process
            .output()
            .split('\n')
            .filter((l) => /"level":(40|50|60)/.test(l))
            .slice(-8)
            .join('\n'),
        );
        throw new Error(
          `${error.message}\nstatus: ${JSON.stringify(status?.resources)}\n${logs.join('\n')}`,
        );
      });

      // A real librbd writer per VM disk on the victim, as its QEMU would be.
      const disks = new Map<string, { pool: string; image: string }>();
      for (const uuid of uuids) {
        const vm = await client.vm.getVm({ uuid });
        const disk = vm.spec!.disks[0]!;
        disks.set(uuid, { pool: disk.pool, image: disk.image });
      }
      const exits = new Map<string, Promise<number | null>>();
      for (const [uuid, { pool, image }] of disks) {
        const writer = spawn(
          'rbd',
          [
            ...ceph.cephArgs('client'),
            'bench',
            '--io-type',
            'write',
            '--io-size',
            '4096',
            '--io-threads',
            '1',
            '--io-total',
            '100G',
            '--io-pattern',
            'rand',
            `${pool}/${image}`,
          ],
          { stdio: 'ignore' },
        );
        writers.push(writer);
        exits.set(uuid, new Promise((resolve) => writer.once('exit', (code) => resolve(code))));
      }
      const before = new Map<string, { watchers: string[]; lockers: string[] }>();
      for (const [uuid, { pool, image }] of disks) {
        const { value } = await eventually(async () => {
          const open = await watchers(pool, image);
          return open.length > 0 ? open : undefined;
        }, 20_000);
        before.set(uuid, {
          watchers: value,
          lockers: (await vmLock(pool, image)).map((l) => `${l.name}@${l.addr}`),
        });
        expect((await vmLock(pool, image)).map((l) => l.cookie)).toEqual([uuid]);
      }

      const sampler = new RunSampler(cluster, apiKey, uuids, 100);
      sampler.start();
      try {
        await victim.kill();
        await eventually(async () => {
          const recovered = new Set(
            (await haEvents(cluster)).filter((e) => e.kind === 'vm-recovered').map((e) => e.vmUuid),
          );
          if (!uuids.every((u) => recovered.has(u))) return undefined;
          const sample = await sampler.sample();
          return uuids.every((u) => {
            const nodes = sample.where.get(u) ?? [];
            return nodes.length === 1 && nodes[0] !== victim.nodeId;
          })
            ? true
            : undefined;
        }, 90_000).catch(async (error: Error) => {
          const events = (await haEvents(cluster)).map(
            (e) => `${e.at} ${e.kind} ${e.nodeId} ${e.vmUuid ?? ''} ${e.message}`,
          );
          const logs = cluster.agents.map((a) =>
            a.process
              .output()
              .split('\n')
              .filter((l) => /"level":(40|50|60)/.test(l))
              .slice(-6)
              .join('\n'),
          );
          throw new Error(`${error.message}\n${events.join('\n')}\n${logs.join('\n')}`);
        });

        // The fenced node's writes are refused by Ceph: every writer died blocklisted (ESHUTDOWN).
        for (const [uuid, exit] of exits) expect(await exit, `writer of ${uuid}`).toBe(108);
        // Ceph 16 prints two JSON arrays with --format json: read the plain listing.
        const listing = (await ceph.exec('ceph', ['osd', 'blocklist', 'ls'])).stdout.toString();
        const blocklist = listing.split('\n').map((line) => line.trim().split(/\s+/)[0]);
        for (const { watchers: open } of before.values())
          for (const address of open) expect(blocklist).toContain(address);

        // Each disk is locked again, by the same VM, through a client that is not the fenced one.
        for (const [uuid, { pool, image }] of disks) {
          const lockers = await vmLock(pool, image);
          expect(lockers.map((l) => l.cookie)).toEqual([uuid]);
          expect(before.get(uuid)!.lockers).not.toContain(
            `${lockers[0]!.name}@${lockers[0]!.addr}`,
          );
        }
        const status = await haStatus(client);
        const fence = status.nodes.find((n) => n.nodeId === victim.nodeId)!.fence!;
        expect(fence.state).toBe('fenced');
        expect(fence.locksBroken.length).toBeGreaterThanOrEqual(uuids.length);
        const events = await haEvents(cluster);
        const fencedAt = events.findIndex((e) => e.kind === 'fenced' && e.nodeId === victim.nodeId);
        expect(fencedAt).toBeGreaterThanOrEqual(0);
        for (const uuid of uuids)
          expect(
            events.findIndex((e) => e.kind === 'vm-recovered' && e.vmUuid === uuid),
          ).toBeGreaterThan(fencedAt);

        // The node comes back: it runs none of its old VMs, and its fence is lifted.
        await victim.restart();
        await eventually(async () => {
          const node = (await haStatus(client)).nodes.find((n) => n.nodeId === victim.nodeId);
          return node?.alive && node.fence?.state === 'released' ? node : undefined;
        }, 30_000);
        for (let i = 0; i < 5; i++) await sampler.sample();
      } finally {
        await sampler.stop();
      }
      expect(sampler.doubleRuns).toEqual([]);
    });
  },
);
