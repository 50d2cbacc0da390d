import { describe, expect, it } from 'vitest';
import {
  MigrationModel,
  SWITCHOVER_COST_MS,
  SYNC_MS,
  type MigrationModelParams,
} from './sim-migration.model';

const GiB = 1024 ** 3;
const LINK = 1_250_000_000; // 10 GbE
const HOUR_MS = 3_600_000;

function model(overrides: Partial<MigrationModelParams> = {}): MigrationModel {
  return new MigrationModel({
    memoryBytes: 4 * GiB,
    dirtyRateBytes: 0,
    bandwidthBytes: LINK,
    downtimeLimitMs: 300,
    autoConverge: false,
    ...overrides,
  });
}

/** The figures at the start of each of the first `count` rounds (just after each bitmap sync). */
function roundStarts(m: MigrationModel, count: number) {
  const starts = [];
  let t = 0;
  for (let i = 0; i < count; i++) {
    const at = m.at(t);
    if (at.status !== 'active') break;
    starts.push(at);
    t = m.nextEventMs(t)!;
  }
  return starts;
}

describe('sim migration model', () => {
  it('migrates an idle VM in one pass: all RAM at the bandwidth, then a switchover costing only the fixed overhead', () => {
    const m = model();
    const halfway = m.at(1000);
    expect(halfway).toMatchObject({
      status: 'active',
      iteration: 1,
      transferredBytes: LINK,
      remainingBytes: 4 * GiB - LINK,
      totalBytes: 4 * GiB,
      throughputBytes: LINK,
      dirtyRateBytes: 0,
    });
    const firstPassMs = ((4 * GiB) / LINK) * 1000 + SYNC_MS;
    expect(m.nextEventMs(1000)).toBeCloseTo(firstPassMs, 6);
    expect(m.at(firstPassMs + 1)).toMatchObject({
      status: 'device',
      iteration: 2,
      remainingBytes: 0,
    });
    const done = m.at(firstPassMs + SWITCHOVER_COST_MS);
    expect(done).toMatchObject({
      status: 'completed',
      transferredBytes: 4 * GiB,
      remainingBytes: 0,
      downtimeMs: SWITCHOVER_COST_MS,
    });
    expect(done.totalTimeMs).toBeCloseTo(firstPassMs + SWITCHOVER_COST_MS, 2);
    expect(m.completedAtMs()).toBeCloseTo(done.totalTimeMs!, 2);
  });

  it('converges a moderately busy VM in a few rounds whose remainder shrinks, within the downtime limit', () => {
    const m = model({ dirtyRateBytes: 300_000_000, downtimeLimitMs: 100 });
    const starts = roundStarts(m, 50);
    expect(starts.length).toBeGreaterThan(2);
    for (let i = 2; i < starts.length; i++)
      expect(starts[i].remainingBytes).toBeLessThan(starts[i - 1].remainingBytes);
    expect(starts[1]).toMatchObject({ iteration: 2, dirtyRateBytes: 300_000_000 });
    const done = m.at(HOUR_MS);
    expect(done.status).toBe('completed');
    expect(done.downtimeMs).toBeLessThanOrEqual(100 + SWITCHOVER_COST_MS);
    expect(done.downtimeMs).toBeGreaterThan(SWITCHOVER_COST_MS);
    expect(done.transferredBytes).toBeGreaterThan(4 * GiB);
  });

  it('never converges when the guest dirties memory as fast as the link carries it: the remainder stops shrinking', () => {
    const m = model({ dirtyRateBytes: 2_000_000_000 });
    const starts = roundStarts(m, 6);
    expect(starts.map((s) => s.remainingBytes)).toEqual(Array(6).fill(4 * GiB));
    const later = m.at(HOUR_MS);
    expect(later.status).toBe('active');
    expect(later.iteration).toBeGreaterThan(1000);
    expect(later.dirtyRateBytes).toBeGreaterThanOrEqual(later.throughputBytes);
    expect(later.expectedDowntimeMs).toBeGreaterThan(300);
    expect(later.transferredBytes).toBeGreaterThan(1000 * 4 * GiB);
    expect(m.completedAtMs()).toBeUndefined();
  });

  it('lets auto-converge throttle a busy guest (20 %, then +10 % per round without progress) until it converges', () => {
    const m = model({ dirtyRateBytes: 2_000_000_000, autoConverge: true });
    const starts = roundStarts(m, 8);
    expect(starts.map((s) => s.throttlePercent).slice(0, 4)).toEqual([0, 20, 30, 40]);
    expect(starts[3].dirtyRateBytes).toBe(1_400_000_000); // measured during the round throttled at 30 %
    const done = m.at(HOUR_MS);
    expect(done.status).toBe('completed');
    expect(done.throttlePercent).toBeGreaterThanOrEqual(40);
    expect(done.downtimeMs).toBeLessThanOrEqual(300 + SWITCHOVER_COST_MS);
  });

  it('finishes a non-convergent migration with post-copy: the target runs after the switchover cost and pulls the rest', () => {
    const m = model({ dirtyRateBytes: 2_000_000_000 });
    const before = m.at(10_000);
    const switched = m.switchToPostcopy(10_000);
    expect(switched).toMatchObject({
      status: 'postcopy-active',
      transferredBytes: before.transferredBytes,
      expectedDowntimeMs: 0,
    });
    expect(switched.remainingBytes).toBeGreaterThanOrEqual(before.remainingBytes);
    const pulling = m.at(10_000 + SWITCHOVER_COST_MS + 1000);
    expect(pulling).toMatchObject({
      status: 'postcopy-active',
      transferredBytes: before.transferredBytes + LINK,
    });
    const completedAt = m.completedAtMs()!;
    expect(completedAt).toBeCloseTo(
      10_000 + SWITCHOVER_COST_MS + (switched.remainingBytes / LINK) * 1000,
      6,
    );
    expect(m.nextEventMs(10_500)).toBe(completedAt);
    expect(m.at(completedAt)).toMatchObject({
      status: 'completed',
      remainingBytes: 0,
      downtimeMs: SWITCHOVER_COST_MS,
      transferredBytes: before.transferredBytes + switched.remainingBytes,
    });
  });

  it('refuses to switch to post-copy once the migration is completing or completed', () => {
    const m = model();
    const completedAt = m.at(HOUR_MS).totalTimeMs!;
    expect(() => m.switchToPostcopy(completedAt - 1)).toThrow(
      /is device; only an active pre-copy migration/,
    );
    expect(() => m.switchToPostcopy(completedAt)).toThrow(/is completed/);
  });

  it('reports set-up figures before the stream started and refuses impossible parameters', () => {
    expect(model().at(-1)).toMatchObject({
      status: 'setup',
      transferredBytes: 0,
      remainingBytes: 4 * GiB,
      iteration: 0,
    });
    expect(() => model({ bandwidthBytes: 0 })).toThrow(RangeError);
  });
});
