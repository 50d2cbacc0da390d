import { cleanupTempDirs, tempDir } from '@debvisor/testing';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GuestAgentError, GuestAgentTimeoutError, guestAgentCommand } from './qemu-guest-agent';

afterAll(() => cleanupTempDirs());

/** A stand-in for the guest's end of the channel: `answer` sees each command line and writes what it likes. */
async function fakeAgent(
  answer: (command: { execute: string; arguments?: { id?: number } }, socket: Socket) => void,
): Promise<{ path: string; received: string[]; server: Server }> {
  const path = join(tempDir('dv-qga-'), 'qga.sock');
  const received: string[] = [];
  const server = createServer((socket) => {
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      let end: number;
      while ((end = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        received.push(line);
        answer(JSON.parse(line), socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { path, received, server };
}

describe('QEMU guest agent client', () => {
  it('syncs past stale output, then runs the command and answers its result', async () => {
    const agent = await fakeAgent((command, socket) => {
      if (command.execute === 'guest-sync-delimited') {
        // leftovers of an earlier session, a stale sync answer, then the real one
        socket.write(Buffer.from('{"return": 3}\n\xff{"return": 1}\n', 'latin1'));
        socket.write(
          Buffer.concat([
            Buffer.from([0xff]),
            Buffer.from(`{"return": ${command.arguments!.id}}\n`),
          ]),
        );
      } else socket.write('{"return": 2}\n');
    });
    let synced = false;
    await expect(
      guestAgentCommand(agent.path, 'guest-fsfreeze-freeze', 2_000, () => (synced = true)),
    ).resolves.toBe(2);
    expect(synced).toBe(true);
    expect(agent.received.map((line) => JSON.parse(line).execute)).toEqual([
      'guest-sync-delimited',
      'guest-fsfreeze-freeze',
    ]);
    agent.server.close();
  });

  it('gives up after the timeout when nobody answers, never sending the command itself', async () => {
    const agent = await fakeAgent(() => undefined);
    let synced = false;
    const error = await guestAgentCommand(
      agent.path,
      'guest-fsfreeze-freeze',
      300,
      () => (synced = true),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GuestAgentTimeoutError);
    expect((error as Error).message).toBe('no QEMU guest agent answered within 300 ms');
    expect(synced).toBe(false);
    expect(agent.received.map((line) => JSON.parse(line).execute)).toEqual([
      'guest-sync-delimited',
    ]);
    agent.server.close();
  });

  it("passes the agent's refusal on", async () => {
    const agent = await fakeAgent((command, socket) => {
      if (command.execute === 'guest-sync-delimited')
        socket.write(
          Buffer.concat([
            Buffer.from([0xff]),
            Buffer.from(`{"return": ${command.arguments!.id}}\n`),
          ]),
        );
      else
        socket.write(
          '{"error": {"class": "GenericError", "desc": "The command guest-fsfreeze-freeze has been disabled for this instance"}}\n',
        );
    });
    const error = await guestAgentCommand(agent.path, 'guest-fsfreeze-freeze', 2_000).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GuestAgentError);
    expect((error as Error).message).toBe(
      'the guest agent refused guest-fsfreeze-freeze: The command guest-fsfreeze-freeze has been disabled for this instance',
    );
    agent.server.close();
  });

  it('says so when the VM has no guest agent channel at all', async () => {
    const error = await guestAgentCommand(
      join(tempDir('dv-qga-'), 'missing.sock'),
      'guest-fsfreeze-thaw',
      1_000,
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GuestAgentError);
    expect((error as Error).message).toMatch(
      /^the guest agent channel cannot be opened \(ENOENT\)/,
    );
  });
});
