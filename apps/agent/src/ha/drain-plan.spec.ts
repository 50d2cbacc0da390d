import { describe, expect, it } from 'vitest';
import { drainOrder, drainState, retryDelayMs } from './drain-plan';

describe('maintenance drain decisions', () => {
  it('moves HA VMs first, highest priority first, then VMs without HA, by name', () => {
    const order = drainOrder([
      { uuid: 'a', name: 'plain-b', priority: undefined },
      { uuid: 'b', name: 'ha-low', priority: 10 },
      { uuid: 'c', name: 'plain-a', priority: undefined },
      { uuid: 'd', name: 'ha-high', priority: 900 },
      { uuid: 'e', name: 'ha-zero', priority: 0 },
    ]);
    expect(order.map((vm) => vm.name)).toEqual([
      'ha-high',
      'ha-low',
      'ha-zero',
      'plain-a',
      'plain-b',
    ]);
  });

  it('backs off by doubling, up to 16 times the base', () => {
    expect([1, 2, 3, 4, 5, 6, 50].map((n) => retryDelayMs(n, 1000))).toEqual([
      1000, 2000, 4000, 8000, 16_000, 16_000, 16_000,
    ]);
  });

  it('is maintenance once the node is empty, and says what moves and what cannot', () => {
    expect(drainState({ left: 0, moving: [], waiting: [], nodeAlive: true })).toEqual({
      state: 'maintenance',
      reason: 'no VM left on the node; new placements avoid it',
    });
    const draining = drainState({
      left: 3,
      nodeAlive: true,
      moving: [{ name: 'web-1', target: 'node-2' }],
      waiting: [
        { name: 'db-1', reason: 'no node fits VM db-1: node-2: in maintenance', retryInMs: 4_200 },
      ],
    });
    expect(draining).toEqual({
      state: 'draining',
      reason:
        '3 VM(s) still on the node, being live-migrated away; moving web-1 to node-2; db-1 cannot move: no node fits VM db-1: node-2: in maintenance (tried again in 5 s)',
    });
    // The last VM is indexed at its target while its move has not ended: not finished yet.
    expect(
      drainState({
        left: 0,
        moving: [{ name: 'web-1', target: 'node-2' }],
        waiting: [],
        nodeAlive: true,
      }),
    ).toEqual({ state: 'draining', reason: 'the last moves are ending; moving web-1 to node-2' });
    expect(drainState({ left: 2, moving: [], waiting: [], nodeAlive: false }).reason).toContain(
      'which is not alive',
    );
  });
});
