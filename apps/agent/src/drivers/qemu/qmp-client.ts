import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { z } from 'zod';

/** A QMP error answer ({"error": {"class", "desc"}}): QEMU refused the command. */
export class QmpCommandError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${desc} (${errorClass})`);
    this.name = 'QmpCommandError';
  }
}

/** The monitor could not be reached, went away, or did not answer in time. */
export class QmpConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QmpConnectionError';
  }
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
}

const greetingSchema = z.object({
  QMP: z.object({
    version: z.object({ qemu: z.object({ major: z.int(), minor: z.int(), micro: z.int() }) }),
    capabilities: z.array(z.string()).optional(),
  }),
});
const messageSchema = z.union([
  z.object({ return: z.unknown(), id: z.unknown().optional() }),
  z.object({
    error: z.object({ class: z.string(), desc: z.string() }),
    id: z.unknown().optional(),
  }),
  z.object({ event: z.string(), data: z.record(z.string(), z.unknown()).optional() }),
]);

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** A QMP line longer than this is not QEMU talking. */
const MAX_LINE = 16 * 1024 * 1024;

/**
 * A client for QEMU's machine protocol on a unix socket: waits for the greeting, negotiates
 * capabilities, then runs commands (matched to answers by id, each with a timeout) and hands out
 * asynchronous events ('event'). 'close' fires once when the socket goes away, which for a QMP
 * socket of our own QEMU means the process ended (or close() was called).
 */
export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  /** QEMU's version from the greeting, e.g. "7.2.22". */
  version = '';
  /** Whether the monitor runs out-of-band commands (QEMU offered "oob" and it was enabled). */
  oob = false;
  private offersOob = false;
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closedFlag = false;
  /** Resolves when the connection is gone. */
  readonly closed: Promise<void>;
  private greeted: (ok: boolean, error?: Error) => void = () => undefined;

  private constructor(private readonly socket: Socket) {
    super();
    let onClosed!: () => void;
    this.closed = new Promise((resolve) => (onClosed = resolve));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.closedFlag = true;
      const error = new QmpConnectionError('the QMP connection closed (QEMU exited?)');
      this.greeted(false, error);
      for (const [id, pending] of this.pending) {
        clearTimeout(pending.timer);
        pending.reject(
          new QmpConnectionError(
            `QMP ${pending.command}: the connection closed before QEMU answered`,
          ),
        );
        this.pending.delete(id);
      }
      onClosed();
      this.emit('close');
    });
  }

  /** Connects, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(path: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<QmpClient> {
    const socket = createConnection(path);
    const client = new QmpClient(socket);
    const greeting = new Promise<void>((resolve, reject) => {
      client.greeted = (ok, error) => (ok ? resolve() : reject(error));
    });
    greeting.catch(() => undefined); // awaited below, unless connecting failed first
    const timer = setTimeout(() => {
      client.greeted(
        false,
        new QmpConnectionError(`QEMU sent no QMP greeting within ${timeoutMs} ms`),
      );
      socket.destroy();
    }, timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        const failed = (error: Error) =>
          reject(
            new QmpConnectionError(
              `cannot connect to the QMP socket: ${(error as NodeJS.ErrnoException).code ?? error.message}`,
              { cause: error },
            ),
          );
        socket.once('connect', () => {
          socket.off('error', failed);
          resolve();
        });
        socket.once('error', failed);
      });
      await greeting;
      await client.execute(
        'qmp_capabilities',
        client.offersOob ? { enable: ['oob'] } : undefined,
        timeoutMs,
      );
      client.oob = client.offersOob;
      return client;
    } catch (error) {
      socket.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** Runs a command; rejects with QmpCommandError when QEMU refuses it, QmpConnectionError when it does not answer. */
  execute(
    command: string,
    args?: Record<string, unknown>,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<unknown> {
    return this.send('execute', command, args, timeoutMs);
  }

  /**
   * Runs a command out of band (QMP's exec-oob): QEMU's monitor thread runs it at once, even while
   * the main loop is blocked — as it is at a post-copy target whose link broke, when a thread
   * holding the main lock waits for a page that cannot arrive. In band when QEMU offers no OOB.
   */
  executeOob(
    command: string,
    args?: Record<string, unknown>,
    timeoutMs = DEFAULT_TIMEOUT_MS,
  ): Promise<unknown> {
    return this.send(this.oob ? 'exec-oob' : 'execute', command, args, timeoutMs);
  }

  private send(
    verb: 'execute' | 'exec-oob',
    command: string,
    args: Record<string, unknown> | undefined,
    timeoutMs: number,
  ): Promise<unknown> {
    if (this.closedFlag)
      return Promise.reject(new QmpConnectionError(`QMP ${command}: the connection is closed`));
    const id = `c${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new QmpConnectionError(`QMP ${command}: QEMU did not answer within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      this.socket.write(
        JSON.stringify(
          args === undefined ? { [verb]: command, id } : { [verb]: command, arguments: args, id },
        ) + '\n',
      );
    });
  }

  /** Resolves with the first event named `name` (and matching `filter`), or undefined after `timeoutMs` or when the connection closes. */
  waitForEvent(
    name: string,
    timeoutMs: number,
    filter: (data: Record<string, unknown>) => boolean = () => true,
  ): Promise<QmpEvent | undefined> {
    return new Promise((resolve) => {
      const done = (event: QmpEvent | undefined) => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
        resolve(event);
      };
      const onEvent = (event: QmpEvent) => {
        if (event.event === name && filter(event.data)) done(event);
      };
      const onClose = () => done(undefined);
      const timer = setTimeout(() => done(undefined), timeoutMs);
      this.on('event', onEvent);
      this.on('close', onClose);
      if (this.closedFlag) done(undefined);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > MAX_LINE) {
      this.socket.destroy();
      return;
    }
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line) this.handle(line);
    }
  }

  private handle(line: string): void {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      return; // not QMP: ignore rather than tear down a VM's monitor
    }
    if (!this.version) {
      const greeting = greetingSchema.safeParse(json);
      if (greeting.success) {
        const { major, minor, micro } = greeting.data.QMP.version.qemu;
        this.version = `${major}.${minor}.${micro}`;
        this.offersOob = greeting.data.QMP.capabilities?.includes('oob') ?? false;
        this.greeted(true);
        return;
      }
    }
    const message = messageSchema.safeParse(json);
    if (!message.success) return;
    const data = message.data;
    if ('event' in data) {
      this.emit('event', { event: data.event, data: data.data ?? {} });
      return;
    }
    const id = typeof data.id === 'string' ? data.id : undefined;
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (!pending || id === undefined) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in data)
      pending.reject(new QmpCommandError(pending.command, data.error.class, data.error.desc));
    else pending.resolve(data.return);
  }
}
