import { chainEntries, EMPTY_CHAIN, type AuditEntry, type AuditEvent } from '@debvisor/audit';
import { strictMock } from '@debvisor/testing/strict-mock';
import type { PinoLogger } from 'nestjs-pino';
import { describe, expect, it } from 'vitest';
import type { AuditFileSinkRepository } from './audit-file-sink.repository';
import type { AuditLogRepository } from './audit-log.repository';
import { MetricsService } from '../health/metrics.service';
import { AuditWriter } from './audit-writer';

const event = (n: number): AuditEvent => ({
  ts: '2026-05-01T12:00:00.000Z',
  principal: 'root@local',
  action: 'remote.create',
  target: `/remotes/r${n}`,
  outcome: 'attempt',
  traceId: null,
  source: null,
  details: { n },
});

/** An audit_log in memory whose transactions take a moment, so that callers pile up meanwhile. */
function memoryLog(options: { failOnce?: boolean } = {}) {
  const rows: AuditEntry[] = [];
  const batches: number[] = [];
  let fail = options.failOnce ?? false;
  const repository = strictMock<AuditLogRepository>('AuditLogRepository', {
    append: async (events: readonly AuditEvent[]) => {
      await new Promise((r) => setTimeout(r, 5));
      batches.push(events.length);
      if (fail) {
        fail = false;
        throw new Error('connection terminated');
      }
      const last = rows.at(-1);
      const entries = chainEntries(last ? { seq: last.seq, hash: last.hash } : EMPTY_CHAIN, events);
      rows.push(...entries);
      return entries;
    },
  });
  return { rows, batches, repository };
}

const logger = () =>
  strictMock<PinoLogger>('PinoLogger', { setContext: () => undefined, error: () => undefined });
const noFile = () =>
  strictMock<AuditFileSinkRepository>('AuditFileSinkRepository', { append: async () => undefined });

describe('AuditWriter (group commit)', () => {
  it('appends what callers hand over meanwhile in one transaction, and answers each caller its own entry', async () => {
    const { rows, batches, repository } = memoryLog();
    const writer = new AuditWriter(repository, noFile(), logger(), new MetricsService());
    const first = writer.write(event(0));
    const rest = Array.from({ length: 15 }, (_, i) => writer.write(event(i + 1)));
    const entries = await Promise.all([first, ...rest]);
    expect(batches).toEqual([1, 15]);
    expect(entries.map((e) => e.details.n)).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect(entries.map((e) => e.seq)).toEqual(rows.map((r) => r.seq));
  });

  it('fails exactly the callers of a failed transaction, and goes on with the next', async () => {
    const { rows, repository } = memoryLog({ failOnce: true });
    const writer = new AuditWriter(repository, noFile(), logger(), new MetricsService());
    const failed = writer.write(event(1));
    const later = [writer.write(event(2)), writer.write(event(3))];
    await expect(failed).rejects.toThrow('connection terminated');
    await expect(Promise.all(later)).resolves.toHaveLength(2);
    expect(rows.map((r) => [r.seq, r.details.n])).toEqual([
      [1, 2],
      [2, 3],
    ]);
  });

  it('hands committed entries to the file sink, in commit order, and flush waits for them', async () => {
    const { repository } = memoryLog();
    const copied: number[] = [];
    const file = strictMock<AuditFileSinkRepository>('AuditFileSinkRepository', {
      append: async (entries: readonly AuditEntry[]) => {
        await new Promise((r) => setTimeout(r, 5));
        copied.push(...entries.map((e) => e.seq));
      },
    });
    const writer = new AuditWriter(repository, file, logger(), new MetricsService());
    await Promise.all([1, 2, 3].map((n) => writer.write(event(n))));
    await writer.write(event(4));
    await writer.flush();
    expect(copied).toEqual([1, 2, 3, 4]);
  });
});
