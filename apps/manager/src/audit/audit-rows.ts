import type { AuditDetails, AuditEntry, AuditOutcome } from '@debvisor/audit';

/**
 * The audit_log columns, selected so that each row maps to an AuditEntry (seq as text: it is a
 * bigint). Order by `audit_log.seq`: a bare `seq` would be this text alias.
 */
export const AUDIT_COLUMNS =
  'seq::text AS seq, ts, principal, action, target, outcome, trace_id, source, details, prev_hash, hash';

export interface AuditRow {
  seq: string;
  ts: Date;
  principal: string | null;
  action: string;
  target: string | null;
  outcome: string;
  trace_id: string | null;
  source: string | null;
  details: AuditDetails;
  prev_hash: string;
  hash: string;
}

/** A stored row as the entry it was hashed as. */
export function entryOfRow(row: AuditRow): AuditEntry {
  return {
    seq: Number(row.seq),
    ts: new Date(row.ts).toISOString(),
    principal: row.principal,
    action: row.action,
    target: row.target,
    outcome: row.outcome as AuditOutcome,
    traceId: row.trace_id,
    source: row.source,
    details: row.details,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}
