import { createHash } from 'node:crypto';
import type { AuditEntry, AuditEvent } from './audit-entry';
import { canonicalJson } from './canonical-json';

/** The `prevHash` of a chain's first entry. */
export const GENESIS_HASH = '0'.repeat(64);

/** Where a chain ends: the last entry's sequence number and hash (0 and GENESIS_HASH when empty). */
export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

export const EMPTY_CHAIN: ChainHead = Object.freeze({ seq: 0, hash: GENESIS_HASH });

/** Exactly the fields the hash covers, so that no stray property of an object changes it. */
const HASHED_FIELDS = [
  'seq',
  'ts',
  'principal',
  'action',
  'target',
  'outcome',
  'traceId',
  'source',
  'details',
  'prevHash',
] as const;

function hashedFields(
  entry: Omit<AuditEntry, 'hash'>,
): Pick<AuditEntry, (typeof HASHED_FIELDS)[number]> {
  return Object.fromEntries(HASHED_FIELDS.map((field) => [field, entry[field]])) as Pick<
    AuditEntry,
    (typeof HASHED_FIELDS)[number]
  >;
}

/**
 * An entry's hash: SHA-256 (lower-case hex) over the canonical JSON (RFC 8785: sorted keys, no
 * whitespace) of all its fields but `hash` itself — seq, ts, principal, action, target, outcome,
 * traceId, source, details and prevHash. Including seq and prevHash makes every entry depend on
 * its place and on everything before it.
 */
export function entryHash(entry: Omit<AuditEntry, 'hash'>): string {
  return createHash('sha256')
    .update(canonicalJson(hashedFields(entry)), 'utf8')
    .digest('hex');
}

/** Places events after `head`, in order: consecutive sequence numbers, each linked to the one before. */
export function chainEntries(head: ChainHead, events: readonly AuditEvent[]): AuditEntry[] {
  const entries: AuditEntry[] = [];
  let seq = head.seq;
  let prevHash = head.hash;
  for (const event of events) {
    seq += 1;
    const unhashed = { ...event, seq, prevHash };
    const hash = entryHash(unhashed);
    entries.push({ ...unhashed, hash });
    prevHash = hash;
  }
  return entries;
}

/** One entry as one line of JSON (canonical, so every writer produces the same bytes). */
export function entryLine(entry: AuditEntry): string {
  return canonicalJson({ ...hashedFields(entry), hash: entry.hash });
}
