import { startCluster, type AgentClient, type TestCluster } from '@debvisor/testing';
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { debvisorV1 } from '@debvisor/proto';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rpcError } from './helpers';

describe('request validation and error mapping (real agent)', () => {
  let cluster: TestCluster;
  let client: AgentClient;
  let apiKey: string;

  beforeAll(async () => {
    cluster = await startCluster({ clusterId: 'val', nodes: 1, vmsPerNode: 2 });
    apiKey = await cluster.createApiKey(['*']);
    client = cluster.connect(apiKey);
  });
  afterAll(async () => {
    client?.close();
    await cluster?.stop();
  });

  const invalid = async (call: Promise<unknown>) => {
    const error = await rpcError(call);
    expect(error.code, error.details).toBe(status.INVALID_ARGUMENT);
    return error.details;
  };

  it('answers INVALID_ARGUMENT naming each bad field', async () => {
    expect(await invalid(client.vm.getVm({ uuid: 'not-a-uuid' }))).toBe(
      'invalid request: uuid: not a valid UUID',
    );
    expect(await invalid(client.vm.startVm({}))).toBe('invalid request: uuid: not a valid UUID');
    expect(await invalid(client.vm.listVms({ nodeId: 'Node_1' }))).toMatch(
      /^invalid request: node_id: a node id is/,
    );
    expect(
      await invalid(
        client.vm.shutdownVm({
          uuid: '6b1b8c52-5f4e-4c7b-9d59-2f3c8a1e0b11',
          timeoutSeconds: 99_999,
        }),
      ),
    ).toBe('invalid request: timeout_seconds: at most 3600 seconds');
    expect(await invalid(client.storage.listImages({ pool: '../etc' }))).toMatch(
      /^invalid request: pool: a pool name is/,
    );
    expect(await invalid(client.node.registerNode({ ttlSeconds: 0 }))).toBe(
      'invalid request: node: is required',
    );
    expect(await invalid(client.node.heartbeat({ nodeId: 'node-1', leaseId: 'abc' }))).toMatch(
      /lease_id: a lease id is the decimal number.*; status: is required/,
    );
  });

  it('names nested fields of a malformed node registration', async () => {
    const details = await invalid(
      client.node.registerNode({
        node: {
          nodeId: 'edge-1',
          hostname: 'edge 1',
          fqdn: 'edge-1.example.org',
          addresses: ['10.0.0.300'],
          agentEndpoint: '10.0.0.1:99999',
          cpuModel: 'x',
          cpuCount: 4,
          memoryBytes: '1024',
          hypervisorDriver: 'sim',
          storageDriver: 'sim',
          bridges: ['vmbr0', '-bad'],
        },
      }),
    );
    expect(details).toMatch(/node\.hostname: a host name is one DNS label/);
    expect(details).toMatch(/node\.addresses\[0\]: not a valid IPv4 or IPv6 address/);
    expect(details).toMatch(/node\.agent_endpoint: an endpoint is host:port/);
    expect(details).toMatch(/node\.bridges\[1\]: a label is/);
  });

  it('refuses a request over 1 MiB with RESOURCE_EXHAUSTED and keeps serving', async () => {
    const oversized = await rpcError(client.vm.listVms({ nodeId: 'a'.repeat(1024 * 1024 + 16) }));
    expect(oversized.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(oversized.details).toMatch(/larger than max/);
    expect(await invalid(client.vm.listVms({ nodeId: 'a'.repeat(1000 * 1000) }))).toMatch(
      /^invalid request: node_id: /,
    );
    await expect(client.node.getHealth({})).resolves.toMatchObject({ status: 'ok' });
  });

  it('answers NOT_FOUND for a VM or node the cluster does not have', async () => {
    const vm = await rpcError(client.vm.getVm({ uuid: '6b1b8c52-5f4e-4c7b-9d59-2f3c8a1e0b11' }));
    expect([vm.code, vm.details]).toEqual([
      status.NOT_FOUND,
      'no VM with uuid 6b1b8c52-5f4e-4c7b-9d59-2f3c8a1e0b11 in this cluster',
    ]);
    const node = await rpcError(client.vm.listVms({ nodeId: 'node-9' }));
    expect([node.code, node.details]).toEqual([
      status.NOT_FOUND,
      'node node-9 is not in the registry',
    ]);
  });

  it('answers UNIMPLEMENTED naming the milestone, after authenticating the caller; invalid streams are refused like unary calls', async () => {
    // FailoverVm (HA) is implemented: a request without its fields is refused before anything runs.
    const failover = await rpcError(client.migration.failoverVm({}));
    expect([failover.code, failover.details]).toEqual([
      status.INVALID_ARGUMENT,
      expect.stringMatching(/^invalid request: uuid: not a valid UUID/),
    ]);
    // Each call is made when it is awaited: a call left waiting would reject unhandled.
    const calls: [() => Promise<unknown>, RegExp][] = [
      [() => client.access.syncUsersGroups({}), /identity and access milestone/],
    ];
    for (const [call, message] of calls) {
      const error = await rpcError(call());
      expect([error.code, error.details]).toEqual([
        status.UNIMPLEMENTED,
        expect.stringMatching(message),
      ]);
    }
    // A server stream refuses an invalid request the same way, before anything starts.
    const stream = await serverStreamError(apiKey);
    expect([stream.code, stream.details]).toEqual([
      status.INVALID_ARGUMENT,
      expect.stringMatching(/^invalid request: uuid: not a valid UUID/),
    ]);
    const anonymous = cluster.connect(undefined);
    expect((await rpcError(anonymous.migration.prepareMigration({}))).code).toBe(
      status.UNAUTHENTICATED,
    );
    anonymous.close();
  });

  it('answers an unexpected failure as INTERNAL with a trace id only, logging the details', async () => {
    const etcd = new Etcd3(cluster.etcd.clientOptions());
    await etcd.put('/debvisor/rpc/apikeys/00000000000000ff').value('{"id": "garbage"');
    etcd.close();
    const broken = cluster.connect(`dvk_00000000000000ff_${'A'.repeat(43)}`);
    const error = await rpcError(broken.node.getHealth({}));
    broken.close();
    expect(error.code).toBe(status.INTERNAL);
    const traceId = /^internal error in the agent \(trace id ([0-9a-f]{16})\)$/.exec(
      error.details,
    )?.[1];
    expect(traceId, error.details).toBeDefined();
    const [line] = await cluster.agents[0].process.waitFor(
      new RegExp(`.*"traceId":"${traceId}".*"msg":"rpc failed unexpectedly".*`),
      5_000,
    );
    expect(line).toMatch(
      /API key record \/debvisor\/rpc\/apikeys\/00000000000000ff in etcd is malformed/,
    );
    await expect(client.node.getHealth({})).resolves.toMatchObject({ status: 'ok' });
  });

  /** MigrateVm is server-streaming: the harness client only covers unary calls. */
  function serverStreamError(key: string): Promise<ServiceError> {
    const method = debvisorV1().MigrationService.service.MigrateVm;
    const raw = new Client(
      cluster.agents[0].endpoint,
      credentials.createSsl(
        Buffer.from(cluster.caPem),
        Buffer.from(cluster.client.keyPem),
        Buffer.from(cluster.client.certPem),
      ),
    );
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${key}`);
    return new Promise((resolve) => {
      const call = raw.makeServerStreamRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        {},
        metadata,
        { deadline: Date.now() + 10_000 },
      );
      call.on('data', () => undefined);
      call.on('error', (error: ServiceError) => {
        raw.close();
        resolve(error);
      });
    });
  }
});
