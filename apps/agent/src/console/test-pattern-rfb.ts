import { Duplex } from 'node:stream';

/** The pattern's screen size. */
export const PATTERN_WIDTH = 640;
export const PATTERN_HEIGHT = 480;
/** How often the pattern's ticker bar moves while the viewer asks for incremental updates. */
const TICK_MS = 500;
/** Height of the ticker bar at the bottom of the screen. */
const TICKER_HEIGHT = 32;

/** SMPTE-like colour bars: white, yellow, cyan, green, magenta, red, blue. */
const BARS: ReadonlyArray<readonly [number, number, number]> = [
  [192, 192, 192],
  [192, 192, 0],
  [0, 192, 192],
  [0, 192, 0],
  [192, 0, 192],
  [192, 0, 0],
  [0, 0, 192],
];

interface PixelFormat {
  bitsPerPixel: number;
  bigEndian: boolean;
  trueColour: boolean;
  redMax: number;
  greenMax: number;
  blueMax: number;
  redShift: number;
  greenShift: number;
  blueShift: number;
}

type Phase = 'version' | 'security' | 'init' | 'normal' | 'closed';

/**
 * A minimal RFB 3.8 server (RFC 6143) that shows a generated test pattern: what the sim driver
 * offers as a VM's console, so that a demo without QEMU has one. No security (it is reached only
 * through the agent's authenticated stream), Raw encoding, 32 bits per pixel in the client's
 * channel order. Keyboard, pointer and clipboard input is read and ignored. A protocol violation
 * closes the stream.
 */
export class TestPatternRfb extends Duplex {
  private input = Buffer.alloc(0);
  private phase: Phase = 'version';
  private format: PixelFormat = {
    bitsPerPixel: 32,
    bigEndian: false,
    trueColour: true,
    redMax: 255,
    greenMax: 255,
    blueMax: 255,
    redShift: 16,
    greenShift: 8,
    blueShift: 0,
  };
  private tick = 0;
  private timer: NodeJS.Timeout | undefined;
  private pending = false;
  private lastRect: { key: string; bytes: Buffer } | undefined;

  constructor(private readonly name: string) {
    super();
    this.push(Buffer.from('RFB 003.008\n', 'latin1'));
  }

  /** The VM's screen went away (it stopped or left the node): the stream ends. */
  close(): void {
    if (this.phase === 'closed') return;
    this.stop();
    this.push(null);
  }

  override _read(): void {
    // Output is pushed as requests arrive.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error) => void): void {
    this.input = Buffer.concat([this.input, chunk]);
    try {
      while (this.phase !== 'closed' && this.step());
      done();
    } catch (error) {
      this.phase = 'closed';
      done(error as Error);
    }
  }

  override _final(done: () => void): void {
    this.stop();
    this.push(null);
    done();
  }

  override _destroy(error: Error | null, done: (error: Error | null) => void): void {
    this.stop();
    done(error);
  }

  /** Handles one complete message from the input; false when more bytes are needed. */
  private step(): boolean {
    switch (this.phase) {
      case 'version': {
        if (this.input.length < 12) return false;
        const version = this.consume(12).toString('latin1');
        if (!/^RFB 003\.00[78]\n$/.test(version)) throw new Error('unsupported RFB version');
        this.push(Buffer.from([1, 1])); // one security type: None
        this.phase = 'security';
        return true;
      }
      case 'security': {
        if (this.input.length < 1) return false;
        if (this.consume(1)[0] !== 1) throw new Error('unsupported RFB security type');
        this.push(u32(0)); // SecurityResult OK
        this.phase = 'init';
        return true;
      }
      case 'init': {
        if (this.input.length < 1) return false;
        this.consume(1); // shared flag: every viewer sees the same pattern
        const name = Buffer.from(this.name, 'utf8');
        this.push(
          Buffer.concat([
            u16(PATTERN_WIDTH),
            u16(PATTERN_HEIGHT),
            this.formatBytes(),
            u32(name.length),
            name,
          ]),
        );
        this.phase = 'normal';
        return true;
      }
      case 'normal':
        return this.message();
      case 'closed':
        return false;
    }
  }

  private message(): boolean {
    if (this.input.length < 1) return false;
    const type = this.input[0];
    switch (type) {
      case 0: // SetPixelFormat
        if (this.input.length < 20) return false;
        this.setFormat(this.consume(20).subarray(4));
        return true;
      case 2: {
        // SetEncodings: Raw is always allowed, so the list does not matter
        if (this.input.length < 4) return false;
        const count = this.input.readUInt16BE(2);
        if (this.input.length < 4 + 4 * count) return false;
        this.consume(4 + 4 * count);
        return true;
      }
      case 3: {
        // FramebufferUpdateRequest
        if (this.input.length < 10) return false;
        const incremental = this.consume(10)[1] !== 0;
        if (!incremental) this.sendRect(0, 0, PATTERN_WIDTH, PATTERN_HEIGHT);
        else this.scheduleTick();
        return true;
      }
      case 4: // KeyEvent
        if (this.input.length < 8) return false;
        this.consume(8);
        return true;
      case 5: // PointerEvent
        if (this.input.length < 6) return false;
        this.consume(6);
        return true;
      case 6: {
        // ClientCutText
        if (this.input.length < 8) return false;
        const length = this.input.readUInt32BE(4);
        if (length > 1024 * 1024) throw new Error('clipboard text too long');
        if (this.input.length < 8 + length) return false;
        this.consume(8 + length);
        return true;
      }
      default:
        throw new Error(`unknown RFB client message ${type}`);
    }
  }

  /** An incremental request is answered when the ticker next moves. */
  private scheduleTick(): void {
    if (this.pending) return;
    this.pending = true;
    this.timer = setTimeout(() => {
      this.pending = false;
      this.timer = undefined;
      if (this.phase !== 'normal' || this.destroyed) return;
      this.tick++;
      this.sendRect(0, PATTERN_HEIGHT - TICKER_HEIGHT, PATTERN_WIDTH, TICKER_HEIGHT);
    }, TICK_MS);
  }

  private stop(): void {
    this.phase = 'closed';
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private sendRect(x: number, y: number, width: number, height: number): void {
    // The same picture is drawn once: a viewer asking for full frames again gets the cached one.
    const key = `${x},${y},${width},${height},${this.tick},${JSON.stringify(this.format)}`;
    if (this.lastRect?.key === key) {
      this.push(this.lastRect.bytes);
      return;
    }
    const header = Buffer.concat([
      Buffer.from([0, 0]),
      u16(1),
      u16(x),
      u16(y),
      u16(width),
      u16(height),
      Buffer.from([0, 0, 0, 0]), // Raw
    ]);
    const pixels = Buffer.alloc(width * height * 4);
    for (let row = 0; row < height; row++) {
      for (let column = 0; column < width; column++) {
        const [r, g, b] = this.colourAt(x + column, y + row);
        this.writePixel(pixels, (row * width + column) * 4, r, g, b);
      }
    }
    const bytes = Buffer.concat([header, pixels]);
    this.lastRect = { key, bytes };
    this.push(bytes);
  }

  /** Colour bars above, a grey ramp below, and a ticker bar that moves on every tick. */
  private colourAt(x: number, y: number): readonly [number, number, number] {
    if (y >= PATTERN_HEIGHT - TICKER_HEIGHT) {
      const position = ((this.tick * 40) % PATTERN_WIDTH) | 0;
      return x >= position && x < position + 80 ? [255, 255, 255] : [16, 16, 16];
    }
    if (y < (PATTERN_HEIGHT * 2) / 3) return BARS[Math.floor((x * BARS.length) / PATTERN_WIDTH)]!;
    const level = Math.round((x * 255) / (PATTERN_WIDTH - 1));
    return [level, level, level];
  }

  private writePixel(buffer: Buffer, offset: number, r: number, g: number, b: number): void {
    const f = this.format;
    const value =
      ((Math.round((r * f.redMax) / 255) << f.redShift) |
        (Math.round((g * f.greenMax) / 255) << f.greenShift) |
        (Math.round((b * f.blueMax) / 255) << f.blueShift)) >>>
      0;
    if (f.bigEndian) buffer.writeUInt32BE(value, offset);
    else buffer.writeUInt32LE(value, offset);
  }

  private setFormat(bytes: Buffer): void {
    const format: PixelFormat = {
      bitsPerPixel: bytes[0]!,
      bigEndian: bytes[2] !== 0,
      trueColour: bytes[3] !== 0,
      redMax: bytes.readUInt16BE(4),
      greenMax: bytes.readUInt16BE(6),
      blueMax: bytes.readUInt16BE(8),
      redShift: bytes[10]!,
      greenShift: bytes[11]!,
      blueShift: bytes[12]!,
    };
    if (format.bitsPerPixel !== 32 || !format.trueColour)
      throw new Error('the test pattern speaks 32-bit true colour only');
    if ([format.redShift, format.greenShift, format.blueShift].some((shift) => shift > 24))
      throw new Error('pixel format shift out of range');
    this.format = format;
  }

  private formatBytes(): Buffer {
    const f = this.format;
    const bytes = Buffer.alloc(16);
    bytes[0] = f.bitsPerPixel;
    bytes[1] = 24;
    bytes[2] = f.bigEndian ? 1 : 0;
    bytes[3] = 1;
    bytes.writeUInt16BE(f.redMax, 4);
    bytes.writeUInt16BE(f.greenMax, 6);
    bytes.writeUInt16BE(f.blueMax, 8);
    bytes[10] = f.redShift;
    bytes[11] = f.greenShift;
    bytes[12] = f.blueShift;
    return bytes;
  }

  private consume(count: number): Buffer {
    const head = this.input.subarray(0, count);
    this.input = this.input.subarray(count);
    return head;
  }
}

function u16(value: number): Buffer {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(value);
  return bytes;
}

function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value);
  return bytes;
}
