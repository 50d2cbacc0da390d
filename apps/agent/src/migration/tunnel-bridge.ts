import type { Socket } from 'node:net';
/** What the bridge needs of a tunnel stream (grpc-js's client and server duplex streams both are). */
export interface FrameStream {
  on(event: string, listener: (...args: never[]) => void): unknown;
  once(event: string, listener: (...args: never[]) => void): unknown;
  write(frame: Frame): boolean;
  pause(): unknown;
  resume(): unknown;
}

/** A tunnel frame as both ends read it. */
export interface Frame {
  data?: Buffer;
  eof?: boolean;
  control?: string;
  message?: string;
}

/**
 * Carries a QEMU migration socket's bytes through a tunnel stream and back, with backpressure both
 * ways (a full side pauses the other). Control frames are handed to `onControl`.
 */
export class TunnelBridge {
  private socket: Socket | undefined;

  constructor(
    private readonly stream: FrameStream,
    private readonly onControl: (frame: Frame) => void,
    private readonly onClosed: (error: Error | undefined) => void,
  ) {
    stream.on('data', (frame: Frame) => this.fromStream(frame));
    stream.on('error', (error: Error) => this.close(error));
    stream.on('end', () => this.close(undefined));
    stream.on('close', () => this.close(undefined));
    // The opening frame was read with the stream paused; a 'data' listener alone does not resume it.
    stream.resume();
  }

  private closed = false;

  /** Starts carrying `socket`'s bytes. */
  attach(socket: Socket): void {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      if (!this.stream.write({ data: chunk })) {
        socket.pause();
        this.stream.once('drain', () => socket.resume());
      }
    });
    socket.on('end', () => {
      if (!this.closed) this.stream.write({ eof: true });
    });
    socket.on('error', () => socket.destroy());
    socket.resume();
  }

  send(control: string, message = ''): void {
    if (!this.closed) this.stream.write({ control, message });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Ends the stream and the socket. */
  close(error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.destroy();
    this.onClosed(error);
  }

  private fromStream(frame: Frame): void {
    if (frame.data && frame.data.length > 0 && this.socket) {
      if (!this.socket.write(frame.data)) {
        this.stream.pause();
        this.socket.once('drain', () => this.stream.resume());
      }
    }
    if (frame.eof) this.socket?.end();
    if (frame.control) this.onControl(frame);
  }
}
