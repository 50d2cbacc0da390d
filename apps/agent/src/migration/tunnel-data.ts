import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/**
 * The migration data path: one TLS connection per QEMU migration channel (the main channel and
 * each multifd channel) on the agent's own port, negotiated with ALPN debvisor-migration-data/1.
 * The client opens it with a 40-byte header — "DVMD", version 1, the channel's index, two zero
 * bytes, then a one-time token the target handed out on the migration's authenticated control
 * stream — and the target answers one byte, 'K' (then the bytes flow both ways, untouched) or 'E'
 * followed by a reason (then it closes). No per-chunk framing: large writes, TCP's own back-pressure.
 */
export const DATA_MAGIC = Buffer.from('DVMD', 'latin1');
export const DATA_VERSION = 1;
export const DATA_TOKEN_BYTES = 32;
export const DATA_HEADER_BYTES = 8 + DATA_TOKEN_BYTES;
/** How long a data connection may take to send its header. */
export const DATA_HEADER_TIMEOUT_MS = 10_000;
/** At most this many channels per migration (the main one and up to 15 multifd channels). */
export const MAX_DATA_CHANNELS = 16;

export interface DataHeader {
  index: number;
  token: Buffer;
}

export function encodeDataHeader(header: DataHeader): Buffer {
  const bytes = Buffer.alloc(DATA_HEADER_BYTES);
  DATA_MAGIC.copy(bytes, 0);
  bytes.writeUInt8(DATA_VERSION, 4);
  bytes.writeUInt8(header.index, 5);
  header.token.copy(bytes, 8);
  return bytes;
}

/** The header's fields, or why it is not one. */
export function decodeDataHeader(bytes: Buffer): DataHeader | string {
  if (bytes.length !== DATA_HEADER_BYTES) return 'a data connection header is 40 bytes';
  if (!bytes.subarray(0, 4).equals(DATA_MAGIC)) return 'not a migration data connection';
  if (bytes.readUInt8(4) !== DATA_VERSION)
    return `data connection version ${bytes.readUInt8(4)} is not supported (1 is)`;
  const index = bytes.readUInt8(5);
  if (index >= MAX_DATA_CHANNELS || bytes.readUInt16BE(6) !== 0)
    return 'the data connection header is malformed';
  return { index, token: Buffer.from(bytes.subarray(8)) };
}

/** One-time tokens of a migration's data channels, one per channel. */
export class DataTokens {
  private readonly tokens: (Buffer | undefined)[];

  constructor(count: number) {
    this.tokens = Array.from({ length: count }, () => randomBytes(DATA_TOKEN_BYTES));
  }

  /** Hex, in channel order, for the control stream. */
  toWire(): string[] {
    return this.tokens.map((token) => token?.toString('hex') ?? '');
  }

  /** Uses up channel `index`'s token when `token` is it; any other token is refused. */
  claim(index: number, token: Buffer): boolean {
    const expected = this.tokens[index];
    if (!expected || token.length !== expected.length || !timingSafeEqual(expected, token))
      return false;
    this.tokens[index] = undefined;
    return true;
  }

  /** Voids every token not used yet. */
  revoke(): void {
    this.tokens.fill(undefined);
  }
}

/** Reads exactly `length` bytes from a paused socket, within `timeoutMs`; the rest stays unread. */
export function readExactly(socket: Socket, length: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(
      () => finish(new Error(`nothing complete arrived within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < length) return;
      socket.pause();
      if (buffered.length > length) socket.unshift(buffered.subarray(length));
      finish(undefined, buffered.subarray(0, length));
    };
    const onEnd = (): void => finish(new Error('the connection closed'));
    const finish = (error: Error | undefined, bytes?: Buffer): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onEnd);
      if (error) reject(error);
      else resolve(bytes!);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onEnd);
    socket.resume();
  });
}

/**
 * How much one direction of a spliced connection may hold in user space before it stops reading.
 * Above a stream's 16 KiB high-water mark on purpose: the agent is a hop that must be scheduled, and
 * on a busy host a hop that stops reading at 16 KiB stalls QEMU every time the event loop is late.
 * Not much more: every byte held between QEMU and the slowest hop is one QEMU counts as sent, and at
 * the switchover the paused guest waits for all of them. 4 MiB (held at both agents, on the main
 * channel and each multifd channel: 24 MiB) carried no more than 1 MiB in the benchmark; 256 KiB
 * cost the receiving agent a third more CPU per byte (it stops and starts reading that much more
 * often). The kernel's own TCP buffers between the agents (up to 4 MiB each way per connection on
 * loopback, measured with `ss`) hold more than this, and no Node API bounds them.
 */
export const SPLICE_BUDGET_BYTES = 1024 * 1024;

/**
 * Joins two sockets both ways until both have closed; resolves with the error that broke it, if
 * any. Each direction reads on while the other side's write buffer holds less than `budget`
 * bytes, then waits for it to drain (back-pressure, bounded memory). An end is passed on as an end
 * (what was written still arrives); an error or a close without an end cuts the other side off.
 *
 * Written for CPU per byte, which on a busy host decides the speed:
 * - A TLS socket is written one chunk at a time: its batched write (writev) first copies the
 *   whole batch into one buffer, where a single chunk is encrypted straight from its own memory.
 * - A plain socket is corked until the event loop's next turn: TLS hands over its 16 KiB records
 *   one by one, and one writev then carries all that one turn decrypted.
 */
export function splice(
  a: Socket | TLSSocket,
  b: Socket | TLSSocket,
  budget = SPLICE_BUDGET_BYTES,
): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let failure: Error | undefined;
    let closed = 0;
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      let ended = false;
      let corked = false;
      const batches = !isTls(to);
      if (!batches) writeOneChunkAtATime(to);
      from.on('data', (chunk: Buffer) => {
        if (batches && !corked) {
          corked = true;
          to.cork();
          setImmediate(() => {
            corked = false;
            to.uncork();
          });
        }
        if (!to.write(chunk) && to.writableLength >= budget) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.on('error', (error: Error) => {
        failure ??= error;
        to.destroy();
      });
      from.on('end', () => {
        ended = true;
        to.end();
      });
      from.on('close', () => {
        if (!ended) to.destroy();
        if (++closed === 2) resolve(failure);
      });
    }
    a.resume();
    b.resume();
  });
}

function isTls(socket: Socket | TLSSocket): socket is TLSSocket {
  return (socket as TLSSocket).encrypted === true;
}

/**
 * Node's Writable hands buffered chunks to `_writev` when a stream has one; without it, it writes
 * them in order, one per completed write. (TLSSocket's writev copies the batch into one buffer
 * before encrypting it: 12 % of the sending agent's CPU in the profile.)
 */
function writeOneChunkAtATime(socket: TLSSocket): void {
  (socket as unknown as { _writev: unknown })._writev = null;
}
