import { startCluster, startEtcd, type EtcdInstance, type TestCluster } from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

describe('losing etcd (real etcd, real agents)', () => {
  let cluster: TestCluster;
  let replacement: EtcdInstance | undefined;

  beforeAll(async () => {
    cluster = await startCluster({
      clusterId: 'etcd-loss',
      nodes: 2,
      vmsPerNode: 2,
      leaseTtlSeconds: 3,
    });
  });
  afterAll(async () => {
    await cluster?.stop();
    await replacement?.stop();
  });

  it('answers UNAVAILABLE while etcd is down, and registers again, VMs included, when it comes back empty', async () => {
    const port = Number(new URL(cluster.etcd.endpoint).port);
    const before = cluster.connect(await cluster.createApiKey(['*']));
    await before.node.listNodes({});
    await cluster.etcd.stop();
    const down = await rpcError(before.node.listNodes({}));
    before.close();
    expect([down.code, down.details]).toEqual([
      status.UNAVAILABLE,
      'the cluster etcd cannot be reached; try again later',
    ]);

    replacement = await startEtcd({ clientPort: port });
    await eventually(
      () =>
        Promise.all(
          cluster.agents.map((agent) =>
            agent.process.waitFor(/"msg":"node lease lost; registering again"/, 100),
          ),
        ).then(() => true),
      15_000,
    );
    const client = cluster.connect(await cluster.createApiKey(['*'])); // the old keys went with the old etcd
    const { value: nodes } = await eventually(async () => {
      const { nodes } = await client.node.listNodes({});
      return nodes.filter((n) => n.alive && n.status).length === 2 ? nodes : undefined;
    }, 10_000);
    expect(nodes.map((n) => n.info!.nodeId)).toEqual(['node-1', 'node-2']);
    const { vms, unreachableNodes } = await client.vm.listVms({});
    expect(unreachableNodes).toEqual({});
    expect(vms).toHaveLength(4);
    const remote = vms.find((vm) => vm.runtime!.nodeId === 'node-2')!;
    await expect(client.vm.getVm({ uuid: remote.spec!.uuid })).resolves.toMatchObject({
      runtime: { nodeId: 'node-2' },
    }); // forwarded through the republished index
    client.close();
  });
});
