import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AuditFileChain, UNSYNCED_AT_MOST_MS } from './file-chain';
import type { AuditEventInput } from './normalize';
import { RotatingJsonlFile } from './rotating-file';
import { verifyFiles } from './verify-files';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function logDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'debvisor-audit-'));
  dirs.push(dir);
  return dir;
}

/** A clock that only moves when told. */
function fakeClock(start: string) {
  let now = new Date(start).getTime();
  return {
    now: () => new Date(now),
    advanceDays: (days: number) => (now += days * 86_400_000),
    advanceMs: (ms: number) => (now += ms),
  };
}

function event(clock: { now(): Date }, n: number): AuditEventInput {
  return {
    at: clock.now(),
    action: 'rpc.VmService.StartVm',
    outcome: 'success',
    principal: 'manager',
    target: `/vms/${n}`,
    traceId: `t${n}`,
    source: '127.0.0.1',
    details: { n },
  };
}

describe('RotatingJsonlFile', () => {
  it('renames the file with the day of its lines when a new day begins, and keeps 30 days', async () => {
    const dir = logDir();
    const path = join(dir, 'rpc-audit.log');
    const clock = fakeClock('2026-05-01T23:59:00Z');
    const file = new RotatingJsonlFile({ path, clock, durable: false });
    await file.open();
    await file.append(['{"ts":"2026-05-01T23:59:00.000Z","n":1}']);
    clock.advanceMs(120_000); // 2026-05-02 00:01
    await file.append(['{"ts":"2026-05-02T00:01:00.000Z","n":2}']);
    expect(readdirSync(dir).sort()).toEqual(['rpc-audit.log', 'rpc-audit.log.2026-05-01']);
    expect(readFileSync(`${path}.2026-05-01`, 'utf8')).toBe(
      '{"ts":"2026-05-01T23:59:00.000Z","n":1}\n',
    );
    expect(readFileSync(path, 'utf8')).toBe('{"ts":"2026-05-02T00:01:00.000Z","n":2}\n');

    // One line a day for 40 more days: only the rotated files of the last 30 days stay.
    for (let day = 0; day < 40; day += 1) {
      clock.advanceDays(1);
      await file.append([`{"ts":"${clock.now().toISOString()}","day":${day}}`]);
    }
    await file.close();
    const rotated = readdirSync(dir)
      .filter((name) => name !== 'rpc-audit.log')
      .sort();
    // Today is 2026-06-11; rotated days 2026-05-12 … 2026-06-10 (30 files) remain.
    expect(clock.now().toISOString().slice(0, 10)).toBe('2026-06-11');
    expect(rotated).toHaveLength(30);
    expect(rotated[0]).toBe('rpc-audit.log.2026-05-12');
    expect(rotated.at(-1)).toBe('rpc-audit.log.2026-06-10');
  });

  it('does not rotate an empty file, and knows the day of a file it finds at start', async () => {
    const dir = logDir();
    const path = join(dir, 'audit.log');
    writeFileSync(path, '{"ts":"2026-04-30T10:00:00.000Z"}\n');
    const clock = fakeClock('2026-05-01T08:00:00Z');
    const file = new RotatingJsonlFile({ path, clock, durable: false });
    await file.open();
    await file.append(['{"ts":"2026-05-01T08:00:00.000Z"}']);
    await file.close();
    expect(readFileSync(`${path}.2026-04-30`, 'utf8')).toContain('2026-04-30T10');
    expect(readFileSync(path, 'utf8')).toBe('{"ts":"2026-05-01T08:00:00.000Z"}\n');
  });
});

describe('AuditFileChain', () => {
  it('keeps one chain across rotation and restarts, verifiable over the rotated and live files', async () => {
    const dir = logDir();
    const path = join(dir, 'rpc-audit.log');
    const clock = fakeClock('2026-05-01T22:00:00Z');
    let chain = await AuditFileChain.open({ path, clock, durable: false });
    await Promise.all([1, 2, 3].map((n) => chain.append(event(clock, n))));
    clock.advanceMs(3 * 3_600_000); // the next day
    await chain.append(event(clock, 4));
    await chain.close();

    chain = await AuditFileChain.open({ path, clock, durable: false });
    expect(chain.chainHead.seq).toBe(4);
    const fifth = await chain.append(event(clock, 5));
    await chain.close();
    expect(fifth.seq).toBe(5);

    const files = [`${path}.2026-05-01`, path];
    await expect(verifyFiles(files)).resolves.toMatchObject({
      ok: true,
      entries: 5,
      firstSeq: 1,
      lastSeq: 5,
    });
    // The live file alone verifies too, starting after the rotated file's last entry.
    await expect(verifyFiles([path])).resolves.toMatchObject({
      ok: true,
      firstSeq: 4,
      startsAfter: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
  });

  it('writes an unsynced append in the chain at once and puts it on disk with the next synced group, or at rotation', async () => {
    const dir = logDir();
    const path = join(dir, 'rpc-audit.log');
    const clock = fakeClock('2026-05-01T23:00:00Z');
    const file = new RotatingJsonlFile({ path, clock });
    await file.open();
    await file.append(['{"ts":"2026-05-01T23:00:00.000Z","n":1}'], { sync: false });
    expect(file.pendingSync).toBe(true);
    expect(readFileSync(path, 'utf8')).toContain('"n":1');
    await file.append(['{"ts":"2026-05-01T23:00:00.000Z","n":2}']);
    expect(file.pendingSync).toBe(false);
    await file.append(['{"ts":"2026-05-01T23:00:00.000Z","n":3}'], { sync: false });
    clock.advanceMs(3_600_000); // the next day: the rotated file is synced before it is left
    await file.append(['{"ts":"2026-05-02T00:00:00.000Z","n":4}'], { sync: false });
    expect(readFileSync(`${path}.2026-05-01`, 'utf8')).toContain('"n":3');
    expect(file.pendingSync).toBe(true);
    await file.close();
    expect(file.pendingSync).toBe(false);

    // Attempts unsynced, outcomes synced, interleaved: one verifiable chain, every entry in it.
    const chainPath = join(dir, 'chain.log');
    const chain = await AuditFileChain.open({ path: chainPath, clock });
    const written = await Promise.all(
      [1, 2, 3, 4].map((n) => chain.append(event(clock, n), { sync: n % 2 === 0 })),
    );
    await chain.close();
    expect(written.map((entry) => entry.seq)).toEqual([1, 2, 3, 4]);
    await expect(verifyFiles([chainPath])).resolves.toMatchObject({ ok: true, entries: 4 });
  });

  it('puts an unsynced append on disk by itself soon after, when nothing synced follows', async () => {
    const clock = fakeClock('2026-05-01T12:00:00Z');
    const chain = await AuditFileChain.open({ path: join(logDir(), 'chain.log'), clock });
    await chain.append(event(clock, 1), { sync: false });
    expect(chain.pendingSync).toBe(true);
    await vi.waitFor(() => expect(chain.pendingSync).toBe(false), {
      timeout: UNSYNCED_AT_MOST_MS * 50,
    });
    await chain.append(event(clock, 2), { sync: false });
    await chain.append(event(clock, 3));
    expect(chain.pendingSync).toBe(false);
    await chain.close();
  });

  it('goes on from the newest rotated file when the live file is new', async () => {
    const dir = logDir();
    const path = join(dir, 'a.log');
    const clock = fakeClock('2026-05-01T12:00:00Z');
    const first = await AuditFileChain.open({ path, clock, durable: false });
    await first.append(event(clock, 1));
    clock.advanceDays(1);
    await first.append(event(clock, 2)); // rotates
    await first.close();
    rmSync(path);
    const second = await AuditFileChain.open({ path, clock, durable: false });
    expect(second.chainHead.seq).toBe(1);
    await second.append(event(clock, 3));
    await second.close();
    // The deleted live file took seq 2 with it; the chain goes on from the rotated file.
    await expect(verifyFiles([`${path}.2026-05-01`, path])).resolves.toMatchObject({
      ok: true,
      lastSeq: 2,
    });
  });

  it('cuts off a torn last line (a write cut short by a crash) and goes on from the last complete entry', async () => {
    const dir = logDir();
    const path = join(dir, 'a.log');
    const clock = fakeClock('2026-05-01T12:00:00Z');
    const chain = await AuditFileChain.open({ path, clock, durable: false });
    await chain.append(event(clock, 1));
    await chain.close();
    appendFileSync(path, '{"seq":2,"ts":"2026-05-0');
    const again = await AuditFileChain.open({ path, clock, durable: false });
    const entry = await again.append(event(clock, 2));
    await again.close();
    expect(entry.seq).toBe(2);
    await expect(verifyFiles([path], { fromGenesis: true })).resolves.toMatchObject({
      ok: true,
      entries: 2,
    });
  });

  it('refuses to continue a file whose last line is not an audit entry', async () => {
    const path = join(logDir(), 'a.log');
    writeFileSync(path, 'this is not json\n');
    await expect(AuditFileChain.open({ path })).rejects.toThrow(/last line is not an audit entry/);
  });

  it('names the line of a tampered file', async () => {
    const path = join(logDir(), 'a.log');
    const clock = fakeClock('2026-05-01T12:00:00Z');
    const chain = await AuditFileChain.open({ path, clock, durable: false });
    for (let n = 1; n <= 5; n += 1) await chain.append(event(clock, n));
    await chain.close();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    lines[2] = lines[2].replace('"outcome":"success"', '"outcome":"failure"');
    writeFileSync(path, `${lines.join('\n')}\n`);
    const report = await verifyFiles([path]);
    expect(report).toMatchObject({
      ok: false,
      problem: { kind: 'edited', seq: 3 },
      location: { file: path, line: 3 },
    });
    expect(existsSync(path)).toBe(true);
  });
});
