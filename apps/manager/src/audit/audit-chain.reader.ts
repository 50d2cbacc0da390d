import type { AuditEntry } from '@debvisor/audit';
import type { Client } from 'pg';
import { AUDIT_COLUMNS, entryOfRow, type AuditRow } from './audit-rows';

/** The whole audit_log table in chain order, read in batches as it is consumed (for the verifier). */
export async function* readAuditChain(
  client: Client,
  batchSize = 5000,
): AsyncGenerator<AuditEntry> {
  let after: number | undefined;
  for (;;) {
    const { rows } = await client.query<AuditRow>(
      after === undefined
        ? `SELECT ${AUDIT_COLUMNS} FROM audit_log ORDER BY audit_log.seq ASC LIMIT $1`
        : `SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE seq > $2 ORDER BY audit_log.seq ASC LIMIT $1`,
      after === undefined ? [batchSize] : [batchSize, after],
    );
    for (const row of rows) yield entryOfRow(row);
    if (rows.length < batchSize) return;
    after = Number(rows[rows.length - 1].seq);
  }
}
