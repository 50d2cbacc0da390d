import { startCluster, type AgentClient, type TestCluster } from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import type { Vm__Output } from '@debvisor/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rpcError } from './helpers';

describe('VMs across the cluster (real etcd, three real agents)', () => {
  let cluster: TestCluster;
  let viaNode: AgentClient[];

  beforeAll(async () => {
    cluster = await startCluster({ clusterId: 'vms', nodes: 3, vmsPerNode: 3, timeScale: 0.02 });
    const key = await cluster.createApiKey(['vm:*', 'storage:*', 'node:*'], {
      principal: 'manager:vms',
    });
    viaNode = cluster.agents.map((agent) => cluster.connect(key, agent));
  });
  afterAll(async () => {
    for (const client of viaNode ?? []) client.close();
    await cluster?.stop();
  });

  const vmsOf = async (nodeId: string) => (await viaNode[0].vm.listVms({ nodeId })).vms;
  const find = async (nodeId: string, state: string): Promise<Vm__Output> =>
    (await vmsOf(nodeId)).find((vm) => vm.runtime!.state === state)!;

  it('lists every VM of the cluster from any agent', async () => {
    const answers = await Promise.all(viaNode.map((client) => client.vm.listVms({})));
    for (const answer of answers) {
      expect(answer.unreachableNodes).toEqual({});
      expect(answer.vms).toHaveLength(9);
      expect(answer.vms.map((vm) => vm.spec!.uuid)).toEqual(
        answers[0].vms.map((vm) => vm.spec!.uuid),
      );
    }
    expect(answers[0].vms.map((vm) => vm.runtime!.nodeId).sort()).toEqual([
      'node-1',
      'node-1',
      'node-1',
      'node-2',
      'node-2',
      'node-2',
      'node-3',
      'node-3',
      'node-3',
    ]);
    expect(new Set(answers[0].vms.map((vm) => vm.spec!.name)).size).toBe(9);
    const vm = answers[0].vms[0];
    expect(vm.spec!.disks[0]).toMatchObject({
      pool: 'rbd',
      image: `${vm.spec!.name}-disk0`,
      bus: 'virtio',
    });
    expect(vm.spec!.nics[0].mac).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
  });

  it('lists one node’s VMs, answered by that node', async () => {
    const vms = await viaNode[0].vm.listVms({ nodeId: 'node-3' });
    expect(vms.vms).toHaveLength(3);
    expect(vms.vms.every((vm) => vm.runtime!.nodeId === 'node-3')).toBe(true);
  });

  it('starts and stops a VM of another node through this node, as the original caller', async () => {
    const vm = await find('node-2', 'stopped');
    const started = await viaNode[0].vm.startVm({ uuid: vm.spec!.uuid });
    expect(started.runtime).toMatchObject({ nodeId: 'node-2', state: 'running', lockedBy: '' });
    await expect(viaNode[2].vm.getVm({ uuid: vm.spec!.uuid })).resolves.toMatchObject({
      runtime: { state: 'running', nodeId: 'node-2' },
    });
    const stopped = await viaNode[0].vm.stopVm({ uuid: vm.spec!.uuid });
    expect(stopped.runtime).toMatchObject({ nodeId: 'node-2', state: 'stopped' });
    await cluster.agents[1].process.waitFor(
      /"rpc":"VmService.StartVm".*"principal":"manager:vms".*"forwardedBy":"node-1".*"msg":"rpc ok"/,
      5_000,
    );
  });

  it('shuts a VM down and reboots one through a peer', async () => {
    const vm = await find('node-3', 'running');
    await expect(viaNode[1].vm.rebootVm({ uuid: vm.spec!.uuid })).resolves.toMatchObject({
      runtime: { state: 'running', nodeId: 'node-3' },
    });
    await expect(
      viaNode[1].vm.shutdownVm({ uuid: vm.spec!.uuid, timeoutSeconds: 30 }),
    ).resolves.toMatchObject({ runtime: { state: 'stopped' } });
    const error = await rpcError(viaNode[1].vm.shutdownVm({ uuid: vm.spec!.uuid }));
    expect([error.code, error.details]).toEqual([
      status.FAILED_PRECONDITION,
      expect.stringMatching(/is stopped; only a running VM can be shut down/),
    ]);
  });

  it('refuses a second operation on a VM while the first one holds its lock', async () => {
    const vm = await find('node-2', 'running');
    const rebooting = viaNode[0].vm.rebootVm({ uuid: vm.spec!.uuid }); // 160 ms at this time scale
    await new Promise((r) => setTimeout(r, 60));
    await expect(viaNode[2].vm.getVm({ uuid: vm.spec!.uuid })).resolves.toMatchObject({
      runtime: { state: 'rebooting', lockedBy: 'reboot' },
    });
    const error = await rpcError(viaNode[2].vm.stopVm({ uuid: vm.spec!.uuid }));
    expect(error.code).toBe(status.FAILED_PRECONDITION);
    expect(error.details).toMatch(/^VM .+ is busy: a reboot operation is in progress/);
    await expect(rebooting).resolves.toMatchObject({ runtime: { state: 'running', lockedBy: '' } });
  });

  it('shows the shared RBD images of every node from any node', async () => {
    const { images } = await viaNode[2].storage.listImages({ pool: '' });
    const all = (await viaNode[0].vm.listVms({})).vms.flatMap((vm) =>
      vm.spec!.disks.map((d) => d.image),
    );
    expect(images.map((i) => i.image).sort()).toEqual([...all].sort());
    expect(images.every((i) => i.pool === 'rbd' && Number(i.sizeBytes) > 0)).toBe(true);
  });

  it('still lists the cluster with a killed node reported unreachable, and answers UNAVAILABLE for its VMs', async () => {
    const node3Vm = (await vmsOf('node-3'))[0];
    await cluster.agents[2].kill();
    const started = Date.now();
    const answer = await viaNode[0].vm.listVms({});
    expect(Date.now() - started).toBeLessThan(3_500);
    expect(answer.vms.map((vm) => vm.runtime!.nodeId).sort()).toEqual([
      'node-1',
      'node-1',
      'node-1',
      'node-2',
      'node-2',
      'node-2',
    ]);
    expect(Object.keys(answer.unreachableNodes)).toEqual(['node-3']);
    expect(answer.unreachableNodes['node-3']).toMatch(
      /^node node-3 \(127\.0\.0\.1:\d+\) did not answer: UNAVAILABLE/,
    );
    const error = await rpcError(viaNode[1].vm.startVm({ uuid: node3Vm.spec!.uuid }));
    expect(error.code).toBe(status.UNAVAILABLE);
  });
});
