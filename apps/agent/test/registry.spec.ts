import { startCluster, type AgentClient, type TestCluster } from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, rpcError } from './helpers';

const TTL_SECONDS = 3;

describe('node registry (real etcd, real agents)', () => {
  let cluster: TestCluster;
  let client: AgentClient;

  beforeAll(async () => {
    cluster = await startCluster({
      clusterId: 'reg',
      nodes: 3,
      vmsPerNode: 3,
      leaseTtlSeconds: TTL_SECONDS,
    });
    client = cluster.connect(
      await cluster.createApiKey(['node:*', 'vm:*'], { principal: 'manager:reg' }),
    );
  });
  afterAll(async () => {
    client?.close();
    await cluster?.stop();
  });

  const aliveIds = async () =>
    (await client.node.listNodes({})).nodes.filter((n) => n.alive).map((n) => n.info!.nodeId);
  const listedIds = async () => (await client.node.listNodes({})).nodes.map((n) => n.info!.nodeId);

  it('logs one JSON "agent ready" line with its node id and listen address once it serves', async () => {
    const [line] = await cluster.agents[0].process.waitFor(/.*"msg":"agent ready".*/);
    expect(JSON.parse(line)).toMatchObject({
      msg: 'agent ready',
      nodeId: 'node-1',
      listen: cluster.agents[0].endpoint,
      clusterId: 'reg',
    });
  });

  it('lists every node with its facts, a recent heartbeat with metrics, and liveness', async () => {
    const { clusterId, nodes } = await client.node.listNodes({});
    expect(clusterId).toBe('reg');
    expect(nodes.map((n) => [n.info!.nodeId, n.alive])).toEqual([
      ['node-1', true],
      ['node-2', true],
      ['node-3', true],
    ]);
    const node = nodes[1];
    expect(node.info).toMatchObject({
      hostname: 'node-2',
      fqdn: 'node-2.reg.debvisor.test',
      agentEndpoint: cluster.agents[1].endpoint,
      addresses: ['127.0.0.1'],
      cpuCount: 64,
      hypervisorDriver: 'sim',
      storageDriver: 'sim',
      bridges: ['vmbr0', 'vmbr1'],
      versions: { agent: '0.1.0', node: process.versions.node, sim: '0.1.0' },
    });
    expect(Number(node.info!.memoryBytes)).toBeGreaterThan(0);
    expect(node.info!.cpuFlags).toContain('avx2');
    expect(node.status).toMatchObject({ vmCount: 3, vmsRunning: 2, health: 'ok' });
    expect(node.status!.drivers.map((d) => [d.name, d.status])).toEqual([
      ['sim', 'ok'],
      ['sim-rbd', 'ok'],
    ]);
    expect(Date.now() - Date.parse(node.status!.heartbeatAt)).toBeLessThan(TTL_SECONDS * 1000);
    expect(Date.parse(node.registeredAt)).toBeLessThanOrEqual(Date.parse(node.status!.heartbeatAt));
  });

  it('answers its health and the cluster identity with the calling key’s principal and permissions', async () => {
    await expect(client.node.getHealth({})).resolves.toMatchObject({
      nodeId: 'node-1',
      status: 'ok',
      version: '0.1.0',
    });
    await expect(client.node.getClusterInfo({})).resolves.toEqual({
      clusterId: 'reg',
      nodeId: 'node-1',
      agentVersion: '0.1.0',
      nodeCount: 3,
      principal: 'manager:reg',
      permissions: ['node:*', 'vm:*'],
    });
  });

  it('drops a SIGKILLed agent within the lease TTL, and takes it back with the same VMs and states on restart', async () => {
    const victim = cluster.agents[2];
    const viaVictim = cluster.connect(await cluster.createApiKey(['vm:*']), victim);
    const before = await viaVictim.vm.listVms({ nodeId: victim.nodeId });
    const stopped = before.vms.find((vm) => vm.runtime!.state === 'stopped')!;
    await viaVictim.vm.startVm({ uuid: stopped.spec!.uuid }); // so that a state changed by an operation survives too
    const expected = (await viaVictim.vm.listVms({ nodeId: victim.nodeId })).vms.map((vm) => [
      vm.spec!.uuid,
      vm.spec!.name,
      vm.runtime!.state,
    ]);
    viaVictim.close();
    expect(expected.every(([, , state]) => state === 'running')).toBe(true);

    await victim.kill();
    const { ms } = await eventually(
      async () => ((await listedIds()).includes(victim.nodeId) ? undefined : true),
      (TTL_SECONDS + 3) * 1000,
      50,
    );
    // etcd expires leases TTL after the last keep-alive, checking every 500 ms
    expect(ms).toBeLessThanOrEqual(TTL_SECONDS * 1000 + 600);
    expect(await listedIds()).toEqual(['node-1', 'node-2']);

    await victim.restart();
    expect(await aliveIds()).toEqual(['node-1', 'node-2', 'node-3']);
    const after = await client.vm.listVms({ nodeId: victim.nodeId });
    expect(after.vms.map((vm) => [vm.spec!.uuid, vm.spec!.name, vm.runtime!.state])).toEqual(
      expected,
    );
  });

  it('drops a cleanly stopped agent at once (its lease is revoked)', async () => {
    const agent = cluster.agents[1];
    await agent.stop();
    expect(await agent.process.exited).toBe(0);
    expect(await listedIds()).toEqual(['node-1', 'node-3']);
    await agent.restart();
    expect(await aliveIds()).toEqual(['node-1', 'node-2', 'node-3']);
  });

  it('registers and heartbeats a node announced through RegisterNode and Heartbeat', async () => {
    const info = {
      nodeId: 'edge-7',
      hostname: 'edge-7',
      fqdn: 'edge-7.dc-east.example.org',
      addresses: ['10.20.0.7', 'fd00::7'],
      agentEndpoint: '10.20.0.7:9443',
      cpuModel: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz',
      cpuFlags: ['avx512f', 'vmx'],
      cpuCount: 128,
      memoryBytes: String(1024 ** 4),
      hugepages: { pageSizeBytes: String(1024 ** 3), total: '64', free: '60' },
      versions: { agent: '0.1.0', qemu: '8.2.2' },
      hypervisorDriver: 'libvirt',
      storageDriver: 'rbd',
      bridges: ['vmbr0'],
    };
    const { leaseId, ttlSeconds } = await client.node.registerNode({ node: info, ttlSeconds: 2 });
    expect(ttlSeconds).toBe(2);
    const status = {
      cpuUsage: 0.4,
      memoryUsedBytes: String(512 * 1024 ** 3),
      memoryTotalBytes: String(1024 ** 4),
      vmCount: 9,
      vmsRunning: 8,
      drivers: [{ name: 'libvirt', status: 'degraded', message: 'slow' }],
      health: 'degraded',
    };
    await expect(client.node.heartbeat({ nodeId: 'edge-7', leaseId, status })).resolves.toEqual({
      leaseAlive: true,
    });
    const entry = (await client.node.listNodes({})).nodes.find((n) => n.info!.nodeId === 'edge-7')!;
    expect(entry).toMatchObject({
      alive: true,
      info: { memoryBytes: String(1024 ** 4), hugepages: { total: '64' } },
      status: { vmCount: 9, health: 'degraded' },
    });

    await expect(
      client.node.heartbeat({ nodeId: 'edge-7', leaseId: '12345', status }),
    ).resolves.toEqual({ leaseAlive: false });

    // Heartbeats keep it registered past its TTL; without them it goes, and its lease with it.
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 800));
      await expect(client.node.heartbeat({ nodeId: 'edge-7', leaseId, status })).resolves.toEqual({
        leaseAlive: true,
      });
    }
    await eventually(async () => ((await listedIds()).includes('edge-7') ? undefined : true), 4000);
    await expect(client.node.heartbeat({ nodeId: 'edge-7', leaseId, status })).resolves.toEqual({
      leaseAlive: false,
    });
  });

  it('refuses RegisterNode without node:registry:write', async () => {
    const reader = cluster.connect(await cluster.createApiKey(['node:registry:read']));
    const error = await rpcError(reader.node.registerNode({ node: null, ttlSeconds: 0 }));
    reader.close();
    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.details).toMatch(/needs the permission node:registry:write/);
  });
});
