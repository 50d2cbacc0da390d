import { auditEntrySchema, type AuditEntry, type AuditEvent } from './audit-entry';
import { chainEntries, EMPTY_CHAIN, entryLine, type ChainHead } from './chain';
import { normalizeEvent, type AuditEventInput } from './normalize';
import { RotatingJsonlFile, type RotatingFileOptions } from './rotating-file';

/** An unsynced line is on disk at most this long after it was written, even with nothing after it. */
export const UNSYNCED_AT_MOST_MS = 100;

interface Pending {
  readonly event: AuditEvent;
  /** fdatasync'd before it settles (else written, and on disk with the next synced group). */
  readonly sync: boolean;
  resolve(entry: AuditEntry): void;
  reject(error: unknown): void;
}

/**
 * An audit log in JSON-lines files with its own hash chain: each line one entry (canonical JSON),
 * rotated daily and kept 30 days (RotatingJsonlFile). The chain goes on across rotation and
 * restarts: the first entry of a new file links to the last entry of the previous one.
 *
 * Appends are queued and written in groups (one write and one fdatasync for everything that
 * arrived meanwhile); each caller's promise settles once its line is on disk. An append with
 * `sync: false` settles once its line is written (in order, in the chain): it reaches the disk with
 * the next synced group, which an agent's RPC always writes before it answers (its outcome), and
 * at the latest UNSYNCED_AT_MOST_MS later (an RPC that runs for minutes has its attempt on disk
 * while it runs).
 */
export class AuditFileChain {
  private head: ChainHead = EMPTY_CHAIN;
  private readonly queue: Pending[] = [];
  private writing: Promise<void> = Promise.resolve();
  private draining = false;
  /** An fdatasync of unsynced lines is due (set by `syncTimer`). */
  private syncDue = false;
  private syncTimer: NodeJS.Timeout | undefined;
  private broken = false;
  private lastError: unknown;

  private constructor(private readonly file: RotatingJsonlFile) {}

  /** Opens the file and finds where its chain ends (the live file's last entry, else the newest rotated file's). */
  static async open(options: RotatingFileOptions): Promise<AuditFileChain> {
    const chain = new AuditFileChain(new RotatingJsonlFile(options));
    await chain.reopen();
    return chain;
  }

  get path(): string {
    return this.file.path;
  }

  /** The last entry written: its seq and hash. */
  get chainHead(): ChainHead {
    return this.head;
  }

  /** Lines were written without fdatasync and are not known to be on disk yet. */
  get pendingSync(): boolean {
    return this.file.pendingSync;
  }

  /** False while the last write failed (and until one succeeds again). */
  get healthy(): boolean {
    return !this.broken;
  }

  /** Appends one event; resolves with its entry once it is written (and, unless `sync: false`, on disk). */
  append(input: AuditEventInput, { sync = true }: { sync?: boolean } = {}): Promise<AuditEntry> {
    return new Promise((resolve, reject) => {
      this.queue.push({ event: normalizeEvent(input), sync, resolve, reject });
      if (!this.draining) this.writing = this.drain();
    });
  }

  /** Appends an event that is already normalized (e.g. one just stored in a database). */
  appendEvent(event: AuditEvent): Promise<AuditEntry> {
    return new Promise((resolve, reject) => {
      this.queue.push({ event, sync: true, resolve, reject });
      if (!this.draining) this.writing = this.drain();
    });
  }

  /** Waits for queued appends, then closes the file. */
  async close(): Promise<void> {
    while (this.draining) await this.writing;
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    await this.file.close();
  }

  /**
   * Writes queued appends in groups until none is left. `draining` is cleared in the same tick as
   * the last look at the queue, so an append never waits for a drain that has already ended.
   */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0 || this.syncDue) {
        if (this.queue.length === 0) {
          await this.syncPending();
          continue;
        }
        const batch = this.queue.splice(0, this.queue.length);
        try {
          if (this.broken) await this.reopen();
          const entries = chainEntries(
            this.head,
            batch.map((p) => p.event),
          );
          await this.file.append(entries.map(entryLine), { sync: batch.some((p) => p.sync) });
          this.head = {
            seq: entries[entries.length - 1].seq,
            hash: entries[entries.length - 1].hash,
          };
          this.broken = false;
          if (this.file.pendingSync) this.syncWithin(UNSYNCED_AT_MOST_MS);
          batch.forEach((p, i) => p.resolve(entries[i]));
        } catch (error) {
          this.broken = true;
          this.lastError = error;
          for (const p of batch) p.reject(error);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  /** Unsynced lines are written: an fdatasync follows within `ms` unless a synced group comes first. */
  private syncWithin(ms: number): void {
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.syncDue = true;
      if (!this.draining) this.writing = this.drain();
    }, ms);
    this.syncTimer.unref();
  }

  private async syncPending(): Promise<void> {
    this.syncDue = false;
    try {
      await this.file.sync();
    } catch (error) {
      // The next append reopens the file (and fails its caller if it cannot).
      this.broken = true;
      this.lastError = error;
    }
  }

  /** (Re)opens the live file and takes the chain head from what is on disk. */
  private async reopen(): Promise<void> {
    await this.file.close().catch(() => undefined);
    const last = (await this.file.open()) ?? (await this.file.lastRotatedLine());
    if (last === undefined) {
      this.head = EMPTY_CHAIN;
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(last);
    } catch {
      parsed = undefined;
    }
    const entry = auditEntrySchema.safeParse(parsed);
    if (!entry.success) {
      throw new Error(
        `cannot continue the audit chain in ${this.path}: its last line is not an audit entry; move the file aside to start a new chain`,
      );
    }
    this.head = { seq: entry.data.seq, hash: entry.data.hash };
  }

  /** The error of the last failed write, for logs. */
  get failure(): unknown {
    return this.broken ? this.lastError : undefined;
  }
}
