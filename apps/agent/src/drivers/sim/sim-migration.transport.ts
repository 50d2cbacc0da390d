import { rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { MigrationAddress } from '../hypervisor.driver';
import {
  acceptSchema,
  encodeFrame,
  FrameReader,
  helloSchema,
  parsePayload,
  refuseSchema,
  type Frame,
  type FrameType,
  type Hello,
} from './sim-migration.wire';

/** How long a source waits for the destination to take its connection. */
export const CONNECT_TIMEOUT_MS = 15_000;

/** What the destination does with the stream; the endpoint answers the source from it. */
export interface IncomingHandler {
  /** The source's first frame: accept (telling whether post-copy is enabled here) or refuse with a reason. */
  hello(hello: Hello): { postcopy: boolean } | { refuse: string };
  pages(bytes: number): void;
  /** The source switched to post-copy; a reason refuses it (the migration fails). */
  postcopy(): string | undefined;
  /** All state arrived; a reason refuses the end (the migration fails). */
  end(): string | undefined;
  /** The connection ended (called once); `reason` describes how, for a migration that had not ended. */
  closed(reason: string): void;
}

/**
 * The destination's listener: a unix socket (tunnel transport; the agent's tunnel connects to it)
 * or TCP on an address of this host (direct transport). It takes ONE connection, as QEMU's
 * migrate-incoming does, and stops listening then.
 */
export class SimIncomingEndpoint {
  private socket: Socket | undefined;
  private done = false;

  private constructor(
    private readonly server: Server,
    readonly address: Extract<MigrationAddress, { kind: 'unix' | 'tcp' }>,
    private readonly handler: IncomingHandler,
  ) {
    server.on('connection', (socket) => this.take(socket));
  }

  static async listen(
    where: { kind: 'unix'; path: string } | { kind: 'tcp'; host: string },
    handler: IncomingHandler,
  ): Promise<SimIncomingEndpoint> {
    const server = createServer();
    server.maxConnections = 1;
    if (where.kind === 'unix') await rm(where.path, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(
        where.kind === 'unix' ? { path: where.path } : { host: where.host, port: 0 },
        () => {
          server.off('error', reject);
          resolve();
        },
      );
    });
    const bound = server.address();
    const address: SimIncomingEndpoint['address'] =
      where.kind === 'unix'
        ? { kind: 'unix', path: where.path }
        : {
            kind: 'tcp',
            host: where.host,
            port: typeof bound === 'object' && bound ? bound.port : 0,
          };
    return new SimIncomingEndpoint(server, address, handler);
  }

  /** Stops listening and drops the connection (the handler hears nothing more). */
  async close(): Promise<void> {
    this.done = true;
    this.socket?.destroy();
    await this.stopListening();
  }

  private take(socket: Socket): void {
    if (this.socket || this.done) {
      socket.destroy();
      return;
    }
    this.socket = socket;
    void this.stopListening();
    const reader = new FrameReader();
    let helloSeen = false;
    let ended = false;
    let failure: string | undefined;
    const fail = (reason: string) => {
      failure ??= reason;
      socket.destroy();
    };
    socket.on('data', (chunk: Buffer) => {
      if (this.done) return;
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (error) {
        fail((error as Error).message);
        return;
      }
      for (const frame of frames) {
        if (socket.destroyed || failure) return;
        if (!helloSeen) {
          const hello = frame.type === 'H' ? parsePayload(helloSchema, frame.payload) : undefined;
          if (!hello) return fail('not a migration stream (no valid hello)');
          helloSeen = true;
          const answer = this.handler.hello(hello);
          if ('refuse' in answer) {
            failure = answer.refuse;
            socket.end(encodeFrame('X', { reason: answer.refuse }));
            return;
          }
          socket.write(encodeFrame('A', answer));
          continue;
        }
        if (ended) continue;
        switch (frame.type) {
          case 'R':
            this.handler.pages(frame.payload.length);
            break;
          case 'P': {
            const refusal = this.handler.postcopy();
            if (refusal) {
              failure = refusal;
              socket.end(encodeFrame('X', { reason: refusal }));
              return;
            }
            socket.write(encodeFrame('K', 'P'));
            break;
          }
          case 'E': {
            ended = true;
            const refusal = this.handler.end();
            if (refusal) {
              failure = refusal;
              socket.end(encodeFrame('X', { reason: refusal }));
              return;
            }
            socket.write(encodeFrame('K', 'E'));
            break;
          }
          default:
            return fail(`unexpected frame ${frame.type} from the source`);
        }
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      failure ??= `the migration connection failed (${error.code ?? 'error'})`;
    });
    socket.on('close', () => {
      if (this.done) return;
      this.done = true;
      this.handler.closed(
        failure ??
          (ended
            ? 'the source closed the stream after its end'
            : 'the source dropped the migration connection'),
      );
    });
  }

  private stopListening(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** What the source hears back from the destination. */
export interface OutgoingHandler {
  accepted(answer: { postcopy: boolean }): void;
  acknowledged(what: 'P' | 'E'): void;
  /** The connection ended (called once, never after destroy()): the destination's refusal or what happened. */
  closed(reason: string): void;
}

/** The source's side of the stream: connects, says hello and sends frames. */
export class SimOutgoingStream {
  private destroyed = false;

  private constructor(private readonly socket: Socket) {}

  /** Connects and sends the hello; rejects with a reason a person can act on when the destination cannot be reached. */
  static async connect(
    address: MigrationAddress,
    hello: Hello,
    handler: OutgoingHandler,
  ): Promise<SimOutgoingStream> {
    if (address.kind === 'libvirt')
      throw new Error('the sim driver migrates over a unix socket or TCP, not to a libvirt URI');
    const socket =
      address.kind === 'unix'
        ? connect({ path: address.path })
        : connect({ host: address.host, port: address.port });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new Error(
            `the destination did not take the connection within ${CONNECT_TIMEOUT_MS / 1000} s`,
          ),
        );
      }, CONNECT_TIMEOUT_MS);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          new Error(`cannot connect to the migration destination (${error.code ?? error.message})`),
        );
      });
    });
    const stream = new SimOutgoingStream(socket);
    stream.listen(handler);
    socket.write(encodeFrame('H', hello));
    return stream;
  }

  /** Resolves once the frame was handed to the kernel (or the connection is gone: its close tells). */
  send(type: Extract<FrameType, 'R' | 'P' | 'E'>, payload?: Buffer): Promise<void> {
    if (this.destroyed || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.socket.write(encodeFrame(type, payload), () => resolve()));
  }

  /** Ends the stream after the destination acknowledged its end. */
  end(): void {
    this.socket.end();
  }

  /** Drops the connection at once (cancel); the handler hears nothing more. */
  destroy(): void {
    this.destroyed = true;
    this.socket.destroy();
  }

  private listen(handler: OutgoingHandler): void {
    const reader = new FrameReader();
    let refusal: string | undefined;
    let failure: string | undefined;
    this.socket.on('data', (chunk: Buffer) => {
      if (this.destroyed) return;
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (error) {
        failure ??= `the destination answered garbage: ${(error as Error).message}`;
        this.socket.destroy();
        return;
      }
      for (const frame of frames) {
        if (frame.type === 'A') {
          const answer = parsePayload(acceptSchema, frame.payload);
          if (answer) handler.accepted(answer);
        } else if (frame.type === 'X') {
          refusal =
            parsePayload(refuseSchema, frame.payload)?.reason ??
            'the destination refused the migration';
        } else if (frame.type === 'K') {
          const what = frame.payload.toString('ascii');
          if (what === 'P' || what === 'E') handler.acknowledged(what);
        }
      }
    });
    this.socket.on('error', (error: NodeJS.ErrnoException) => {
      failure ??= `the migration connection failed (${error.code ?? 'error'})`;
    });
    this.socket.on('close', () => {
      if (this.destroyed) return;
      this.destroyed = true;
      handler.closed(refusal ?? failure ?? 'the destination closed the migration connection');
    });
  }
}
