import { auditEntrySchema, type AuditEntry } from './audit-entry';
import { entryHash, GENESIS_HASH } from './chain';

/** What went wrong with a chain, named by the first entry (in sequence order) it concerns. */
export type ChainProblemKind = 'edited' | 'deleted' | 'inserted' | 'reordered' | 'malformed';

export interface ChainProblem {
  readonly kind: ChainProblemKind;
  /** The sequence number of the first edited, deleted, inserted or reordered entry (null for an unreadable one). */
  readonly seq: number | null;
  /** 1-based position in what was read (the line number of a file) where the problem showed. */
  readonly position: number;
  readonly message: string;
}

export interface ChainReport {
  readonly ok: boolean;
  /** Entries read up to the problem (all of them when ok). */
  readonly entries: number;
  readonly firstSeq: number | null;
  readonly lastSeq: number | null;
  /** The hash of the last entry that was verified. */
  readonly headHash: string | null;
  /** The first entry's prevHash when the chain read does not start at its beginning (a rotated file, an export slice). */
  readonly startsAfter: string | null;
  /** Places where sequence numbers jump (only with allowGaps). */
  readonly gaps: number;
  readonly problem?: ChainProblem;
}

export interface VerifyOptions {
  /**
   * The chain must start with seq 1 and the genesis hash (a whole database table). Otherwise the
   * first entry's prevHash is taken as given (a file after rotation, a time-range export).
   */
  readonly fromGenesis?: boolean;
  /** Sequence numbers may jump (a filtered export): links are checked only between consecutive entries. */
  readonly allowGaps?: boolean;
  /** How many entries to read ahead when explaining a problem (default 1000). */
  readonly lookahead?: number;
}

/** A line of a JSON-lines file that is not JSON at all. */
export class UnreadableLine {
  constructor(readonly reason: string) {}
}

/** How far around an entry's place to look for the sequence number its hash was made for. */
const SEARCH_RADIUS = 1000;

/**
 * Walks a chain in stored order (a table by seq, a file by line) and stops at the first problem,
 * naming the first edited, deleted, inserted or reordered entry by its sequence number:
 *
 *  - edited: an entry's fields no longer give its hash (or its link was changed and re-hashed);
 *  - deleted: sequence numbers jump and the missing ones are nowhere ahead;
 *  - inserted: an entry the chain skips over — its successor links to its predecessor, or its
 *    successors were renumbered to make room (their hashes were made for lower numbers);
 *  - reordered: an entry's hash was made for another place (a higher sequence number), or missing
 *    numbers turn up later in the file.
 *
 * What no hash chain can show: entries cut off at the end, or a chain rewritten from some point on
 * with every hash recomputed. Compare the head (lastSeq, headHash) with an earlier export or the
 * file sink for that.
 */
export async function verifyChain(
  source: AsyncIterable<unknown> | Iterable<unknown>,
  options: VerifyOptions = {},
): Promise<ChainReport> {
  const reader = new Lookahead(source);
  const lookahead = options.lookahead ?? 1000;
  let position = 0;
  let count = 0;
  let gaps = 0;
  let first: AuditEntry | undefined;
  let prev: AuditEntry | undefined;
  let prevprev: AuditEntry | undefined;

  const report = (problem?: ChainProblem): ChainReport => ({
    ok: problem === undefined,
    entries: count,
    firstSeq: first?.seq ?? null,
    lastSeq: prev?.seq ?? null,
    headHash: prev?.hash ?? null,
    startsAfter:
      first && !options.fromGenesis && first.prevHash !== GENESIS_HASH ? first.prevHash : null,
    gaps,
    problem,
  });

  for (;;) {
    const item = await reader.next();
    if (item.done) return report();
    position += 1;
    const parsed = parseEntry(item.value);
    if (typeof parsed === 'string') {
      return report({
        kind: 'malformed',
        seq: seqOf(item.value),
        position,
        message: `entry ${position} is not an audit entry: ${parsed}`,
      });
    }
    const e = parsed;
    const ahead = async () =>
      (await reader.peek(lookahead))
        .map(parseEntry)
        .filter((x): x is AuditEntry => typeof x !== 'string');
    const problem = await check(e, prev, prevprev, position, options, ahead);
    if (problem) return report(problem);
    if (prev && e.seq > prev.seq + 1) gaps += 1;
    first ??= e;
    prevprev = prev;
    prev = e;
    count += 1;
  }
}

async function check(
  e: AuditEntry,
  prev: AuditEntry | undefined,
  prevprev: AuditEntry | undefined,
  position: number,
  options: VerifyOptions,
  ahead: () => Promise<AuditEntry[]>,
): Promise<ChainProblem | undefined> {
  const selfOk = entryHash(e) === e.hash;
  const problem = (kind: ChainProblemKind, seq: number, message: string): ChainProblem => ({
    kind,
    seq,
    position,
    message,
  });

  if (!prev) {
    if (options.fromGenesis) {
      if (e.seq > 1)
        return problem(
          'deleted',
          1,
          range(1, e.seq - 1, 'missing (deleted): the chain starts at seq ' + e.seq),
        );
      if (e.seq < 1)
        return problem(
          'inserted',
          e.seq,
          `entry seq ${e.seq} was inserted: a chain starts at seq 1`,
        );
      if (e.prevHash !== GENESIS_HASH) {
        return problem(
          'edited',
          1,
          `entry seq 1 was edited: its prevHash is not the genesis hash (64 zeros)${selfOk ? ', and its hash was recomputed' : ''}`,
        );
      }
    }
    return selfOk ? undefined : unhashed(e, undefined, undefined, ahead, problem);
  }

  if (e.seq === prev.seq) {
    return problem(
      'inserted',
      e.seq,
      e.hash === prev.hash
        ? `entry seq ${e.seq} appears twice`
        : `a second, different entry with seq ${e.seq} was inserted`,
    );
  }
  if (e.seq < prev.seq)
    return problem(
      'reordered',
      e.seq,
      `entry seq ${e.seq} is out of order: it comes after seq ${prev.seq}`,
    );

  if (e.seq > prev.seq + 1) {
    const missing = prev.seq + 1;
    if (options.allowGaps)
      return selfOk ? undefined : unhashed(e, undefined, undefined, ahead, problem);
    if (!selfOk && e.prevHash === prev.hash && entryHash({ ...e, seq: missing }) === e.hash) {
      return problem(
        'edited',
        missing,
        `entry seq ${missing} was edited: its seq was changed to ${e.seq}`,
      );
    }
    if ((await ahead()).some((later) => later.seq === missing)) {
      return problem(
        'reordered',
        missing,
        `entry seq ${missing} is out of order: it comes later, after seq ${e.seq}`,
      );
    }
    return problem('deleted', missing, range(missing, e.seq - 1, 'missing (deleted)'));
  }

  const linkOk = e.prevHash === prev.hash;
  if (selfOk && linkOk) return undefined;
  if (selfOk) {
    if (prevprev && e.prevHash === prevprev.hash) {
      return problem(
        'inserted',
        prev.seq,
        `entry seq ${prev.seq} was inserted: seq ${e.seq} links past it to seq ${prevprev.seq}`,
      );
    }
    return problem(
      'edited',
      prev.seq,
      `entry seq ${e.seq} does not link to seq ${prev.seq}: seq ${prev.seq} was edited and its hash recomputed, or the link of seq ${e.seq} was edited`,
    );
  }
  return unhashed(e, prev, linkOk, ahead, problem);
}

/** An entry whose fields do not give its hash: edited, moved here, renumbered after an insertion, or itself inserted. */
async function unhashed(
  e: AuditEntry,
  prev: AuditEntry | undefined,
  linkOk: boolean | undefined,
  ahead: () => Promise<AuditEntry[]>,
  problem: (kind: ChainProblemKind, seq: number, message: string) => ChainProblem,
): Promise<ChainProblem> {
  const madeFor = seqHashedFor(e);
  if (madeFor !== undefined && madeFor < e.seq) {
    return problem(
      'inserted',
      madeFor,
      `${range(madeFor, e.seq - 1, 'inserted')}: the entry now at seq ${e.seq} was renumbered (its hash was made for seq ${madeFor})`,
    );
  }
  if (madeFor !== undefined && madeFor > e.seq) {
    return problem(
      'reordered',
      e.seq,
      `entry seq ${e.seq} was reordered: the entry stored there is the one made for seq ${madeFor}`,
    );
  }
  if (prev) {
    const [next] = await ahead();
    if (next && next.seq === e.seq + 1 && next.prevHash === prev.hash) {
      return problem(
        'inserted',
        e.seq,
        `entry seq ${e.seq} was inserted: seq ${next.seq} links past it to seq ${prev.seq}`,
      );
    }
  }
  return problem(
    'edited',
    e.seq,
    linkOk === false
      ? `entry seq ${e.seq} was edited: neither its fields nor its prevHash match (expected the hash of seq ${prev!.seq})`
      : `entry seq ${e.seq} was edited: its fields do not match its hash`,
  );
}

/** The sequence number (near the entry's own) for which its other fields give its hash, if any. */
function seqHashedFor(e: AuditEntry): number | undefined {
  for (let distance = 1; distance <= SEARCH_RADIUS; distance += 1) {
    for (const seq of [e.seq - distance, e.seq + distance]) {
      if (seq >= 0 && entryHash({ ...e, seq }) === e.hash) return seq;
    }
  }
  return undefined;
}

function range(from: number, to: number, what: string): string {
  return from === to ? `entry seq ${from} is ${what}` : `entries seq ${from} to ${to} are ${what}`;
}

function parseEntry(value: unknown): AuditEntry | string {
  if (value instanceof UnreadableLine) return value.reason;
  const parsed = auditEntrySchema.safeParse(value);
  if (parsed.success) return parsed.data as AuditEntry;
  return parsed.error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.join('.') || '(entry)'}: ${issue.message}`)
    .join('; ');
}

function seqOf(value: unknown): number | null {
  const seq = (value as { seq?: unknown } | null)?.seq;
  return typeof seq === 'number' && Number.isSafeInteger(seq) ? seq : null;
}

/** An iterator with a look-ahead buffer. */
class Lookahead {
  private readonly iterator: AsyncIterator<unknown> | Iterator<unknown>;
  private readonly buffer: unknown[] = [];
  private ended = false;

  constructor(source: AsyncIterable<unknown> | Iterable<unknown>) {
    this.iterator =
      Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  }

  async next(): Promise<IteratorResult<unknown>> {
    if (this.buffer.length > 0) return { done: false, value: this.buffer.shift() };
    if (this.ended) return { done: true, value: undefined };
    const result = await this.iterator.next();
    if (result.done) this.ended = true;
    return result;
  }

  async peek(count: number): Promise<unknown[]> {
    while (!this.ended && this.buffer.length < count) {
      const result = await this.iterator.next();
      if (result.done) this.ended = true;
      else this.buffer.push(result.value);
    }
    return this.buffer.slice(0, count);
  }
}
