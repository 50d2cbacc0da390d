import { cleanupTempDirs, tempDir } from '@debvisor/testing';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { QmpClient, QmpCommandError, QmpConnectionError } from './qmp-client';

const GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}\r\n';

interface FakeQemu {
  path: string;
  server: Server;
  /** Lines the client sent, parsed. */
  received: Array<{ execute?: string; 'exec-oob'?: string; id?: string; arguments?: unknown }>;
  socket: Promise<Socket>;
}

const servers: Server[] = [];

/** A unix socket server that speaks as much QMP as a test needs; `answer` decides per command. */
async function fakeQemu(
  answer: (command: { execute?: string; 'exec-oob'?: string; id?: string }, socket: Socket) => void,
  greeting = GREETING,
): Promise<FakeQemu> {
  const path = join(tempDir('qmp-'), 'qmp');
  const received: FakeQemu['received'] = [];
  let accepted!: (socket: Socket) => void;
  const socket = new Promise<Socket>((resolve) => (accepted = resolve));
  const server = createServer((client) => {
    accepted(client);
    if (greeting) client.write(greeting);
    let buffer = '';
    client.on('data', (chunk) => {
      buffer += chunk.toString();
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const command = JSON.parse(buffer.slice(0, newline)) as FakeQemu['received'][number];
        buffer = buffer.slice(newline + 1);
        received.push(command);
        if (command.execute === 'qmp_capabilities')
          client.write(`{"return": {}, "id": ${JSON.stringify(command.id)}}\r\n`);
        else answer(command, client);
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, server, received, socket };
}

afterEach(() => {
  for (const server of servers.splice(0)) server.close();
  cleanupTempDirs();
});

describe('QMP client', () => {
  it('reads the greeting, leaves capabilities negotiation and matches answers to commands by id', async () => {
    const qemu = await fakeQemu((command, socket) => {
      // answer the first command last: ids, not order, pair them
      if (command.execute === 'query-status')
        setTimeout(
          () => socket.write(`{"return": {"status": "running"}, "id": "${command.id}"}\n`),
          30,
        );
      else socket.write(`{"return": {"name": "${command.execute}"}, "id": "${command.id}"}\n`);
    });
    const client = await QmpClient.connect(qemu.path);
    expect(client.version).toBe('7.2.22');
    const [status, other] = await Promise.all([
      client.execute('query-status'),
      client.execute('query-name'),
    ]);
    expect(status).toEqual({ status: 'running' });
    expect(other).toEqual({ name: 'query-name' });
    expect(qemu.received.map((c) => c.execute)).toEqual([
      'qmp_capabilities',
      'query-status',
      'query-name',
    ]);
    client.close();
  });

  it("sends arguments and rejects with QEMU's error class and description", async () => {
    const qemu = await fakeQemu((command, socket) =>
      socket.write(
        `{"error": {"class": "GenericError", "desc": "Parameter 'uri' is missing"}, "id": "${command.id}"}\n`,
      ),
    );
    const client = await QmpClient.connect(qemu.path);
    const failure = client.execute('migrate', { blk: false });
    await expect(failure).rejects.toBeInstanceOf(QmpCommandError);
    await expect(failure).rejects.toMatchObject({
      errorClass: 'GenericError',
      desc: "Parameter 'uri' is missing",
      message: expect.stringContaining('QMP migrate failed'),
    });
    expect(qemu.received[1]).toMatchObject({ execute: 'migrate', arguments: { blk: false } });
    client.close();
  });

  it('hands out events, also between a command and its answer', async () => {
    const qemu = await fakeQemu((command, socket) => {
      socket.write('{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}\n');
      socket.write(`{"return": {}, "id": "${command.id}"}\n`);
    });
    const client = await QmpClient.connect(qemu.path);
    const events: string[] = [];
    client.on('event', (event) => events.push(event.event));
    const stop = client.waitForEvent('STOP', 5_000);
    await client.execute('stop');
    expect(await stop).toEqual({ event: 'STOP', data: {} });
    expect(events).toEqual(['STOP']);
    client.close();
  });

  it('times out a command QEMU does not answer, and keeps working for the next one', async () => {
    const qemu = await fakeQemu((command, socket) => {
      if (command.execute !== 'hang') socket.write(`{"return": 7, "id": "${command.id}"}\n`);
    });
    const client = await QmpClient.connect(qemu.path);
    await expect(client.execute('hang', undefined, 50)).rejects.toThrow(
      new QmpConnectionError('QMP hang: QEMU did not answer within 50 ms'),
    );
    await expect(client.execute('query-x')).resolves.toBe(7);
    client.close();
  });

  it('rejects pending commands and emits close when the socket goes away', async () => {
    const qemu = await fakeQemu(() => undefined);
    const client = await QmpClient.connect(qemu.path);
    const pending = client.execute('query-status');
    const closed = new Promise<void>((resolve) => client.once('close', resolve));
    (await qemu.socket).destroy();
    await expect(pending).rejects.toThrow(/connection closed before QEMU answered/);
    await closed;
    expect(client.isClosed).toBe(true);
    await expect(client.execute('query-status')).rejects.toBeInstanceOf(QmpConnectionError);
  });

  it('enables out-of-band execution when QEMU offers it, and runs commands in band when it does not', async () => {
    const answer = (command: { id?: string }, socket: Socket) =>
      socket.write(`{"return": {}, "id": "${command.id}"}\n`);
    const offering = await fakeQemu(answer);
    const client = await QmpClient.connect(offering.path);
    expect(client.oob).toBe(true);
    await client.executeOob('migrate-recover', { uri: 'unix:/r' });
    expect(offering.received).toEqual([
      { execute: 'qmp_capabilities', arguments: { enable: ['oob'] }, id: expect.any(String) },
      { 'exec-oob': 'migrate-recover', arguments: { uri: 'unix:/r' }, id: expect.any(String) },
    ]);
    client.close();

    const plain = await fakeQemu(
      answer,
      '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\n',
    );
    const inBand = await QmpClient.connect(plain.path);
    expect(inBand.oob).toBe(false);
    await inBand.executeOob('migrate-recover', { uri: 'unix:/r' });
    expect(plain.received).toEqual([
      { execute: 'qmp_capabilities', id: expect.any(String) },
      { execute: 'migrate-recover', arguments: { uri: 'unix:/r' }, id: expect.any(String) },
    ]);
    inBand.close();
  });

  it('fails clearly when nothing listens or no greeting comes', async () => {
    await expect(QmpClient.connect(join(tempDir('qmp-'), 'absent'))).rejects.toThrow(
      /cannot connect to the QMP socket: ENOENT/,
    );
    const silent = await fakeQemu(() => undefined, '');
    await expect(QmpClient.connect(silent.path, 100)).rejects.toThrow(
      /no QMP greeting within 100 ms/,
    );
  });
});
