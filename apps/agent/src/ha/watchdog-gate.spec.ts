import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WATCHDOG_INTERVAL_MS, WatchdogGate } from './watchdog-gate';

describe('WatchdogGate', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('stops the HA VMs on its own timer once the lease is lost, while nothing else runs (an HA loop stuck on etcd)', async () => {
    const gate = new WatchdogGate(3_000);
    let renewedAt = performance.now();
    gate.watchLease(() => performance.now() - renewedAt);
    const stalls: { reason: string; sinceRenewed: number }[] = [];
    gate.onStall(async (reason) => {
      stalls.push({ reason, sinceRenewed: performance.now() - renewedAt });
    });
    gate.start();
    // Renewed every second: no stall.
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(1_000);
      renewedAt = performance.now();
    }
    expect(stalls).toEqual([]);
    // Then no renewal (etcd cut off): the timer alone stops the VMs, within an interval of the TTL.
    await vi.advanceTimersByTimeAsync(gate.leaseLimitMs + WATCHDOG_INTERVAL_MS);
    expect(stalls.length).toBeGreaterThan(0);
    expect(stalls[0]!.reason).toContain('its lease was not renewed');
    expect(stalls[0]!.sinceRenewed).toBeGreaterThan(gate.leaseLimitMs);
    expect(stalls[0]!.sinceRenewed).toBeLessThanOrEqual(3_000 + WATCHDOG_INTERVAL_MS);
    gate.stop();
  });
});
