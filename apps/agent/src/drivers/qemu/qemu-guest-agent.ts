import { randomInt } from 'node:crypto';
import { createConnection, type Socket } from 'node:net';

/** The guest agent did not answer in time (or the guest has none: QEMU holds the channel, nobody reads it). */
export class GuestAgentTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no QEMU guest agent answered within ${timeoutMs} ms`);
    this.name = 'GuestAgentTimeoutError';
  }
}

/** The guest agent answered with an error, or the channel could not be used. */
export class GuestAgentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestAgentError';
  }
}

/** The guest agent's 0xFF sentinel: guest-sync-delimited's answer follows it, garbage before it is skipped. */
const SENTINEL = 0xff;
const MAX_BUFFER = 1024 * 1024;

/**
 * Runs one guest agent command over the VM's virtio-serial channel (QEMU's unix socket
 * `<runDir>/<uuid>/qga.sock`), all within `timeoutMs`: first guest-sync-delimited with a random id
 * — so that answers to earlier, timed-out commands are skipped, and a guest without an agent never
 * sees the real command queued in its channel — then the command itself. `onSynced` is called
 * when the agent answered the sync, just before the command is sent.
 */
export async function guestAgentCommand(
  socketPath: string,
  execute: string,
  timeoutMs: number,
  onSynced?: () => void,
): Promise<unknown> {
  const socket = await connect(socketPath, timeoutMs);
  const reader = new LineReader(socket);
  const timer = setTimeout(() => reader.fail(new GuestAgentTimeoutError(timeoutMs)), timeoutMs);
  try {
    const id = randomInt(1, 2 ** 31);
    socket.write(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`);
    for (;;) {
      const answer = await reader.next(true);
      if (answer.return === id) break;
    }
    onSynced?.();
    socket.write(`${JSON.stringify({ execute })}\n`);
    const answer = await reader.next(false);
    if ('error' in answer)
      throw new GuestAgentError(
        `the guest agent refused ${execute}: ${describeError(answer.error)}`,
      );
    return answer.return;
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

function connect(path: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new GuestAgentTimeoutError(timeoutMs));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new GuestAgentError(
          `the guest agent channel cannot be opened (${error.code ?? error.message}); the VM was started without one`,
        ),
      );
    });
  });
}

function describeError(error: unknown): string {
  const desc = (error as { desc?: unknown } | null)?.desc;
  return typeof desc === 'string' ? desc.slice(0, 300) : 'no reason given';
}

/** JSON answers from the channel, one per line. */
class LineReader {
  private buffer = Buffer.alloc(0);
  private waiting:
    | {
        afterSentinel: boolean;
        resolve: (value: Record<string, unknown>) => void;
        reject: (error: Error) => void;
      }
    | undefined;
  private error: Error | undefined;

  constructor(socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      if (this.buffer.length > MAX_BUFFER)
        this.fail(
          new GuestAgentError('the guest agent channel sent more than 1 MiB without an answer'),
        );
      else this.pump();
    });
    socket.on('error', () => this.fail(new GuestAgentError('the guest agent channel failed')));
    socket.on('close', () =>
      this.fail(new GuestAgentError('the guest agent channel closed (QEMU exited?)')),
    );
  }

  /** The next answer; with `afterSentinel`, only one that follows the 0xFF sentinel. */
  next(afterSentinel: boolean): Promise<Record<string, unknown>> {
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.waiting = { afterSentinel, resolve, reject };
      this.pump();
    });
  }

  fail(error: Error): void {
    this.error ??= error;
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(this.error);
  }

  private pump(): void {
    while (this.waiting) {
      if (this.waiting.afterSentinel) {
        const at = this.buffer.lastIndexOf(SENTINEL);
        if (at < 0) {
          this.buffer = Buffer.alloc(0); // all before the sentinel is stale
          return;
        }
        this.buffer = this.buffer.subarray(at + 1);
        this.waiting.afterSentinel = false;
      }
      const end = this.buffer.indexOf(0x0a);
      if (end < 0) return;
      const line = this.buffer.subarray(0, end).toString('utf8').trim();
      this.buffer = this.buffer.subarray(end + 1);
      if (!line) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue; // noise from before a sync
      }
      if (
        typeof parsed !== 'object' ||
        parsed === null ||
        !('return' in parsed || 'error' in parsed)
      )
        continue;
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting.resolve(parsed as Record<string, unknown>);
    }
  }
}
