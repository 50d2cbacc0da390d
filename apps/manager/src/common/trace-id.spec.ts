import { describe, expect, it } from 'vitest';
import { incomingTraceId, newTraceId } from './trace-id';

describe('trace ids', () => {
  it('takes the trace id of a W3C traceparent', () => {
    expect(
      incomingTraceId({ traceparent: '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01' }),
    ).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('ignores an all-zero or malformed traceparent and falls back to x-trace-id', () => {
    expect(
      incomingTraceId({
        traceparent: `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
        'x-trace-id': 'job-1234-abcd',
      }),
    ).toBe('job-1234-abcd');
    expect(incomingTraceId({ traceparent: 'garbage' })).toBeUndefined();
  });

  it('refuses x-trace-id values that are short, long or carry separators', () => {
    for (const bad of [
      'short',
      'a'.repeat(200),
      'has space here',
      'quote"inside',
      'new\nline-abcdef',
    ])
      expect(incomingTraceId({ 'x-trace-id': bad }), bad).toBeUndefined();
  });

  it('generates 32 hex digits', () => {
    expect(newTraceId()).toMatch(/^[0-9a-f]{32}$/);
  });
});
