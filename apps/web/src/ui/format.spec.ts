import { describe, expect, it } from 'vitest';
import {
  formatBytes,
  formatDuration,
  formatPercent,
  formatRate,
  formatTime,
  formatUtc,
} from './format';

describe('display formats', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1536, '1.5 KiB'],
    [512 * 1024 ** 2, '512 MiB'],
    [2.25 * 1024 ** 3, '2.3 GiB'],
    [-2048, '-2.0 KiB'],
    [null, '—'],
    [Number.NaN, '—'],
  ])('bytes %s → %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });

  it('formats rates, percentages, durations and times', () => {
    expect(formatRate(10 * 1024 ** 2)).toBe('10.0 MiB/s');
    expect(formatPercent(0.237)).toBe('24 %');
    expect(formatPercent(undefined)).toBe('—');
    expect(formatDuration(45)).toBe('45 s');
    expect(formatDuration(200)).toBe('3 min 20 s');
    expect(formatDuration(7500)).toBe('2 h 5 min');
    expect(formatDuration(90_000)).toBe('1 d 1 h');
    expect(formatDuration(-1)).toBe('—');
    expect(formatTime(null)).toBe('—');
    expect(formatTime('not a date')).toBe('—');
    expect(formatUtc('2026-12-07T13:05:21.123Z')).toBe('2026-12-07 13:05:21 UTC');
    expect(formatUtc(null)).toBe('—');
  });
});
