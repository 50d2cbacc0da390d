import { describe, expect, it } from 'vitest';
import type { MigrationStats } from '../drivers/hypervisor.driver';
import { completionTimeoutMs, decide, etaSeconds } from './migration-policy';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const stats = (over: Partial<MigrationStats>): MigrationStats => ({
  status: 'active',
  transferredBytes: 0,
  remainingBytes: 512 * MiB,
  totalBytes: GiB,
  dirtyRateBytes: 0,
  expectedDowntimeMs: 0,
  iteration: 1,
  throughputBytes: 100 * MiB,
  ...over,
});
const precopy = {
  mode: 'precopy' as const,
  allowPostcopy: false,
  memoryBytes: 2 * GiB,
  completionTimeoutSecondsPerGib: 30,
};

describe('migration policy', () => {
  it('goes on while pre-copy is within its completion timeout', () => {
    expect(decide(stats({ iteration: 9, dirtyRateBytes: 200 * MiB }), 59_000, precopy)).toEqual({
      action: 'continue',
    });
  });

  it('aborts at the completion timeout (per GiB) when post-copy is not allowed, saying what to do', () => {
    const decision = decide(stats({ dirtyRateBytes: 200 * MiB }), 60_001, precopy);
    expect(decision.action).toBe('abort');
    expect(decision).toMatchObject({
      reason: expect.stringMatching(/did not complete within 60 s.*allow post-copy/),
    });
  });

  it('switches to post-copy at the timeout when it is allowed', () => {
    expect(decide(stats({}), 60_001, { ...precopy, allowPostcopy: true }).action).toBe('postcopy');
  });

  it('switches an explicit post-copy after the first pass, not before', () => {
    const postcopy = { ...precopy, mode: 'postcopy' as const };
    expect(decide(stats({ iteration: 1 }), 1000, postcopy).action).toBe('continue');
    expect(decide(stats({ iteration: 2 }), 1000, postcopy).action).toBe('postcopy');
  });

  it('auto switches early when the guest dirties memory as fast as the link moves it', () => {
    const auto = { ...precopy, mode: 'auto' as const, allowPostcopy: true };
    expect(decide(stats({ iteration: 5, dirtyRateBytes: 95 * MiB }), 5_000, auto).action).toBe(
      'postcopy',
    );
    expect(decide(stats({ iteration: 5, dirtyRateBytes: 20 * MiB }), 5_000, auto).action).toBe(
      'continue',
    );
    expect(
      decide(stats({ iteration: 5, dirtyRateBytes: 95 * MiB }), 5_000, {
        ...auto,
        allowPostcopy: false,
      }).action,
    ).toBe('continue');
  });

  it('leaves a migration that is not in pre-copy alone', () => {
    expect(decide(stats({ status: 'postcopy-active' }), 1e9, precopy).action).toBe('continue');
  });

  it('has a floor on the timeout and none when it is 0', () => {
    expect(completionTimeoutMs({ ...precopy, memoryBytes: 64 * MiB })).toBe(10_000);
    expect(completionTimeoutMs({ ...precopy, completionTimeoutSecondsPerGib: 0 })).toBeUndefined();
  });

  it('estimates the time left from the net rate', () => {
    expect(
      etaSeconds(
        stats({ remainingBytes: 100 * MiB, throughputBytes: 60 * MiB, dirtyRateBytes: 10 * MiB }),
      ),
    ).toBe(2);
    expect(etaSeconds(stats({ throughputBytes: 10 * MiB, dirtyRateBytes: 20 * MiB }))).toBe(0);
  });
});
