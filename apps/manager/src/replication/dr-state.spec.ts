import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../common/error-code';
import {
  enabledRoles,
  failover,
  intervalSeconds,
  migrated,
  primarySide,
  resync,
  resyncSettled,
  rpoSeconds,
  switchover,
} from './dr-state';

const NOW = new Date('2026-06-01T12:00:00Z');
const ENABLED = new Date('2026-06-01T11:00:00Z');

describe('DR state machine', () => {
  it('starts primary at the source and secondary at the target', () => {
    expect(enabledRoles()).toEqual({ sourceState: 'primary', targetState: 'secondary' });
    expect(primarySide(enabledRoles())).toBe('source');
  });

  it('swaps the roles on a planned switchover, and back again', () => {
    const moved = switchover(enabledRoles(), false);
    expect(moved).toEqual({ sourceState: 'secondary', targetState: 'primary' });
    expect(switchover(moved, false)).toEqual(enabledRoles());
  });

  it('refuses a switchover while split-brained or while the other site resyncs', () => {
    expect(() => switchover(enabledRoles(), true)).toThrow(
      expect.objectContaining({
        code: ErrorCode.Conflict,
        message: expect.stringMatching(/split brain/),
      }),
    );
    expect(() => switchover({ sourceState: 'primary', targetState: 'resync' }, false)).toThrow(
      /still being resynced/,
    );
  });

  it('makes the site a VM was migrated to primary and the other secondary; nothing when it is primary already', () => {
    expect(migrated(enabledRoles(), 'target')).toEqual({
      sourceState: 'secondary',
      targetState: 'primary',
    });
    expect(migrated({ sourceState: 'secondary', targetState: 'primary' }, 'source')).toEqual(
      enabledRoles(),
    );
    expect(migrated(enabledRoles(), 'source')).toBeUndefined();
  });

  it('fails over to the secondary and marks the old primary secondary (stale)', () => {
    expect(failover(enabledRoles())).toEqual({ sourceState: 'secondary', targetState: 'primary' });
    expect(failover({ sourceState: 'secondary', targetState: 'primary' })).toEqual(enabledRoles());
  });

  it('refuses to fail over to a site whose copy is being resynced', () => {
    expect(() => failover({ sourceState: 'primary', targetState: 'resync' })).toThrow(
      /not consistent/,
    );
  });

  it('resyncs the non-primary site only when it needs it, and settles it once seen replaying', () => {
    const afterFailover = failover(enabledRoles());
    expect(() => resync(afterFailover, false)).toThrow(
      expect.objectContaining({ code: ErrorCode.Conflict }),
    );
    const resyncing = resync(afterFailover, true);
    expect(resyncing).toEqual({ sourceState: 'resync', targetState: 'primary' });
    expect(resyncSettled(resyncing, false)).toBeUndefined();
    expect(resyncSettled(resyncing, true)).toEqual({
      sourceState: 'secondary',
      targetState: 'primary',
    });
    expect(resyncSettled(enabledRoles(), true)).toBeUndefined();
  });

  it('treats a record with two or no primaries as an internal error', () => {
    expect(() => primarySide({ sourceState: 'primary', targetState: 'primary' })).toThrow(
      expect.objectContaining({ code: ErrorCode.Internal }),
    );
    expect(() => primarySide({ sourceState: 'secondary', targetState: 'resync' })).toThrow(
      expect.objectContaining({ code: ErrorCode.Internal }),
    );
  });
});

describe('RPO', () => {
  it('is now minus the oldest of the disks’ last mirrored snapshots', () => {
    expect(
      rpoSeconds(
        NOW,
        ['2026-06-01T11:59:00Z', '2026-06-01T11:55:00Z', '2026-06-01T11:58:30Z'],
        ENABLED,
      ),
    ).toBe(300);
    expect(rpoSeconds(NOW, ['2026-06-01T11:59:59Z'], ENABLED)).toBe(1);
  });

  it('counts a disk not mirrored once yet from when mirroring was enabled', () => {
    expect(rpoSeconds(NOW, ['2026-06-01T11:59:00Z', null], ENABLED)).toBe(3600);
    expect(rpoSeconds(NOW, [''], ENABLED)).toBe(3600);
  });

  it('is unknown when no site answered for some disk, or there are no disks', () => {
    expect(rpoSeconds(NOW, ['2026-06-01T11:59:00Z', undefined], ENABLED)).toBeUndefined();
    expect(rpoSeconds(NOW, [], ENABLED)).toBeUndefined();
  });

  it('never goes below zero when a cluster clock runs ahead', () => {
    expect(rpoSeconds(NOW, ['2026-06-01T12:00:30Z'], ENABLED)).toBe(0);
  });

  it('reads schedule intervals in minutes, hours and days', () => {
    expect(intervalSeconds('5m')).toBe(300);
    expect(intervalSeconds('1h')).toBe(3600);
    expect(intervalSeconds('2d')).toBe(172_800);
    expect(() => intervalSeconds('5s')).toThrow(/not an interval/);
  });
});
