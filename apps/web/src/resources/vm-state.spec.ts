import { describe, expect, it } from 'vitest';
import { formatTime } from '../ui/format';
import { unknownStateInWords } from './vm-state';

describe('unknownStateInWords', () => {
  it('says when an unknown VM was last seen, in the local time with UTC for the hover', () => {
    const at = '2026-12-07T13:05:21.000Z';
    expect(unknownStateInWords({ status: 'unknown', lastSeenAt: at })).toEqual({
      text: `state unknown — last seen ${formatTime(at)}`,
      utc: '2026-12-07 13:05:21 UTC',
    });
  });

  it('says so when the manager never saw it answer', () => {
    expect(unknownStateInWords({ status: 'unknown', lastSeenAt: null })).toEqual({
      text: 'state unknown — never seen by this manager',
      utc: null,
    });
  });

  it('says nothing for a VM whose state is known', () => {
    expect(
      unknownStateInWords({ status: 'running', lastSeenAt: '2026-12-07T13:05:21.000Z' }),
    ).toBeNull();
    expect(unknownStateInWords({ status: 'stopped', lastSeenAt: null })).toBeNull();
  });
});
