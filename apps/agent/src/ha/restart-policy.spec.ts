import { describe, expect, it } from 'vitest';
import { crashAction, GAVE_UP_RESTARTING, withinWindow } from './restart-policy';

const HOUR = 3_600_000;
const now = new Date('2026-12-07T12:00:00Z');
const ago = (ms: number) => new Date(now.getTime() - ms).toISOString();
const policy = { maxRestarts: 2, maxRelocations: 1 };

describe('the restart policy of a crashed HA VM', () => {
  it('restarts in place up to max_restarts, then relocates up to max_relocations, then gives up', () => {
    expect(crashAction(policy, { restarts: [], relocations: [] }, now, HOUR)).toEqual({
      kind: 'restart',
      count: 1,
    });
    expect(crashAction(policy, { restarts: [ago(1000)], relocations: [] }, now, HOUR)).toEqual({
      kind: 'restart',
      count: 2,
    });
    const twice = [ago(2000), ago(1000)];
    expect(crashAction(policy, { restarts: twice, relocations: [] }, now, HOUR)).toEqual({
      kind: 'relocate',
      count: 1,
    });
    const last = crashAction(policy, { restarts: twice, relocations: [ago(500)] }, now, HOUR);
    expect(last.kind).toBe('give-up');
    expect(last.kind === 'give-up' && last.reason).toBe(
      `${GAVE_UP_RESTARTING}: it stopped unexpectedly again after 2 restart(s) in place (max_restarts 2) and 1 relocation(s) (max_relocations 1) within 1 h; it stays stopped until an operator starts it`,
    );
  });

  it('counts only what happened within the window: a VM that ran that long starts afresh', () => {
    const old = [ago(HOUR + 1), ago(2 * HOUR)];
    expect(crashAction(policy, { restarts: old, relocations: old }, now, HOUR)).toEqual({
      kind: 'restart',
      count: 1,
    });
    expect(withinWindow([ago(HOUR), ago(HOUR - 1)], now, HOUR)).toEqual([ago(HOUR - 1)]);
  });

  it('max_restarts 0 relocates at once; both 0 gives up at once', () => {
    const none = { restarts: [], relocations: [] };
    expect(crashAction({ maxRestarts: 0, maxRelocations: 1 }, none, now, HOUR).kind).toBe(
      'relocate',
    );
    expect(crashAction({ maxRestarts: 0, maxRelocations: 0 }, none, now, HOUR).kind).toBe(
      'give-up',
    );
  });

  it('on a node being drained it relocates instead of restarting in place', () => {
    const none = { restarts: [], relocations: [] };
    expect(crashAction(policy, none, now, HOUR, false)).toEqual({ kind: 'relocate', count: 1 });
    expect(
      crashAction({ maxRestarts: 5, maxRelocations: 0 }, none, now, 90_000, false),
    ).toMatchObject({
      kind: 'give-up',
      reason: expect.stringContaining('within 90 s'),
    });
  });
});
