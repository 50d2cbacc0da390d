import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { PATTERN_HEIGHT, PATTERN_WIDTH, TestPatternRfb } from './test-pattern-rfb';

/** Collects what the server sent until at least `length` bytes are there. */
async function readBytes(server: TestPatternRfb, received: Buffer[], length: number) {
  const deadline = Date.now() + 5_000;
  while (Buffer.concat(received).length < length) {
    if (Date.now() > deadline)
      throw new Error(`only ${Buffer.concat(received).length} of ${length} bytes came`);
    await once(server, 'data').catch(() => undefined);
  }
  return Buffer.concat(received);
}

function handshake(server: TestPatternRfb): Buffer[] {
  const received: Buffer[] = [];
  server.on('data', (chunk: Buffer) => received.push(chunk));
  server.write(Buffer.from('RFB 003.008\n', 'latin1'));
  server.write(Buffer.from([1])); // security None
  server.write(Buffer.from([1])); // ClientInit, shared
  return received;
}

describe('the sim test pattern RFB server', () => {
  it('speaks RFB 3.8 without security and names the VM in ServerInit', async () => {
    const server = new TestPatternRfb('web-01');
    const bytes = await readBytes(server, handshake(server), 12 + 2 + 4 + 24 + 6);
    expect(bytes.subarray(0, 12).toString('latin1')).toBe('RFB 003.008\n');
    expect([...bytes.subarray(12, 14)]).toEqual([1, 1]);
    expect(bytes.readUInt32BE(14)).toBe(0);
    const init = bytes.subarray(18);
    expect(init.readUInt16BE(0)).toBe(PATTERN_WIDTH);
    expect(init.readUInt16BE(2)).toBe(PATTERN_HEIGHT);
    expect(init[4]).toBe(32);
    expect(init.subarray(24, 24 + init.readUInt32BE(20)).toString()).toBe('web-01');
    server.destroy();
  });

  it('answers a full update request with colour bars in the pixel format the client set', async () => {
    const server = new TestPatternRfb('web-01');
    const received = handshake(server);
    const setFormat = Buffer.alloc(20);
    setFormat[0] = 0;
    Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0]).copy(setFormat, 4);
    server.write(setFormat); // red in the low byte, as noVNC asks
    server.write(Buffer.from([3, 0, 0, 0, 0, 0, 2, 128, 1, 224]));
    const before = 12 + 2 + 4 + 24 + 6;
    const bytes = await readBytes(
      server,
      received,
      before + 16 + PATTERN_WIDTH * PATTERN_HEIGHT * 4,
    );
    const update = bytes.subarray(before);
    expect(update[0]).toBe(0);
    expect(update.readUInt16BE(2)).toBe(1);
    expect(update.readUInt16BE(8)).toBe(PATTERN_WIDTH);
    expect(update.readInt32BE(12)).toBe(0); // Raw
    // the sixth bar (of seven) is red: low byte set, others clear
    const x = Math.floor((PATTERN_WIDTH * 5.5) / 7);
    const pixel = update.readUInt32LE(16 + x * 4);
    expect(pixel & 0xff).toBe(192);
    expect((pixel >> 8) & 0xff).toBe(0);
    expect((pixel >> 16) & 0xff).toBe(0);
    server.destroy();
  });

  it('closes the stream on a protocol violation instead of guessing', async () => {
    const server = new TestPatternRfb('web-01');
    handshake(server);
    const failed = once(server, 'error');
    server.write(Buffer.from([99]));
    const [error] = (await failed) as [Error];
    expect(error.message).toMatch(/unknown RFB client message 99/);
  });

  it('ends the stream when the VM goes away', async () => {
    const server = new TestPatternRfb('web-01');
    server.resume();
    const ended = once(server, 'end');
    server.close();
    await ended;
  });
});
