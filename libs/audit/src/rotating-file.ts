import { createReadStream, type Stats } from 'node:fs';
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

/** The time, behind a seam so that rotation can be tested with a fake clock. */
export interface FileClock {
  now(): Date;
}

export const systemFileClock: FileClock = { now: () => new Date() };

export interface RotatingFileOptions {
  /** The live file, e.g. /var/log/debvisor/rpc-audit.log. */
  readonly path: string;
  /** Rotated files older than this many days are deleted (default 30). */
  readonly retentionDays?: number;
  readonly clock?: FileClock;
  /** Mode of a newly created file (default 0640). */
  readonly mode?: number;
  /** fdatasync after every append (default true): an acknowledged line survives a power loss. */
  readonly durable?: boolean;
}

/** A rotated file's name: `<live file>.<YYYY-MM-DD>` (UTC day of its lines), `.2`, `.3` … if taken. */
const ROTATED = /^(\d{4}-\d{2}-\d{2})(?:\.(\d+))?$/;
const DAY_MS = 86_400_000;

/**
 * A JSON-lines file that is appended to and rotated daily: when the first append of a new (UTC) day
 * comes, the live file is renamed to `<path>.<day of its lines>` and a new one begun; rotated files
 * whose day lies more than `retentionDays` back are deleted. One process writes a file at a time.
 */
export class RotatingJsonlFile {
  private readonly retentionDays: number;
  private readonly clock: FileClock;
  private readonly mode: number;
  private readonly durable: boolean;
  private handle: FileHandle | undefined;
  /** The UTC day (YYYY-MM-DD) of the lines in the live file; undefined while it is empty. */
  private day: string | undefined;
  /** Lines were appended without fdatasync since the last one (see append). */
  private unsynced = false;

  constructor(private readonly options: RotatingFileOptions) {
    this.retentionDays = options.retentionDays ?? 30;
    this.clock = options.clock ?? systemFileClock;
    this.mode = options.mode ?? 0o640;
    this.durable = options.durable ?? true;
  }

  get path(): string {
    return this.options.path;
  }

  /**
   * Opens (creating the directory and file if needed). A torn last line — a write cut short by a
   * crash, never acknowledged — is cut off. Answers the last complete line, if any.
   */
  async open(): Promise<string | undefined> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o750 });
    this.handle = await open(this.path, 'a+', this.mode);
    const info = await this.handle.stat();
    const { first, last, completeBytes } = await edgeLines(this.handle, info.size);
    if (completeBytes < info.size) await this.handle.truncate(completeBytes);
    this.day = completeBytes === 0 ? undefined : (dayOfLine(first) ?? utcDay(info.mtime));
    return last;
  }

  /**
   * Appends complete lines (rotating first when the day changed). `sync: false` leaves out the
   * fdatasync (when the file is durable): the lines are written, and on disk with the next synced
   * append (fdatasync covers every write before it), the next rotation or close.
   */
  async append(lines: readonly string[], { sync = true }: { sync?: boolean } = {}): Promise<void> {
    if (lines.length === 0) return;
    if (!this.handle) throw new Error(`${this.path} is not open`);
    const today = utcDay(this.clock.now());
    if (this.day !== undefined && this.day !== today) await this.rotate();
    this.day ??= today;
    await this.handle.appendFile(`${lines.join('\n')}\n`, 'utf8');
    if (!this.durable) return;
    if (sync) {
      await this.handle.datasync();
      this.unsynced = false;
    } else this.unsynced = true;
  }

  /** Puts lines appended without fdatasync on disk (nothing to do when there are none). */
  async sync(): Promise<void> {
    if (!this.unsynced || !this.handle) return;
    await this.handle.datasync();
    this.unsynced = false;
  }

  /** Lines were appended without fdatasync and are not known to be on disk yet. */
  get pendingSync(): boolean {
    return this.unsynced;
  }

  /** The newest rotated file's last complete line: where a chain goes on when the live file is empty. */
  async lastRotatedLine(): Promise<string | undefined> {
    const rotated = await this.rotatedFiles();
    for (const file of rotated.reverse()) {
      const handle = await open(file.path, 'r');
      try {
        const { last } = await edgeLines(handle, (await handle.stat()).size);
        if (last !== undefined) return last;
      } finally {
        await handle.close();
      }
    }
    return undefined;
  }

  /** Rotated files (oldest first), as `<path>.<day>[.<n>]`. */
  async rotatedFiles(): Promise<{ path: string; day: string }[]> {
    const prefix = `${basename(this.path)}.`;
    let names: string[];
    try {
      names = await readdir(dirname(this.path));
    } catch {
      return [];
    }
    return names
      .filter((name) => name.startsWith(prefix) && ROTATED.test(name.slice(prefix.length)))
      .map((name) => {
        const match = ROTATED.exec(name.slice(prefix.length))!;
        return { path: join(dirname(this.path), name), day: match[1], n: Number(match[2] ?? 1) };
      })
      .sort((a, b) => a.day.localeCompare(b.day) || a.n - b.n)
      .map(({ path, day }) => ({ path, day }));
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    if (handle && this.unsynced) await handle.datasync().catch(() => undefined);
    this.unsynced = false;
    await handle?.close();
  }

  private async rotate(): Promise<void> {
    const day = this.day!;
    // the renamed file's last lines reach the disk too: later fdatasyncs cover the new file only
    if (this.unsynced) await this.handle!.datasync();
    this.unsynced = false;
    await this.handle!.close();
    this.handle = undefined;
    let target = `${this.path}.${day}`;
    for (let n = 2; await exists(target); n += 1) target = `${this.path}.${day}.${n}`;
    await rename(this.path, target);
    this.handle = await open(this.path, 'a+', this.mode);
    this.day = undefined;
    await this.prune();
  }

  /** Deletes rotated files whose day is more than retentionDays before today. */
  async prune(): Promise<string[]> {
    const oldestKept = utcDay(new Date(this.clock.now().getTime() - this.retentionDays * DAY_MS));
    const deleted: string[] = [];
    for (const file of await this.rotatedFiles()) {
      if (file.day < oldestKept) {
        await unlink(file.path).catch(() => undefined);
        deleted.push(file.path);
      }
    }
    return deleted;
  }
}

/** Every line of a JSON-lines file, parsed; a line that is not JSON comes as an error string. */
export async function* readJsonLines(
  path: string,
): AsyncGenerator<{ line: number; value: unknown } | { line: number; error: string }> {
  const lines = createInterface({
    input: createReadStream(path, { encoding: 'utf8' }),
    crlfDelay: Infinity,
  });
  let number = 0;
  for await (const text of lines) {
    number += 1;
    if (text.trim() === '') continue;
    try {
      yield { line: number, value: JSON.parse(text) as unknown };
    } catch (error) {
      yield { line: number, error: `line ${number} is not JSON: ${(error as Error).message}` };
    }
  }
}

export function utcDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function dayOfLine(line: string | undefined): string | undefined {
  if (!line) return undefined;
  try {
    const ts = (JSON.parse(line) as { ts?: unknown }).ts;
    return typeof ts === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(ts) ? ts.slice(0, 10) : undefined;
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    (s: Stats) => s.isFile() || s.isDirectory(),
    () => false,
  );
}

/**
 * The first and last complete lines of a file (reading only its ends), and how many bytes its
 * complete lines take (less than its size when the last line lacks its newline).
 */
async function edgeLines(
  handle: FileHandle,
  size: number,
): Promise<{ first?: string; last?: string; completeBytes: number }> {
  if (size === 0) return { completeBytes: 0 };
  const chunk = 64 * 1024;
  const head = Buffer.alloc(Math.min(size, chunk));
  await handle.read(head, 0, head.length, 0);
  const firstEnd = head.indexOf(0x0a);
  const first = firstEnd >= 0 ? head.subarray(0, firstEnd).toString('utf8') : undefined;

  // Walk back from the end to the last newline, then to the one before it.
  let lastNewline = -1;
  let previousNewline = -1;
  let buffer = Buffer.alloc(0);
  let bufferStart = size;
  while (bufferStart > 0 && previousNewline < 0) {
    const start = Math.max(0, bufferStart - chunk);
    const piece = Buffer.alloc(bufferStart - start);
    await handle.read(piece, 0, piece.length, start);
    buffer = Buffer.concat([piece, buffer]);
    bufferStart = start;
    if (lastNewline < 0) {
      const at = buffer.lastIndexOf(0x0a);
      if (at >= 0) lastNewline = bufferStart + at;
    }
    if (lastNewline > bufferStart) {
      const at = buffer.lastIndexOf(0x0a, lastNewline - bufferStart - 1);
      if (at >= 0) previousNewline = bufferStart + at;
    }
  }
  if (lastNewline < 0) return { first, completeBytes: 0 };
  const end = lastNewline + 1;
  const lastStart = previousNewline + 1;
  const last = buffer.subarray(lastStart - bufferStart, end - 1 - bufferStart).toString('utf8');
  return { first, last: last.trim() === '' ? undefined : last, completeBytes: end };
}
