import { parseAgentApiKey } from '@debvisor/common';
import type { PrepareMigrationResponse__Output, Vm__Output } from '@debvisor/proto';
import {
  agentClient,
  issueAgentCertificate,
  startCluster,
  type AgentClient,
  type TestCluster,
} from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

const PERMISSIONS = ['vm:*', 'migration:*', 'node:*', 'storage:*'];
const FAKE_COOKIE = `dvmc_${'A'.repeat(43)}`;

describe('trust between agents: deny list, migration targets and sources (real agents)', () => {
  let east: TestCluster;
  /** A cluster nobody configured as a peer: its CA is not trusted by east, nor east's by it. */
  let rogue: TestCluster;
  let viaEast: AgentClient;
  let viaRogue: AgentClient;
  let eastKey: string;

  beforeAll(async () => {
    [east, rogue] = await Promise.all([
      startCluster({ clusterId: 'trust-east', nodes: 2, vmsPerNode: 8 }),
      startCluster({ clusterId: 'trust-rogue', nodes: 1, vmsPerNode: 0, trustRunningPeers: false }),
    ]);
    eastKey = await east.createApiKey(PERMISSIONS, { principal: 'manager:east' });
    viaEast = east.connect(eastKey);
    viaRogue = rogue.connect(await rogue.createApiKey(PERMISSIONS, { principal: 'manager:rogue' }));
  });
  afterAll(async () => {
    viaEast?.close();
    viaRogue?.close();
    await Promise.all([east?.stop(), rogue?.stop()]);
  });

  const used = new Set<string>();
  async function runningVm(nodeId: string): Promise<Vm__Output> {
    const vms = (await viaEast.vm.listVms({ nodeId })).vms;
    const vm = vms.find((one) => !used.has(one.spec!.uuid));
    if (!vm) throw new Error(`no unused VM on ${nodeId}`);
    used.add(vm.spec!.uuid);
    return vm.runtime!.state === 'running' ? vm : viaEast.vm.startVm({ uuid: vm.spec!.uuid });
  }

  async function prepareOnNode2(
    vm: Vm__Output,
    transport: 'direct' | 'tunnel' = 'tunnel',
  ): Promise<{ migrationId: string; prepared: PrepareMigrationResponse__Output }> {
    const migrationId = randomUUID();
    const source = await viaEast.migration.prepareMigration({
      vm: vm.spec!,
      role: 'source',
      online: true,
      checkOnly: true,
    });
    const prepared = await viaEast.migration.prepareMigration({
      vm: vm.spec!,
      role: 'target',
      targetNodeId: 'node-2',
      migrationId,
      transport,
      online: true,
      sourceNodeId: vm.runtime!.nodeId,
      sourceCpuModel: source.cpuModel,
      sourceCpuFlags: source.cpuFlags,
      sourceDisks: source.disks,
    });
    expect(prepared.ok).toBe(true);
    return { migrationId, prepared };
  }

  const migrateRequest = (
    vm: Vm__Output,
    migrationId: string,
    target: Partial<{
      targetEndpoint: string;
      targetDataEndpoint: string;
      targetCaPem: string;
      targetNodeId: string;
      cookie: string;
      transport: 'direct' | 'tunnel';
    }>,
  ) => ({
    uuid: vm.spec!.uuid,
    migrationId,
    transport: 'tunnel' as const,
    mode: 'precopy',
    downtimeLimitMs: 300,
    bandwidthLimitBytes: 0,
    completionTimeoutSecondsPerGib: 0,
    offline: false,
    targetNodeId: 'node-2',
    targetCaPem: '',
    targetDataEndpoint: '',
    targetEndpoint: east.agents[1].endpoint,
    cookie: FAKE_COOKIE,
    ...target,
  });

  async function expectStillOnNode1(vm: Vm__Output): Promise<void> {
    const now = await viaEast.vm.getVm({ uuid: vm.spec!.uuid });
    expect(now.runtime).toMatchObject({ nodeId: 'node-1', state: 'running', lockedBy: '' });
  }

  describe('forged migration requests', () => {
    it("refuses to send a VM to an endpoint other than the target node's registered one", async () => {
      const vm = await runningVm('node-1');
      const { migrationId, prepared } = await prepareOnNode2(vm);
      const error = await rpcError(
        viaEast.migrateVm(
          migrateRequest(vm, migrationId, {
            cookie: prepared.cookie,
            targetEndpoint: rogue.agents[0].endpoint,
          }),
        ),
      );
      expect(error.code).toBe(status.PERMISSION_DENIED);
      expect(error.details).toBe(
        `refusing the migration target: node node-2 is registered at ${east.agents[1].endpoint}, not ${rogue.agents[0].endpoint}`,
      );
      await expectStillOnNode1(vm);
      await viaEast.migration.cancelMigration({
        migrationId,
        vmUuid: vm.spec!.uuid,
        nodeId: 'node-2',
      });
    });

    it('refuses a target node that is not a live node of the cluster', async () => {
      const vm = await runningVm('node-1');
      const error = await rpcError(
        viaEast.migrateVm(migrateRequest(vm, randomUUID(), { targetNodeId: 'node-9' })),
      );
      expect(error.code).toBe(status.PERMISSION_DENIED);
      expect(error.details).toBe(
        'refusing the migration target: node node-9 is not a live node of this cluster',
      );
      await expectStillOnNode1(vm);
    });

    it("refuses the direct transport's data endpoint on another host than the target's", async () => {
      const vm = await runningVm('node-1');
      const { migrationId, prepared } = await prepareOnNode2(vm, 'direct');
      const port = prepared.dataEndpoint.split(':').pop();
      const error = await rpcError(
        viaEast.migrateVm(
          migrateRequest(vm, migrationId, {
            transport: 'direct',
            cookie: prepared.cookie,
            targetDataEndpoint: `tcp:127.0.0.2:${port}`,
          }),
        ),
      );
      expect(error.code).toBe(status.PERMISSION_DENIED);
      expect(error.details).toBe(
        "refusing the migration target: the data endpoint's host 127.0.0.2 is not the target agent's host 127.0.0.1",
      );
      await expectStillOnNode1(vm);
      await viaEast.migration.cancelMigration({
        migrationId,
        vmUuid: vm.spec!.uuid,
        nodeId: 'node-2',
      });
    });

    it('refuses to send a VM to an agent of a cluster the operator has not trusted, until it does', async () => {
      const vm = await runningVm('node-1');
      const forged = migrateRequest(vm, randomUUID(), {
        targetEndpoint: rogue.agents[0].endpoint,
        targetCaPem: rogue.caPem,
        targetNodeId: 'node-1',
      });
      const error = await rpcError(viaEast.migrateVm(forged));
      expect(error.code).toBe(status.PERMISSION_DENIED);
      expect(error.details).toMatch(/the target CA is neither this cluster's nor a trusted peer/);
      await expectStillOnNode1(vm);

      // Once the operator trusts the peer, the same request passes this check and goes on to the
      // target, which refuses the made-up cookie: the VM stays where it is either way.
      const caFile = join(mkdtempSync(join(tmpdir(), 'debvisor-trust-')), 'rogue-ca.pem');
      writeFileSync(caFile, rogue.caPem);
      expect((await east.admin(['peer', 'trust', 'trust-rogue', '--ca', caFile])).code).toBe(0);
      try {
        const progress = await viaEast.migrateVm({ ...forged, migrationId: randomUUID() });
        expect(progress.at(-1)).toMatchObject({ phase: 'failed' });
        expect(progress.at(-1)!.message).not.toMatch(/refusing the migration target/);
      } finally {
        expect((await east.admin(['peer', 'forget', 'trust-rogue'])).code).toBe(0);
      }
      await expectStillOnNode1(vm);
    });

    it('a target refuses to reserve for a source cluster it does not trust', async () => {
      const vm = await runningVm('node-1');
      const prepared = await viaRogue.migration.prepareMigration({
        vm: vm.spec!,
        role: 'target',
        targetNodeId: 'node-1',
        migrationId: randomUUID(),
        transport: 'tunnel',
        online: true,
        sourceNodeId: 'node-1',
        sourceCaPem: east.caPem,
        sourceDisks: [],
      });
      expect(prepared.ok).toBe(false);
      expect(prepared.cookie).toBe('');
      expect(prepared.checks).toContainEqual(
        expect.objectContaining({ name: 'source-cluster', result: 'fail' }),
      );
    });

    it("a target refuses a definition that is not the source's VM (another VM's disks)", async () => {
      const [victim, other] = [await runningVm('node-1'), await runningVm('node-1')];
      const forgeries = [
        // A new VM on the victim's disks.
        { ...victim.spec!, uuid: randomUUID(), name: 'forged-vm' },
        // A real VM of the source, claimed with the victim's disks.
        { ...other.spec!, disks: victim.spec!.disks },
      ];
      for (const spec of forgeries) {
        const prepared = await viaEast.migration.prepareMigration({
          vm: spec,
          role: 'target',
          targetNodeId: 'node-2',
          migrationId: randomUUID(),
          transport: 'tunnel',
          online: true,
          sourceNodeId: 'node-1',
          sourceDisks: [],
        });
        expect(prepared.ok).toBe(false);
        expect(prepared.cookie).toBe('');
        expect(prepared.checks).toContainEqual(
          expect.objectContaining({ name: 'source-spec', result: 'fail' }),
        );
      }
    });
  });

  describe('revoking a node', () => {
    it('refuses a revoked node at once, whatever it presents, until it is reinstated', async () => {
      const node2 = await issueAgentCertificate(east.ca, 'node-2');
      const asNode2 = agentClient(east.agents[0].endpoint, {
        caPem: east.caPem,
        certPem: node2.certPem,
        keyPem: node2.keyPem,
        apiKey: eastKey,
      });
      const forwarded = {
        'x-debvisor-forwarded-principal': 'manager:east',
        'x-debvisor-forwarded-key-id': parseAgentApiKey(eastKey)!.id,
      };
      try {
        await expect(asNode2.node.getClusterInfo({})).resolves.toMatchObject({
          principal: 'manager:east',
        });
        const revoked = await east.admin(['node', 'revoke', 'node-2', '--reason', 'stolen disk']);
        expect(revoked.code).toBe(0);
        const { value } = await eventually(
          () =>
            rpcError(asNode2.node.getClusterInfo({})).then((error) =>
              error.code === status.UNAUTHENTICATED ? error : undefined,
            ),
          5_000,
          20,
        );
        expect(value.details).toBe('node node-2 is revoked in this cluster');
        const viaForward = await rpcError(asNode2.node.getClusterInfo({}, { metadata: forwarded }));
        expect(viaForward.details).toBe('node node-2 is revoked in this cluster');
        const listed = await east.admin(['node', 'revoked', '--json']);
        expect(JSON.parse(listed.stdout)).toEqual([
          expect.objectContaining({ nodeId: 'node-2', reason: 'stolen disk' }),
        ]);
      } finally {
        expect((await east.admin(['node', 'reinstate', 'node-2'])).code).toBe(0);
      }
      await eventually(() => asNode2.node.getClusterInfo({}).catch(() => undefined), 5_000, 20);
      asNode2.close();
    });

    it('refuses bad node ids on the admin CLI with a usage error', async () => {
      const bad = await east.admin(['node', 'revoke', 'Node_1!']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/node id/);
    });
  });
});
