import {
  canonicalJson,
  chainEntries,
  EMPTY_CHAIN,
  type AuditEntry,
  type AuditEvent,
} from '@debvisor/audit';
import { Inject, Injectable } from '@nestjs/common';
import { Pool, type PoolClient, type QueryResult } from 'pg';

export const AUDIT_DATABASE_URL = Symbol('AUDIT_DATABASE_URL');

/**
 * Taken (for the transaction) by whoever appends to the audit log: every manager process on the
 * database appends under it, so that they all extend one chain.
 */
export const AUDIT_CHAIN_LOCK_KEY = 4_410_317_002;

/**
 * Appends to the audit_log table. Its own small connection pool, apart from the application's: an
 * audit write never waits for a pool that requests (which wait for the audit write) have drained.
 */
@Injectable()
export class AuditLogRepository {
  private readonly pool: Pool;

  constructor(@Inject(AUDIT_DATABASE_URL) databaseUrl: string) {
    this.pool = new Pool({
      connectionString: databaseUrl,
      max: 2,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      // A writer that cannot get the chain lock or finish in time fails (and its change is refused)
      // rather than hang; a process that died mid-transaction releases the lock soon.
      lock_timeout: 10_000,
      statement_timeout: 30_000,
      idle_in_transaction_session_timeout: 30_000,
    });
    // An idle connection that breaks is dropped by the pool; the next append opens a new one.
    this.pool.on('error', () => undefined);
  }

  /**
   * Appends events in one transaction: takes the chain lock, reads the chain head, numbers and
   * links the events after it, inserts them, commits. Answers the entries once committed; throws
   * (and stores nothing) otherwise.
   */
  async append(events: readonly AuditEvent[]): Promise<AuditEntry[]> {
    if (events.length === 0) return [];
    const client = await this.pool.connect();
    let failed: Error | undefined;
    try {
      // One round trip for BEGIN, the lock and the head (a simple query may hold several statements).
      const results = (await client.query(
        `BEGIN; SELECT pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK_KEY}); SELECT seq::text AS seq, hash FROM audit_log ORDER BY audit_log.seq DESC LIMIT 1`,
      )) as unknown as QueryResult<{ seq: string; hash: string }>[];
      const head = results[2].rows[0];
      const entries = chainEntries(
        head ? { seq: Number(head.seq), hash: head.hash } : EMPTY_CHAIN,
        events,
      );
      await insert(client, entries);
      await client.query('COMMIT');
      return entries;
    } catch (error) {
      failed = error instanceof Error ? error : new Error(String(error));
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      // A connection that failed mid-transaction is not reused.
      client.release(failed);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

async function insert(client: PoolClient, entries: readonly AuditEntry[]): Promise<void> {
  const column = <T>(pick: (entry: AuditEntry) => T) => entries.map(pick);
  await client.query(
    `INSERT INTO audit_log (seq, ts, principal, action, target, outcome, trace_id, source, details, prev_hash, hash)
     SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::varchar[], $4::varchar[], $5::varchar[], $6::varchar[],
                          $7::varchar[], $8::varchar[], $9::jsonb[], $10::varchar[], $11::varchar[])`,
    [
      column((e) => e.seq),
      column((e) => e.ts),
      column((e) => e.principal),
      column((e) => e.action),
      column((e) => e.target),
      column((e) => e.outcome),
      column((e) => e.traceId),
      column((e) => e.source),
      column((e) => canonicalJson(e.details)),
      column((e) => e.prevHash),
      column((e) => e.hash),
    ],
  );
}
