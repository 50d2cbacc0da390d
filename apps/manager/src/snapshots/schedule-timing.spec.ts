import { describe, expect, it } from 'vitest';
import { cronProblem, formatInterval, nextRunAfter, parseInterval } from './schedule-timing';

const at = (iso: string) => new Date(iso);

describe('schedule timing', () => {
  it('reads intervals in minutes, hours and days, and writes them back in the largest exact unit', () => {
    expect(parseInterval('15m')).toBe(900);
    expect(parseInterval('1h')).toBe(3600);
    expect(parseInterval('7d')).toBe(604_800);
    for (const bad of ['', '1', 'h', '0h', '1.5h', '1w', ' 1h', '-1h', '01h'])
      expect(parseInterval(bad), bad).toBeUndefined();
    expect(formatInterval(86_400)).toBe('1d');
    expect(formatInterval(5400)).toBe('90m');
    expect(formatInterval(7200)).toBe('2h');
  });

  it('runs an interval schedule on the slots counted from its anchor, the first one strictly after now', () => {
    const hourly = { intervalSeconds: 3600, cron: null };
    const anchor = at('2026-12-07T10:20:00Z');
    expect(nextRunAfter(hourly, anchor, anchor)).toEqual(at('2026-12-07T11:20:00Z'));
    expect(nextRunAfter(hourly, anchor, at('2026-12-07T11:20:00Z'))).toEqual(
      at('2026-12-07T12:20:00Z'),
    );
    expect(nextRunAfter(hourly, anchor, at('2026-12-07T11:19:59Z'))).toEqual(
      at('2026-12-07T11:20:00Z'),
    );
  });

  it('after a downtime that missed many slots, plans the next one after now, not the missed ones', () => {
    const hourly = { intervalSeconds: 3600, cron: null };
    // Down from 11:00 to 17:45: six slots missed; the next run is the 18:20 slot.
    expect(nextRunAfter(hourly, at('2026-12-07T10:20:00Z'), at('2026-12-07T17:45:00Z'))).toEqual(
      at('2026-12-07T18:20:00Z'),
    );
    const daily = { intervalSeconds: null, cron: '0 3 * * *' };
    expect(nextRunAfter(daily, at('2026-12-01T00:00:00Z'), at('2026-12-07T17:45:00Z'))).toEqual(
      at('2026-12-08T03:00:00Z'),
    );
  });

  it('evaluates cron expressions in UTC and accepts only five fields', () => {
    expect(
      nextRunAfter(
        { intervalSeconds: null, cron: '30 * * * *' },
        at('2026-12-07T00:00:00Z'),
        at('2026-12-07T10:30:00Z'),
      ),
    ).toEqual(at('2026-12-07T11:30:00Z'));
    expect(cronProblem('0 3 * * *')).toBeUndefined();
    expect(cronProblem('0 0 3 * * *')).toMatch(/five fields/);
    expect(cronProblem('61 * * * *')).toMatch(/not a valid cron expression/);
    expect(cronProblem('hourly')).toMatch(/five fields/);
  });
});
