import { AuditFileChain, type AuditEntry } from '@debvisor/audit';
import { Inject, Injectable } from '@nestjs/common';

export const AUDIT_FILE = Symbol('AUDIT_FILE');

/**
 * The optional JSON-lines copy of the audit log (DEBVISOR_AUDIT_FILE): every entry the database
 * took, in the same order, in a file chain of its own (own seq and hashes, so that the file can be
 * verified alone, whatever other manager processes write), rotated daily and kept 30 days.
 */
@Injectable()
export class AuditFileSinkRepository {
  private chain: Promise<AuditFileChain> | undefined;

  constructor(@Inject(AUDIT_FILE) private readonly path: string | undefined) {}

  /** Opens the file (at start-up, so that a bad path stops the manager with a clear message). */
  async open(): Promise<void> {
    if (this.path) await this.file();
  }

  /** Appends entries just committed to the database (their events; the file numbers and links them itself). Nothing without a file. */
  async append(entries: readonly AuditEntry[]): Promise<void> {
    if (!this.path || entries.length === 0) return;
    const chain = await this.file();
    await Promise.all(
      entries.map(({ seq: _seq, prevHash: _prev, hash: _hash, ...event }) =>
        chain.appendEvent(event),
      ),
    );
  }

  async close(): Promise<void> {
    const chain = this.chain;
    this.chain = undefined;
    await (await chain?.catch(() => undefined))?.close();
  }

  private file(): Promise<AuditFileChain> {
    this.chain ??= AuditFileChain.open({ path: this.path!, mode: 0o640 });
    return this.chain;
  }
}
