import type { AuditEntry, AuditOutcome } from '@debvisor/audit';
import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { SYSTEM_PRINCIPAL } from './audit-actions';
import { AUDIT_COLUMNS, entryOfRow, type AuditRow } from './audit-rows';

export interface AuditFilter {
  /** ts ≥ from */
  readonly from?: Date;
  /** ts < to */
  readonly to?: Date;
  readonly principal?: string;
  /** This action and every action below it (`vm.power` matches `vm.power.start`). */
  readonly action?: string;
  /** This target and everything below it (`/remotes/dc-east` matches its VMs). */
  readonly target?: string;
  readonly outcome?: AuditOutcome;
  /**
   * The manager's own entries (principal `systemPrincipal`): all; without its routine reads (the
   * agent.call.summary entries); or none. Default: all.
   */
  readonly system?: AuditSystemEntries;
}

export const AUDIT_SYSTEM_ENTRIES = ['all', 'no-routine', 'none'] as const;
export type AuditSystemEntries = (typeof AUDIT_SYSTEM_ENTRIES)[number];

/** Reads the audit log (the API; writing is AuditLogRepository's). */
@Injectable()
export class AuditQueryRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** Newest first: up to `limit` entries with seq below `before`. */
  async page(filter: AuditFilter, limit: number, before?: number): Promise<AuditEntry[]> {
    const { where, params } = conditions(filter);
    if (before !== undefined) where.push(`seq < $${params.push(before)}`);
    const rows: AuditRow[] = await this.dataSource.query(
      `SELECT ${AUDIT_COLUMNS} FROM audit_log ${whereClause(where)} ORDER BY audit_log.seq DESC LIMIT $${params.push(limit)}`,
      params,
    );
    return rows.map(entryOfRow);
  }

  /** Oldest first (chain order), in batches, read as they are consumed. */
  async *inChainOrder(filter: AuditFilter, batchSize = 1000): AsyncGenerator<AuditEntry[]> {
    let after = 0;
    for (;;) {
      const { where, params } = conditions(filter);
      where.push(`seq > $${params.push(after)}`);
      const rows: AuditRow[] = await this.dataSource.query(
        `SELECT ${AUDIT_COLUMNS} FROM audit_log ${whereClause(where)} ORDER BY audit_log.seq ASC LIMIT $${params.push(batchSize)}`,
        params,
      );
      if (rows.length === 0) return;
      const entries = rows.map(entryOfRow);
      yield entries;
      if (rows.length < batchSize) return;
      after = entries[entries.length - 1].seq;
    }
  }
}

function conditions(filter: AuditFilter): { where: string[]; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.from) where.push(`ts >= $${params.push(filter.from)}`);
  if (filter.to) where.push(`ts < $${params.push(filter.to)}`);
  if (filter.principal) where.push(`principal = $${params.push(filter.principal)}`);
  if (filter.action)
    where.push(
      `(action = $${params.push(filter.action)} OR action LIKE $${params.push(`${escapeLike(filter.action)}.%`)})`,
    );
  if (filter.target) {
    const target = filter.target.replace(/\/+$/, '') || '/';
    if (target !== '/')
      where.push(
        `(target = $${params.push(target)} OR target LIKE $${params.push(`${escapeLike(target)}/%`)})`,
      );
  }
  if (filter.outcome) where.push(`outcome = $${params.push(filter.outcome)}`);
  if (filter.system === 'none')
    where.push(`principal IS DISTINCT FROM $${params.push(SYSTEM_PRINCIPAL)}`);
  if (filter.system === 'no-routine')
    where.push(
      `NOT (principal IS NOT DISTINCT FROM $${params.push(SYSTEM_PRINCIPAL)} AND action = 'agent.call.summary')`,
    );
  return { where, params };
}

function whereClause(where: string[]): string {
  return where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
}

/** LIKE treats % and _ as wildcards and \ as their escape. */
function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}
