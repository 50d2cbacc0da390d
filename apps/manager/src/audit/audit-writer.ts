import type { AuditEntry, AuditEvent } from '@debvisor/audit';
import {
  BeforeApplicationShutdown,
  Injectable,
  OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { MetricsService } from '../health/metrics.service';
import { AuditFileSinkRepository } from './audit-file-sink.repository';
import { AuditLogRepository } from './audit-log.repository';

interface Pending {
  readonly event: AuditEvent;
  resolve(entry: AuditEntry): void;
  reject(error: unknown): void;
}

/** At most this many entries go into one transaction. */
const MAX_BATCH = 1000;

/**
 * Group commit for the audit log. Callers hand over events and wait for their own entry's commit;
 * while one transaction is under way, new events queue, and the next transaction appends all of
 * them at once (up to MAX_BATCH). One transaction at a time per process, and the chain lock in the
 * database (AuditLogRepository) keeps the processes of one database on one chain. A failed
 * transaction fails exactly the callers whose events it held; the next one starts afresh.
 */
@Injectable()
export class AuditWriter implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly queue: Pending[] = [];
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  /** Copies to the file sink, in commit order. */
  private fileWrites: Promise<void> = Promise.resolve();

  constructor(
    private readonly log: AuditLogRepository,
    private readonly file: AuditFileSinkRepository,
    private readonly logger: PinoLogger,
    private readonly metrics: MetricsService,
  ) {
    logger.setContext(AuditWriter.name);
  }

  /** Opens the file sink at start-up, so that a bad DEBVISOR_AUDIT_FILE stops the manager with its reason. */
  async onModuleInit(): Promise<void> {
    await this.file.open();
  }

  /** Resolves with the entry once it is committed; rejects when it could not be stored. */
  write(event: AuditEvent): Promise<AuditEntry> {
    return new Promise((resolve, reject) => {
      this.queue.push({ event, resolve, reject });
      if (!this.draining) this.drained = this.drain();
    });
  }

  /** Resolves when everything queued so far is committed (or failed). */
  async flush(): Promise<void> {
    while (this.draining) await this.drained;
    await this.fileWrites;
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.flush();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.flush();
    await this.log.close();
    await this.file.close();
  }

  /** Copies committed entries to the file sink (when configured), one batch after the other. */
  private copyToFile(entries: readonly AuditEntry[]): void {
    this.fileWrites = this.fileWrites
      .then(() => this.file.append(entries))
      .catch((error: unknown) => {
        this.metrics.auditWriteFailed('file', entries.length);
        this.logger.error(
          { err: error },
          'cannot write the audit file (DEBVISOR_AUDIT_FILE); the database has the entries',
        );
      });
  }

  /** `draining` is cleared in the same tick as the last look at the queue: no event is left behind. */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        let entries: AuditEntry[];
        try {
          entries = await this.log.append(batch.map((p) => p.event));
        } catch (error) {
          this.metrics.auditWriteFailed('database', batch.length);
          for (const p of batch) p.reject(error);
          continue;
        }
        batch.forEach((p, i) => p.resolve(entries[i]));
        this.copyToFile(entries);
        // Let the callers just answered queue what they write next, so that it joins the next group.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.draining = false;
    }
  }
}
