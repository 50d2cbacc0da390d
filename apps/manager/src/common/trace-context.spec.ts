import { describe, expect, it } from 'vitest';
import { currentTraceId, runInBackground, runWithTraceId } from './trace-context';

describe('the trace context', () => {
  it('has no trace id outside of a request or background work', () => {
    expect(currentTraceId()).toBeUndefined();
  });

  it('keeps the trace id across awaits and timers of the work it runs', async () => {
    const seen = await runWithTraceId('request-0001', async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      return currentTraceId();
    });
    expect(seen).toBe('request-0001');
    expect(currentTraceId()).toBeUndefined();
  });

  it('runs background work detached from the request that started it, under its own trace id', async () => {
    const [given, fresh] = await runWithTraceId('request-0002', () =>
      Promise.all([
        runInBackground(async () => currentTraceId(), 'task-trace-0002'),
        runInBackground(async () => currentTraceId()),
      ]),
    );
    expect(given).toBe('task-trace-0002');
    expect(fresh).toMatch(/^[0-9a-f]{32}$/);
  });
});
