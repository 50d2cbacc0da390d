import { describe, expect, it } from 'vitest';
import type { AuditEntry, AuditEvent } from './audit-entry';
import { chainEntries, EMPTY_CHAIN, entryHash, GENESIS_HASH } from './chain';
import { verifyChain } from './verify';

function events(count: number): AuditEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    ts: new Date(Date.UTC(2026, 4, 1, 12, 0, i)).toISOString(),
    principal: `user-${i % 3}@local`,
    action: 'vm.power.start',
    target: `/remotes/dc-east/vms/${i}`,
    outcome: 'success',
    traceId: `trace-${i}`,
    source: '127.0.0.1',
    details: { n: i },
  }));
}

const chain = (count = 10) => chainEntries(EMPTY_CHAIN, events(count));
const rehash = (entry: Omit<AuditEntry, 'hash'>): AuditEntry => ({
  ...entry,
  hash: entryHash(entry),
});

describe('chainEntries', () => {
  it('numbers entries from the head and links each to the one before', () => {
    const entries = chain(3);
    expect(entries.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(entries[0].prevHash).toBe(GENESIS_HASH);
    expect(entries[1].prevHash).toBe(entries[0].hash);
    expect(entries[2].prevHash).toBe(entries[1].hash);
    const more = chainEntries({ seq: 3, hash: entries[2].hash }, events(1));
    expect(more[0]).toMatchObject({ seq: 4, prevHash: entries[2].hash });
  });

  it('hashes the place of an entry too: the same event at another seq has another hash', () => {
    const [a] = chainEntries(EMPTY_CHAIN, events(1));
    const [b] = chainEntries({ seq: 1, hash: GENESIS_HASH }, events(1));
    expect(a.hash).not.toBe(b.hash);
  });
});

describe('verifyChain', () => {
  it('accepts an intact chain and reports its head', async () => {
    const entries = chain(10);
    await expect(verifyChain(entries, { fromGenesis: true })).resolves.toMatchObject({
      ok: true,
      entries: 10,
      firstSeq: 1,
      lastSeq: 10,
      headHash: entries[9].hash,
    });
  });

  it('names an edited entry', async () => {
    const entries = chain();
    entries[4] = { ...entries[4], principal: 'mallory@local' };
    const report = await verifyChain(entries, { fromGenesis: true });
    expect(report).toMatchObject({ ok: false, problem: { kind: 'edited', seq: 5 } });
    expect(report.problem!.message).toContain('seq 5 was edited');
  });

  it('names an entry that was edited and re-hashed (its successor no longer links to it)', async () => {
    const entries = chain();
    entries[4] = rehash({ ...entries[4], outcome: 'failure' });
    await expect(verifyChain(entries, { fromGenesis: true })).resolves.toMatchObject({
      problem: { kind: 'edited', seq: 5 },
    });
  });

  it('names a deleted entry', async () => {
    const entries = chain();
    entries.splice(6, 1);
    const report = await verifyChain(entries, { fromGenesis: true });
    expect(report).toMatchObject({ ok: false, problem: { kind: 'deleted', seq: 7 } });
    expect(report.problem!.message).toBe('entry seq 7 is missing (deleted)');
  });

  it('names deleted first entries of a whole chain', async () => {
    await expect(verifyChain(chain().slice(2), { fromGenesis: true })).resolves.toMatchObject({
      problem: { kind: 'deleted', seq: 1 },
    });
  });

  it('names a forged entry inserted by renumbering the entries after it', async () => {
    const entries = chain();
    const forged = rehash({
      ...events(1)[0],
      principal: 'mallory@local',
      seq: 4,
      prevHash: entries[2].hash,
    });
    const renumbered = entries.slice(3).map((e) => ({ ...e, seq: e.seq + 1 }));
    const report = await verifyChain([...entries.slice(0, 3), forged, ...renumbered], {
      fromGenesis: true,
    });
    expect(report).toMatchObject({ ok: false, problem: { kind: 'inserted', seq: 4 } });
  });

  it('names a forged entry inserted without a valid hash', async () => {
    const entries = chain();
    const forged = { ...entries[3], principal: 'mallory@local' };
    const renumbered = entries.slice(3).map((e) => ({ ...e, seq: e.seq + 1 }));
    await expect(
      verifyChain([...entries.slice(0, 3), forged, ...renumbered], { fromGenesis: true }),
    ).resolves.toMatchObject({
      problem: { kind: 'inserted', seq: 4 },
    });
  });

  it('names the first of two entries whose contents were swapped', async () => {
    const entries = chain();
    const a = entries[2];
    const b = entries[7];
    entries[2] = { ...b, seq: a.seq };
    entries[7] = { ...a, seq: b.seq };
    await expect(verifyChain(entries, { fromGenesis: true })).resolves.toMatchObject({
      problem: { kind: 'reordered', seq: 3 },
    });
  });

  it('names lines that were moved in a file', async () => {
    const entries = chain();
    [entries[3], entries[4]] = [entries[4], entries[3]];
    const report = await verifyChain(entries);
    expect(report).toMatchObject({ problem: { kind: 'reordered', seq: 4, position: 4 } });
  });

  it('names a duplicated line', async () => {
    const entries = chain();
    entries.splice(5, 0, entries[4]);
    await expect(verifyChain(entries)).resolves.toMatchObject({
      problem: { kind: 'inserted', seq: 5 },
    });
  });

  it('takes the first prevHash as given for a slice, unless asked to start at the genesis', async () => {
    const slice = chain().slice(4);
    await expect(verifyChain(slice)).resolves.toMatchObject({
      ok: true,
      firstSeq: 5,
      startsAfter: chain()[3].hash,
    });
    await expect(verifyChain(slice, { fromGenesis: true })).resolves.toMatchObject({
      ok: false,
      problem: { kind: 'deleted', seq: 1 },
    });
  });

  it('checks a filtered export entry by entry when gaps are allowed, and still finds an edit', async () => {
    const entries = chain(20).filter((e) => e.seq % 3 === 0 || e.seq === 10);
    await expect(verifyChain(entries, { allowGaps: true })).resolves.toMatchObject({
      ok: true,
      gaps: expect.any(Number),
    });
    entries[3] = { ...entries[3], action: 'remote.delete' };
    await expect(verifyChain(entries, { allowGaps: true })).resolves.toMatchObject({
      ok: false,
      problem: { kind: 'edited', seq: entries[3].seq },
    });
  });

  it('reports an entry that is not an audit entry at all', async () => {
    const entries: unknown[] = chain(3);
    entries[1] = { seq: 2, hello: 'world' };
    await expect(verifyChain(entries)).resolves.toMatchObject({
      ok: false,
      problem: { kind: 'malformed', seq: 2, position: 2 },
    });
  });

  it('verifies an async source of many entries', async () => {
    const entries = chainEntries(EMPTY_CHAIN, events(5000));
    async function* source() {
      yield* entries;
    }
    await expect(verifyChain(source(), { fromGenesis: true })).resolves.toMatchObject({
      ok: true,
      entries: 5000,
    });
  });
});
