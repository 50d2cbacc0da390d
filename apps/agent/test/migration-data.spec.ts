import type { TunnelFrame__Output, Vm__Output } from '@debvisor/proto';
import {
  agentClient,
  issueAgentCertificate,
  startCluster,
  type AgentClient,
  type TestCluster,
} from '@debvisor/testing';
import { status } from '@grpc/grpc-js';
import { randomBytes, randomUUID } from 'node:crypto';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TunnelDataClientRepository } from '../src/migration/tunnel-data-client.repository';
import { MIGRATION_DATA_ALPN } from '../src/rpc/rpc-server';

/**
 * The migration data path on the agents' one port: after the tunnel's cookie handshake, QEMU's
 * bytes go over TLS connections of their own (ALPN debvisor-migration-data/1) that present a
 * one-time token handed out on the authenticated control stream.
 */
describe('migration data connections (real etcd, real agents, sim hypervisor)', () => {
  let cluster: TestCluster;
  let api: AgentClient;
  const peers: AgentClient[] = [];

  beforeAll(async () => {
    cluster = await startCluster({ clusterId: 'mig-data', nodes: 2, vmsPerNode: 6 });
    api = cluster.connect(await cluster.createApiKey(['vm:*', 'migration:*', 'node:*']));
  });
  afterAll(async () => {
    for (const client of [api, ...peers]) client?.close();
    await cluster?.stop();
  });

  /** An agent identity of this cluster: its tunnel client, data client and certificate. */
  async function agentIdentity(nodeId: string) {
    const cert = await issueAgentCertificate(cluster.ca, nodeId);
    const grpc = agentClient(cluster.agents[1].endpoint, {
      caPem: cluster.caPem,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
    });
    peers.push(grpc);
    const data = new TunnelDataClientRepository({
      clusterCaPem: cluster.caPem,
      certChainPem: cert.certPem + cluster.caPem,
      keyPem: cert.keyPem,
    } as never);
    return { grpc, data, cert };
  }

  const used = new Set<string>();
  async function runningVm(): Promise<Vm__Output> {
    const vms = (await api.vm.listVms({ nodeId: 'node-1' })).vms;
    const vm = vms.find((c) => !used.has(c.spec!.uuid));
    if (!vm) throw new Error('no unused VM on node-1');
    used.add(vm.spec!.uuid);
    return vm.runtime!.state === 'running' ? vm : api.vm.startVm({ uuid: vm.spec!.uuid });
  }

  async function prepare(vm: Vm__Output) {
    const source = await api.migration.prepareMigration({
      vm: vm.spec!,
      role: 'source',
      online: true,
      checkOnly: true,
    });
    const migrationId = randomUUID();
    const prepared = await api.migration.prepareMigration({
      vm: vm.spec!,
      role: 'target',
      targetNodeId: 'node-2',
      migrationId,
      transport: 'tunnel',
      online: true,
      sourceNodeId: 'node-1',
      sourceCaPem: '',
      sourceCpuModel: source.cpuModel,
      sourceCpuFlags: source.cpuFlags,
    });
    expect(prepared.cookie).not.toBe('');
    return { migrationId, prepared, opening: { vmUuid: vm.spec!.uuid, migrationId } };
  }

  /** Opens a tunnel asking for data connections; answers 'ready''s message, or the error. */
  function openTunnel(
    client: AgentClient,
    opening: { cookie: string; vmUuid: string; migrationId: string },
  ): Promise<{ ready?: { multifdChannels: number; dataTokens?: string[] }; code?: number }> {
    const stream = client.tunnel();
    return new Promise((resolve) => {
      stream.on('data', (frame: TunnelFrame__Output) => {
        if (frame.control === 'ready') resolve({ ready: JSON.parse(frame.message) });
      });
      stream.on('error', (error: { code: number }) => resolve({ code: error.code }));
      stream.write({ ...opening, controlOnly: false, dataConnections: true });
    });
  }

  const target = () => ({ endpoint: cluster.agents[1].endpoint, nodeId: 'node-2', caPem: '' });

  it('moves a running VM through the tunnel, its bytes over a data connection', async () => {
    const vm = await runningVm();
    const { migrationId, prepared } = await prepare(vm);
    const progress = await api.migrateVm({
      uuid: vm.spec!.uuid,
      migrationId,
      targetEndpoint: prepared.endpoint,
      targetDataEndpoint: prepared.dataEndpoint,
      cookie: prepared.cookie,
      transport: 'tunnel',
      mode: 'precopy',
      downtimeLimitMs: 300,
      bandwidthLimitBytes: 0,
      completionTimeoutSecondsPerGib: 0,
      targetCaPem: '',
      targetNodeId: prepared.nodeId,
      offline: false,
    });
    expect(progress.at(-1)).toMatchObject({ phase: 'completed' });
    expect((await api.vm.getVm({ uuid: vm.spec!.uuid })).runtime).toMatchObject({
      nodeId: 'node-2',
      state: 'running',
    });
  });

  it('hands out one token per channel on the control stream; each is good for one connection', async () => {
    const { prepared, opening } = await prepare(await runningVm());
    const source = await agentIdentity('node-1');
    const answer = await openTunnel(source.grpc, { ...opening, cookie: prepared.cookie });
    // The sim driver takes no multifd channels: one channel, one token.
    expect(answer.ready).toEqual({ multifdChannels: 0, dataTokens: [expect.any(String)] });
    const [token] = answer.ready!.dataTokens!;
    const socket = await source.data.open(target(), 0, token!);
    socket.destroy();
    await expect(source.data.open(target(), 0, token!)).rejects.toThrow(
      /refused data channel 0: unknown or used data channel token/,
    );
  });

  it('refuses a replayed cookie, a wrong token, and a token shown by another agent', async () => {
    const { prepared, opening } = await prepare(await runningVm());
    const source = await agentIdentity('node-1');
    const other = await agentIdentity('node-7');
    const answer = await openTunnel(source.grpc, { ...opening, cookie: prepared.cookie });
    expect(answer.ready?.dataTokens).toHaveLength(1);
    expect(await openTunnel(source.grpc, { ...opening, cookie: prepared.cookie })).toEqual({
      code: status.PERMISSION_DENIED,
    });
    await expect(source.data.open(target(), 0, randomBytes(32).toString('hex'))).rejects.toThrow(
      /unknown or used data channel token/,
    );
    // node-7 is an agent of the cluster, but not the one that opened this migration.
    const [token] = answer.ready!.dataTokens!;
    await expect(other.data.open(target(), 0, token!)).rejects.toThrow(
      /must come from the agent certificate that opened the migration/,
    );
    // Shown once, it is used up, even by the right agent afterwards.
    await expect(source.data.open(target(), 0, token!)).rejects.toThrow(
      /unknown or used data channel token/,
    );
  });

  it('answers anything but a data header with a reason, and a client without a certificate not at all', async () => {
    const { cert } = await agentIdentity('node-1');
    const [host, port] = cluster.agents[1].endpoint.split(':');
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect({
        host,
        port: Number(port),
        servername: 'node-2',
        ca: cluster.caPem,
        cert: cert.certPem,
        key: cert.keyPem,
        ALPNProtocols: [MIGRATION_DATA_ALPN],
      });
      let text = '';
      socket.on('secureConnect', () => socket.write(Buffer.alloc(40, 'x')));
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(answer).toBe('Enot a migration data connection');
    const anonymous = await new Promise<string>((resolve) => {
      const socket = connect({
        host,
        port: Number(port),
        servername: 'node-2',
        ca: cluster.caPem,
        ALPNProtocols: [MIGRATION_DATA_ALPN],
      });
      socket.on('secureConnect', () => socket.write(Buffer.alloc(40)));
      socket.on('data', () => resolve('answered'));
      socket.on('error', (error: Error) => resolve(`error: ${error.message}`));
      socket.on('close', () => resolve('closed'));
    });
    expect(anonymous).toMatch(/^(error: .*certificate required|closed)/);
  });
});
