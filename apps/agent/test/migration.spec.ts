import type {
  MigrationProgress__Output,
  PrepareMigrationResponse__Output,
  TunnelFrame__Output,
  Vm__Output,
} from '@debvisor/proto';
import {
  agentClient,
  issueAgentCertificate,
  startCluster,
  type AgentClient,
  type TestCluster,
} from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

const PERMISSIONS = ['vm:*', 'migration:*', 'node:*', 'storage:*'];
/** West's own dns-01, whose disk rbd/dns-01-disk0 has the name of east's dns-01 disk (the demo's bug). */
const WEST_DNS = '7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6';

/** Gives west's node-1 a stopped VM dns-01 with disk rbd/dns-01-disk0 before it starts. */
function writeWestDns(stateDir: string): void {
  const GiB = 2 ** 30;
  const spec = {
    uuid: WEST_DNS,
    name: 'dns-01',
    vcpus: 1,
    memoryBytes: GiB,
    disks: [{ pool: 'rbd', image: 'dns-01-disk0', sizeBytes: 10 * GiB, bus: 'virtio' }],
    nics: [],
    cpuModel: 'x86-64-v2',
    hugepages: false,
    tenant: '',
    labels: {},
  };
  mkdirSync(join(stateDir, 'sim'), { recursive: true });
  writeFileSync(
    join(stateDir, 'sim', 'vms.json'),
    JSON.stringify({
      version: 1,
      vms: [
        {
          spec,
          state: 'stopped',
          stateChangedAt: '2026-01-01T00:00:00.000Z',
          bootedAt: null,
          transition: null,
        },
      ],
    }),
  );
}

interface MigrateOptions {
  transport?: 'direct' | 'tunnel';
  bandwidthLimitBytes?: number;
  online?: boolean;
  onProgress?: (progress: MigrationProgress__Output) => void;
}

describe('live migration between agents (real etcd, real agents, sim hypervisor)', () => {
  let east: TestCluster;
  let west: TestCluster;
  let viaEast: AgentClient[];
  let viaWest: AgentClient;

  beforeAll(async () => {
    // A short cookie TTL, so that the expiry test need not wait a minute.
    const agentConfig = () => ({ migration: { cookieTtlSeconds: 3, progressIntervalMs: 50 } });
    [east, west] = await Promise.all([
      startCluster({
        clusterId: 'mig-east',
        nodes: 3,
        vmsPerNode: 10,
        timeScale: 0.02,
        agentConfig,
      }),
      startCluster({
        clusterId: 'mig-west',
        nodes: 1,
        vmsPerNode: 0,
        timeScale: 0.02,
        agentConfig,
        prepareNode: (_, stateDir) => writeWestDns(stateDir),
      }),
    ]);
    await west.createSimImage({ pool: 'rbd', image: 'dns-01-disk0', sizeBytes: 10 * 2 ** 30 });
    // The pools of both clusters paired for RBD mirroring, as an operator (or the manager) does.
    await east.pairMirroring(west);
    const eastKey = await east.createApiKey(PERMISSIONS, { principal: 'manager:east' });
    viaEast = east.agents.map((agent) => east.connect(eastKey, agent));
    viaWest = west.connect(await west.createApiKey(PERMISSIONS, { principal: 'manager:west' }));
  });
  afterAll(async () => {
    for (const client of [...(viaEast ?? []), viaWest]) client?.close();
    await Promise.all([east?.stop(), west?.stop()]);
  });

  /** A VM of `nodeId` in `state` that no test has used yet. */
  const used = new Set<string>();
  async function pick(nodeId: string, state = 'running'): Promise<Vm__Output> {
    const vms = (await viaEast[0].vm.listVms({ nodeId })).vms;
    const vm =
      vms.find(
        (candidate) => candidate.runtime!.state === state && !used.has(candidate.spec!.uuid),
      ) ??
      vms.find(
        (candidate) => candidate.runtime!.state === 'stopped' && !used.has(candidate.spec!.uuid),
      );
    if (!vm) throw new Error(`no unused VM on ${nodeId}`);
    used.add(vm.spec!.uuid);
    if (vm.runtime!.state === state) return vm;
    return state === 'running'
      ? viaEast[0].vm.startVm({ uuid: vm.spec!.uuid })
      : viaEast[0].vm.stopVm({ uuid: vm.spec!.uuid });
  }

  async function prepareTarget(
    vm: Vm__Output,
    target: { client: AgentClient; nodeId: string; crossCluster: boolean },
    options: MigrateOptions = {},
  ) {
    const migrationId = randomUUID();
    const source = await viaEast[0].migration.prepareMigration({
      vm: vm.spec!,
      role: 'source',
      online: options.online ?? true,
      checkOnly: true,
    });
    expect(source.ok).toBe(true);
    const prepared = await target.client.migration.prepareMigration({
      vm: vm.spec!,
      role: 'target',
      targetNodeId: target.nodeId,
      migrationId,
      transport: options.transport ?? 'tunnel',
      online: options.online ?? true,
      sourceNodeId: vm.runtime!.nodeId,
      sourceCaPem: target.crossCluster ? east.caPem : '',
      sourceCpuModel: source.cpuModel,
      sourceCpuFlags: source.cpuFlags,
      sourceDisks: source.disks,
    });
    return { migrationId, prepared };
  }

  function migrate(
    vm: Vm__Output,
    migrationId: string,
    prepared: PrepareMigrationResponse__Output,
    crossCluster: boolean,
    options: MigrateOptions = {},
    cookie = prepared.cookie,
  ) {
    return viaEast[0].migrateVm(
      {
        uuid: vm.spec!.uuid,
        migrationId,
        targetEndpoint: prepared.endpoint,
        targetDataEndpoint: prepared.dataEndpoint,
        cookie,
        transport: options.transport ?? 'tunnel',
        mode: 'precopy',
        downtimeLimitMs: 300,
        bandwidthLimitBytes: options.bandwidthLimitBytes ?? 0,
        completionTimeoutSecondsPerGib: 0,
        targetCaPem: crossCluster ? prepared.caPem : '',
        targetNodeId: prepared.nodeId,
        offline: options.online === false,
      },
      options.onProgress,
    );
  }

  const final = (progress: MigrationProgress__Output[]) => progress[progress.length - 1];

  it('moves a running VM to another node of its cluster through the tunnel, asked through a third node', async () => {
    const vm = await pick('node-1');
    const { migrationId, prepared } = await prepareTarget(vm, {
      client: viaEast[2],
      nodeId: 'node-2',
      crossCluster: false,
    });
    expect(prepared).toMatchObject({
      ok: true,
      nodeId: 'node-2',
      cookie: expect.stringMatching(/^dvmc_/),
      endpoint: east.agents[1].endpoint,
    });
    expect(Date.parse(prepared.cookieExpiresAt) - Date.now()).toBeLessThanOrEqual(3_000);

    const progress = await migrate(vm, migrationId, prepared, false);
    expect(final(progress)).toMatchObject({
      phase: 'completed',
      message: 'the VM runs on node node-2',
    });
    expect(progress.some((p) => p.phase === 'precopy' && Number(p.transferredBytes) > 0)).toBe(
      true,
    );
    const moved = await viaEast[0].vm.getVm({ uuid: vm.spec!.uuid });
    expect(moved.runtime).toMatchObject({ nodeId: 'node-2', state: 'running', lockedBy: '' });
    expect(
      (await viaEast[0].vm.listVms({ nodeId: 'node-1' })).vms.map((v) => v.spec!.uuid),
    ).not.toContain(vm.spec!.uuid);
  });

  it('moves a running VM over the direct transport (QEMU-native TLS with a key derived from the cookie)', async () => {
    const vm = await pick('node-1');
    const { migrationId, prepared } = await prepareTarget(
      vm,
      { client: viaEast[0], nodeId: 'node-3', crossCluster: false },
      { transport: 'direct' },
    );
    expect(prepared.dataEndpoint).toMatch(/^tcp:127\.0\.0\.1:\d+$/);
    const progress = await migrate(vm, migrationId, prepared, false, { transport: 'direct' });
    expect(final(progress).phase).toBe('completed');
    expect((await viaEast[0].vm.getVm({ uuid: vm.spec!.uuid })).runtime).toMatchObject({
      nodeId: 'node-3',
      state: 'running',
    });
  });

  it('moves a stopped VM offline: only its definition travels', async () => {
    const vm = await pick('node-2', 'stopped');
    const { migrationId, prepared } = await prepareTarget(
      vm,
      { client: viaEast[0], nodeId: 'node-3', crossCluster: false },
      { online: false },
    );
    const progress = await migrate(vm, migrationId, prepared, false, { online: false });
    expect(final(progress)).toMatchObject({ phase: 'completed' });
    expect((await viaEast[0].vm.getVm({ uuid: vm.spec!.uuid })).runtime).toMatchObject({
      nodeId: 'node-3',
      state: 'stopped',
    });
  });

  it('prepares a migration again after its reservation was released (a manager resuming a move), but not while it holds', async () => {
    const vm = await pick('node-2', 'stopped');
    const target = { client: viaEast[0], nodeId: 'node-3', crossCluster: false };
    const { migrationId, prepared } = await prepareTarget(vm, target, { online: false });
    expect(prepared.ok).toBe(true);
    const again = () =>
      viaEast[0].migration.prepareMigration({
        vm: vm.spec!,
        role: 'target',
        targetNodeId: 'node-3',
        migrationId,
        transport: 'tunnel',
        online: false,
        sourceNodeId: vm.runtime!.nodeId,
      });
    // While the reservation holds, pre-flight refuses the VM (another migration of it is under way).
    const refused = await again();
    expect(refused.ok).toBe(false);
    expect(
      refused.checks.find((check: { name: string }) => check.name === 'vm-lock'),
    ).toMatchObject({
      result: 'fail',
      reason: expect.stringMatching(/another migration of VM .* is under way/),
    });
    expect(
      await viaEast[0].migration.cancelMigration({
        migrationId,
        vmUuid: vm.spec!.uuid,
        nodeId: 'node-3',
      }),
    ).toEqual({ cancelled: true });
    const second = await again();
    expect(second.ok).toBe(true);
    const progress = await migrate(vm, migrationId, second, false, { online: false });
    expect(final(progress)).toMatchObject({ phase: 'completed' });
  });

  it('moves a VM to another cluster through the tunnel, each end pinning the other’s CA', async () => {
    const vm = await pick('node-3');
    const target = { client: viaWest, nodeId: 'node-1', crossCluster: true };
    // Without the image mirrored into the target cluster, pre-flight says what to do.
    const { prepared: refused } = await prepareTarget(vm, target);
    expect(refused.ok).toBe(false);
    expect(refused.cookie).toBe('');
    expect(refused.checks.find((c: { result: string }) => c.result === 'fail')?.reason).toMatch(
      /enable RBD mirroring/,
    );

    for (const disk of vm.spec!.disks) await east.mirrorImage(west, disk);
    const { migrationId, prepared } = await prepareTarget(vm, target);
    expect(prepared.ok, JSON.stringify(prepared.checks)).toBe(true);
    const storage = prepared.checks.filter((c: { name: string }) => c.name.startsWith('storage:'));
    expect(storage.length).toBe(vm.spec!.disks.length);
    for (const check of storage)
      expect(check.reason).toMatch(
        /at the target is the mirror of the source's disk: global id [0-9a-f-]{36}, up\+replaying/,
      );
    expect(prepared.caPem).toBe(west.caPem);
    const progress = await migrate(vm, migrationId, prepared, true);
    expect(final(progress)).toMatchObject({ phase: 'completed' });
    expect((await viaWest.vm.getVm({ uuid: vm.spec!.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
    });
    expect((await rpcError(viaEast[0].vm.getVm({ uuid: vm.spec!.uuid }))).code).toBe(
      status.NOT_FOUND,
    );
    // The disks changed sides with the VM: demoted at east, promoted at west, held by the VM there.
    for (const { pool, image } of vm.spec!.disks) {
      const [there, here] = await Promise.all([
        viaWest.storage.getMirrorStatus({ pool, image }),
        viaEast[0].storage.getMirrorStatus({ pool, image }),
      ]);
      expect(there).toMatchObject({ primary: true, globalId: here.globalId });
      expect(here.primary).toBe(false);
      expect(here.lastSnapshotAt).not.toBe('');
    }
  });

  describe('a disk is never attached to two VMs (east and west both have a dns-01 with disk rbd/dns-01-disk0)', () => {
    async function eastDns(): Promise<Vm__Output> {
      const vm = (await viaEast[0].vm.listVms({})).vms.find(
        (candidate) => candidate.spec!.name === 'dns-01',
      );
      if (!vm) throw new Error('the east cluster seeded no dns-01');
      used.add(vm.spec!.uuid);
      return vm.runtime!.state === 'running' ? vm : viaEast[0].vm.startVm({ uuid: vm.spec!.uuid });
    }
    const failures = (prepared: PrepareMigrationResponse__Output) =>
      Object.fromEntries(
        prepared.checks.filter((c) => c.result === 'fail').map((c) => [c.name, c.reason]),
      );

    it('refuses the move: west’s image of that name is not the mirror of east’s disk, another VM uses it, and the name is taken', async () => {
      const vm = await eastDns();
      const { prepared } = await prepareTarget(vm, {
        client: viaWest,
        nodeId: 'node-1',
        crossCluster: true,
      });
      expect(prepared.ok).toBe(false);
      expect(prepared.cookie).toBe('');
      const failed = failures(prepared);
      expect(failed['vm-name']).toMatch(new RegExp(`another VM named dns-01 \\(${WEST_DNS}\\)`));
      expect(failed['storage:rbd/dns-01-disk0']).toMatch(
        new RegExp(
          `rbd/dns-01-disk0 at the target is a disk of VM dns-01 \\(${WEST_DNS}\\) there; a disk is never attached to two VMs`,
        ),
      );
    });

    it('still refuses once east mirrors its disk: the replayer will not overwrite west’s image, and pre-flight sees another image', async () => {
      const vm = await eastDns();
      const ref = { pool: 'rbd', image: 'dns-01-disk0' };
      const enabled = await viaEast[0].storage.enableMirroring({ ...ref, mode: 'snapshot' });
      const clash = await eventually(async () => {
        const status = await viaEast[0].storage.getMirrorStatus(ref);
        return status.peerState === 'up+error' ? status : undefined;
      }, 10_000);
      expect(clash.value.peerDescription).toMatch(
        /has another image named dns-01-disk0 \(not this image's mirror\)/,
      );
      const atWest = await viaWest.storage.getMirrorStatus(ref);
      expect(atWest).toMatchObject({ enabled: false });
      expect(atWest.globalId).not.toBe(enabled.globalId);

      const source = await viaEast[0].migration.prepareMigration({
        vm: vm.spec!,
        role: 'source',
        online: true,
        checkOnly: true,
      });
      expect(source.disks).toEqual([
        {
          ...ref,
          globalId: enabled.globalId,
          primary: true,
          lastSnapshotAt: enabled.lastSnapshotAt,
        },
      ]);
      // West's dns-01 renamed away would still leave its disk: the storage check alone refuses.
      const { prepared } = await prepareTarget(
        { ...vm, spec: { ...vm.spec!, name: 'dns-01-east' } },
        { client: viaWest, nodeId: 'node-1', crossCluster: true },
      );
      const failed = failures(prepared);
      expect(Object.keys(failed)).toEqual(['storage:rbd/dns-01-disk0']);
    });

    it('refuses when the source disk is not mirrored even though the target has a mirror-less image of that name', async () => {
      const vm = await pick('node-2');
      for (const disk of vm.spec!.disks)
        await west.createSimImage({
          pool: disk.pool,
          image: disk.image,
          sizeBytes: Number(disk.sizeBytes),
        });
      const { prepared } = await prepareTarget(vm, {
        client: viaWest,
        nodeId: 'node-1',
        crossCluster: true,
      });
      const failed = failures(prepared);
      const disk = vm.spec!.disks[0];
      expect(failed[`storage:${disk.pool}/${disk.image}`]).toMatch(
        /is not mirrored; pair the pools and enable mirroring/,
      );
    });
  });

  it('cancels a migration under way: the VM keeps running at the source and nothing is left at the target', async () => {
    const vm = await pick('node-1');
    const { migrationId, prepared } = await prepareTarget(vm, {
      client: viaEast[0],
      nodeId: 'node-2',
      crossCluster: false,
    });
    let cancelled: Promise<unknown> | undefined;
    const progress = await migrate(vm, migrationId, prepared, false, {
      bandwidthLimitBytes: 20_000_000,
      onProgress: (p) => {
        if (p.phase === 'precopy' && !cancelled)
          cancelled = viaEast[1].migration.cancelMigration({ migrationId, vmUuid: vm.spec!.uuid });
      },
    });
    expect(await cancelled).toEqual({ cancelled: true });
    expect(final(progress), JSON.stringify(final(progress))).toMatchObject({
      phase: 'cancelled',
      message: expect.stringMatching(/keeps running on node node-1/),
    });
    expect((await viaEast[0].vm.getVm({ uuid: vm.spec!.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
      lockedBy: '',
    });
    const atTarget = await eventually(async () => {
      const answer = await viaEast[0].migration.getMigration({
        migrationId,
        vmUuid: vm.spec!.uuid,
        nodeId: 'node-2',
      });
      return answer.phase === 'cancelled' ? answer : undefined;
    }, 5_000);
    expect(atTarget.value.phase).toBe('cancelled');
    expect(
      (await viaEast[0].vm.listVms({ nodeId: 'node-2' })).vms.map((v) => v.spec!.uuid),
    ).not.toContain(vm.spec!.uuid);
  });

  it('refuses a second migration of a VM that is being migrated', async () => {
    const vm = await pick('node-1');
    const { migrationId, prepared } = await prepareTarget(vm, {
      client: viaEast[0],
      nodeId: 'node-3',
      crossCluster: false,
    });
    let second: Promise<PrepareMigrationResponse__Output> | undefined;
    const progress = await migrate(vm, migrationId, prepared, false, {
      bandwidthLimitBytes: 20_000_000,
      onProgress: (p) => {
        if (p.phase !== 'precopy' || second) return;
        second = viaEast[0].migration.prepareMigration({
          vm: vm.spec!,
          role: 'source',
          online: true,
          checkOnly: true,
        });
        // Then end the first one: the test is about the refusal, not about waiting for it.
        void second.finally(() =>
          viaEast[0].migration.cancelMigration({ migrationId, vmUuid: vm.spec!.uuid }),
        );
      },
    });
    const answer = await second!;
    expect(answer.ok).toBe(false);
    expect(
      answer.checks
        .filter((c: { result: string }) => c.result === 'fail')
        .map((c: { name: string }) => c.name),
    ).toEqual(expect.arrayContaining(['vm-migration']));
    expect(final(progress).phase).toBe('cancelled');
  });

  describe('the one-time cookie', () => {
    let peer: AgentClient;
    beforeAll(async () => {
      // A client that holds an agent certificate of the east cluster, as a source agent does.
      const cert = await issueAgentCertificate(east.ca, 'node-9');
      peer = agentClient(east.agents[1].endpoint, {
        caPem: east.caPem,
        certPem: cert.certPem,
        keyPem: cert.keyPem,
      });
    });
    afterAll(() => peer?.close());

    /** Opens a tunnel with `opening`; answers the first control word or the error. */
    function openTunnel(opening: {
      cookie: string;
      vmUuid: string;
      migrationId: string;
    }): Promise<{ control?: string; code?: number; details?: string }> {
      const stream = peer.tunnel();
      return new Promise((resolve) => {
        stream.on('data', (frame: TunnelFrame__Output) => {
          if (frame.control) {
            resolve({ control: frame.control });
            stream.cancel();
          }
        });
        stream.on('error', (error: { code: number; details: string }) =>
          resolve({ code: error.code, details: error.details }),
        );
        stream.write({ ...opening, controlOnly: true });
      });
    }

    it('is accepted once, then refused as used', async () => {
      const vm = await pick('node-1');
      const { migrationId, prepared } = await prepareTarget(vm, {
        client: viaEast[0],
        nodeId: 'node-2',
        crossCluster: false,
      });
      const opening = { cookie: prepared.cookie, vmUuid: vm.spec!.uuid, migrationId };
      expect(await openTunnel(opening)).toEqual({ control: 'ready' });
      expect(await openTunnel(opening)).toMatchObject({
        code: status.PERMISSION_DENIED,
        details: expect.stringMatching(/already used/),
      });
    });

    it('is refused for another VM than the one it was issued for', async () => {
      const vm = await pick('node-1');
      const other = await pick('node-1');
      const { migrationId, prepared } = await prepareTarget(vm, {
        client: viaEast[0],
        nodeId: 'node-2',
        crossCluster: false,
      });
      expect(
        await openTunnel({ cookie: prepared.cookie, vmUuid: other.spec!.uuid, migrationId }),
      ).toMatchObject({
        code: status.PERMISSION_DENIED,
        details: expect.stringMatching(/for another VM/),
      });
    });

    it('is refused once expired, and the reservation is released', async () => {
      const vm = await pick('node-3');
      const { migrationId, prepared } = await prepareTarget(vm, {
        client: viaEast[0],
        nodeId: 'node-2',
        crossCluster: false,
      });
      await new Promise((r) => setTimeout(r, 3_200));
      expect(
        await openTunnel({ cookie: prepared.cookie, vmUuid: vm.spec!.uuid, migrationId }),
      ).toMatchObject({
        code: status.PERMISSION_DENIED,
        details: expect.stringMatching(/expired at/),
      });
      const progress = await migrate(vm, migrationId, prepared, false);
      expect(final(progress)).toMatchObject({
        phase: 'failed',
        message: expect.stringMatching(/keeps running on node node-3/),
      });
      expect((await viaEast[0].vm.getVm({ uuid: vm.spec!.uuid })).runtime).toMatchObject({
        nodeId: 'node-3',
        state: 'running',
      });
    });

    it('is refused when it was never issued, and garbage is refused before any lookup', async () => {
      const vm = await pick('node-1');
      expect(
        await openTunnel({
          cookie: 'dvmc_' + 'x'.repeat(43),
          vmUuid: vm.spec!.uuid,
          migrationId: randomUUID(),
        }),
      ).toMatchObject({ code: status.UNAUTHENTICATED });
      expect(
        await openTunnel({ cookie: 'dvmc_x', vmUuid: 'not-a-uuid', migrationId: randomUUID() }),
      ).toMatchObject({ code: status.INVALID_ARGUMENT });
    });

    it('is refused from a certificate of another cluster than the one pinned', async () => {
      const vm = await pick('node-2');
      for (const disk of vm.spec!.disks) await east.mirrorImage(west, disk);
      const { migrationId, prepared } = await prepareTarget(vm, {
        client: viaWest,
        nodeId: 'node-1',
        crossCluster: true,
      });
      // West's own agent certificate: trusted by west's TLS, but not the pinned (east) CA.
      const cert = await issueAgentCertificate(west.ca, 'node-8');
      const impostor = agentClient(west.agents[0].endpoint, {
        caPem: west.caPem,
        certPem: cert.certPem,
        keyPem: cert.keyPem,
      });
      try {
        const stream = impostor.tunnel();
        const answer = await new Promise<{ code: number; details: string }>((resolve) => {
          stream.on('error', resolve);
          stream.on('data', () => undefined);
          stream.write({
            cookie: prepared.cookie,
            vmUuid: vm.spec!.uuid,
            migrationId,
            controlOnly: true,
          });
        });
        expect(answer).toMatchObject({
          code: status.PERMISSION_DENIED,
          details: expect.stringMatching(/source cluster pinned/),
        });
      } finally {
        impostor.close();
      }
    });
  });

  it('refuses malformed migration requests with the field named', async () => {
    const vm = await pick('node-2');
    const answer = await rpcError(
      viaEast[0].migrateVm({
        uuid: vm.spec!.uuid,
        migrationId: randomUUID(),
        targetEndpoint: '127.0.0.1:1',
        cookie: 'guess',
        transport: 'tunnel',
        targetNodeId: 'node-2',
      }),
    );
    expect(answer.code).toBe(status.INVALID_ARGUMENT);
    expect(answer.details).toMatch(/cookie: a migration cookie is dvmc_/);
    const noId = await rpcError(
      viaEast[0].migration.prepareMigration({
        vm: vm.spec!,
        role: 'target',
        targetNodeId: 'node-1',
        online: true,
      }),
    );
    expect(noId.details).toMatch(/migration_id: a target reservation needs a migration id/);
    const readOnly = east.connect(await east.createApiKey(['vm:instance:read']));
    try {
      expect(
        (
          await rpcError(
            readOnly.migration.prepareMigration({ vm: vm.spec!, role: 'source', checkOnly: true }),
          )
        ).code,
      ).toBe(status.PERMISSION_DENIED);
    } finally {
      readOnly.close();
    }
  });

  it('leaves the VM running at the source when the target agent dies mid-migration, and the target forgets it on restart', async () => {
    const vm = await pick('node-1');
    const { migrationId, prepared } = await prepareTarget(vm, {
      client: viaEast[0],
      nodeId: 'node-3',
      crossCluster: false,
    });
    let killed: Promise<void> | undefined;
    const progress = await migrate(vm, migrationId, prepared, false, {
      bandwidthLimitBytes: 20_000_000,
      onProgress: (p) => {
        if (p.phase === 'precopy' && !killed) killed = east.agents[2].kill();
      },
    });
    await killed;
    expect(final(progress)).toMatchObject({
      phase: 'failed',
      message: expect.stringMatching(/keeps running on node node-1/),
    });
    expect((await viaEast[0].vm.getVm({ uuid: vm.spec!.uuid })).runtime).toMatchObject({
      nodeId: 'node-1',
      state: 'running',
      lockedBy: '',
    });
    await east.agents[2].restart();
    expect(
      (await viaEast[0].vm.listVms({ nodeId: 'node-3' })).vms.map((v) => v.spec!.uuid),
    ).not.toContain(vm.spec!.uuid);
  });
});
