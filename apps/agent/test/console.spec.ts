import { debvisorV1, type ConsoleFrame, type ConsoleFrame__Output } from '@debvisor/proto';
import { startCluster, type TestAgent, type TestCluster } from '@debvisor/testing';
import { credentials, Client, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * VmService.Console on real agents (sim driver: the RFB test pattern): forwarded from any agent to
 * the VM's node, refused with a clear status for a stopped VM, an unknown one, a stream that does
 * not open first, and a key without the console permission.
 */
describe("a VM's console over the agents' mutual TLS", () => {
  let cluster: TestCluster;
  let key: string;
  let readOnly: string;
  const clients: Client[] = [];

  beforeAll(async () => {
    cluster = await startCluster({ clusterId: 'console', nodes: 2, vmsPerNode: 3 });
    key = await cluster.createApiKey(['vm:*', 'migration:*', 'node:*'], {
      principal: 'manager:console',
    });
    readOnly = await cluster.createApiKey(['vm:instance:read'], { principal: 'reader' });
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await cluster?.stop();
  });

  function openConsole(agent: TestAgent, apiKey: string) {
    const client = new Client(
      agent.endpoint,
      credentials.createSsl(
        Buffer.from(cluster.caPem),
        Buffer.from(cluster.client.keyPem),
        Buffer.from(cluster.client.certPem),
      ),
    );
    clients.push(client);
    const method = debvisorV1().VmService.service.Console;
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${apiKey}`);
    return client.makeBidiStreamRequest(
      method.path,
      method.requestSerialize as (value: ConsoleFrame) => Buffer,
      method.responseDeserialize as (bytes: Buffer) => ConsoleFrame__Output,
      metadata,
      { deadline: Date.now() + 30_000 },
    );
  }

  /** The bytes the stream carries until at least `length` arrived, or the error it ends with. */
  function read(
    call: ReturnType<typeof openConsole>,
    length: number,
  ): Promise<{ bytes: Buffer } | { error: ServiceError }> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      const onData = (frame: ConsoleFrame__Output) => {
        if (frame.data) chunks.push(frame.data);
        if (Buffer.concat(chunks).length >= length) {
          call.off('data', onData);
          resolve({ bytes: Buffer.concat(chunks) });
        }
      };
      call.on('data', onData);
      call.once('error', (error: ServiceError) => resolve({ error }));
    });
  }

  async function vmOn(nodeId: string, state: string) {
    const client = cluster.connect(key);
    try {
      const { vms } = await client.vm.listVms({ nodeId });
      const vm = vms.find((v) => v.runtime!.state === state);
      if (!vm) throw new Error(`no ${state} VM on ${nodeId}`);
      return vm.spec!;
    } finally {
      client.close();
    }
  }

  it("reaches the VM's VNC server through the agent of another node", async () => {
    const vm = await vmOn('node-2', 'running');
    const call = openConsole(cluster.agents[0]!, key);
    call.write({ open: { uuid: vm.uuid } });
    const greeting = await read(call, 12);
    expect('bytes' in greeting && greeting.bytes.toString('latin1')).toBe('RFB 003.008\n');
    call.write({ data: Buffer.from('RFB 003.008\n', 'latin1') });
    call.write({ data: Buffer.from([1]) });
    call.write({ data: Buffer.from([1]) });
    const init = await read(call, 2 + 4 + 24 + Buffer.byteLength(vm.name));
    if (!('bytes' in init)) throw init.error;
    expect(init.bytes.subarray(-Buffer.byteLength(vm.name)).toString()).toBe(vm.name);
    call.end();
  });

  it('refuses a stopped VM, an unknown VM and a stream that does not open first', async () => {
    const stopped = await vmOn('node-1', 'stopped');
    const cases: [ConsoleFrame, status, RegExp][] = [
      [
        { open: { uuid: stopped.uuid } },
        status.FAILED_PRECONDITION,
        /stopped, so it has no console/,
      ],
      [
        { open: { uuid: '00000000-0000-4000-8000-000000000000' } },
        status.NOT_FOUND,
        /no VM with uuid/,
      ],
      [{ data: Buffer.from('RFB 003.008\n') }, status.INVALID_ARGUMENT, /first frame must be open/],
      [{ open: { uuid: 'not-a-uuid' } }, status.INVALID_ARGUMENT, /uuid/],
    ];
    for (const [frame, code, message] of cases) {
      const call = openConsole(cluster.agents[1]!, key);
      call.write(frame);
      const answer = await read(call, 1);
      expect(
        'error' in answer && [answer.error.code, answer.error.details],
        JSON.stringify(frame),
      ).toEqual([code, expect.stringMatching(message)]);
      expect('error' in answer && answer.error.details).toMatch(message);
    }
  });

  it('needs the vm:instance:console permission', async () => {
    const vm = await vmOn('node-1', 'running');
    const call = openConsole(cluster.agents[0]!, readOnly);
    call.write({ open: { uuid: vm.uuid } });
    const answer = await read(call, 1);
    expect('error' in answer && answer.error.code).toBe(status.PERMISSION_DENIED);
    expect('error' in answer && answer.error.details).toMatch(/vm:instance:console/);
  });

  it('ends when the VM stops, as a QEMU closing its VNC socket would', async () => {
    const vm = await vmOn('node-1', 'running');
    const call = openConsole(cluster.agents[1]!, key);
    call.write({ open: { uuid: vm.uuid } });
    expect('bytes' in (await read(call, 12))).toBe(true);
    const ended = new Promise<number>((resolve) =>
      call.once('status', (answer: { code: number }) => resolve(answer.code)),
    );
    call.on('data', () => undefined);
    const client = cluster.connect(key);
    try {
      await client.vm.stopVm({ uuid: vm.uuid });
    } finally {
      client.close();
    }
    expect(await ended).toBe(status.OK);
  });

  it('ends when the VM migrates away; a new console reaches it on its new node', async () => {
    const vm = await vmOn('node-1', 'running');
    const before = openConsole(cluster.agents[1]!, key);
    before.write({ open: { uuid: vm.uuid } });
    expect('bytes' in (await read(before, 12))).toBe(true);
    const ended = new Promise<number>((resolve) =>
      before.once('status', (answer: { code: number }) => resolve(answer.code)),
    );
    before.on('data', () => undefined);

    const client = cluster.connect(key);
    try {
      const migrationId = randomUUID();
      const source = await client.migration.prepareMigration({
        vm,
        role: 'source',
        online: true,
        checkOnly: true,
      });
      const prepared = await client.migration.prepareMigration({
        vm,
        role: 'target',
        targetNodeId: 'node-2',
        migrationId,
        transport: 'tunnel',
        online: true,
        sourceNodeId: 'node-1',
        sourceCaPem: '',
        sourceCpuModel: source.cpuModel,
        sourceCpuFlags: source.cpuFlags,
        sourceDisks: source.disks,
      });
      const progress = await client.migrateVm({
        uuid: vm.uuid,
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
        targetNodeId: 'node-2',
        offline: false,
      });
      expect(progress.at(-1)?.phase).toBe('completed');
    } finally {
      client.close();
    }
    expect(await ended).toBe(status.OK);

    const after = openConsole(cluster.agents[0]!, key);
    after.write({ open: { uuid: vm.uuid } });
    const greeting = await read(after, 12);
    expect('bytes' in greeting && greeting.bytes.toString('latin1')).toBe('RFB 003.008\n');
    after.end();
  });
});
