import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import { describe, expect, it, vi } from 'vitest';
import type { NodeEntry } from '../registry/node.schema';
import type { Logger } from '../shared/logger';
import { haConfigSchema } from './ha-config.schema';
import { HaDrain, type DrainView, type HaDrainDeps } from './ha-drain.service';
import type { EventRecord, MaintenanceRecord, PolicyRecord } from './ha.records';
import type { PlacementCandidate } from './placement';

const GiB = 1024 ** 3;
const uuid = (n: number) => `00000000-0000-4000-8000-00000000000${n}`;
const leader = { nodeId: 'node-1', epoch: 7, key: 'k' };

function entry(nodeId: string): NodeEntry {
  return {
    info: {
      nodeId,
      agentEndpoint: `127.0.0.1:90${nodeId.slice(-1)}0`,
      cpuModel: 'x',
      cpuFlags: [],
    },
    status: undefined,
    alive: true,
  } as unknown as NodeEntry;
}

function policy(n: number, priority: number, nodeGroup = ''): PolicyRecord {
  return {
    vmUuid: uuid(n),
    vmName: `vm-${n}`,
    policy: {
      enabled: true,
      priority,
      preferredNodes: [],
      nodeGroup,
      maxRestarts: 1,
      maxRelocations: 1,
      onNoNode: 'wait',
    },
    updatedAt: '2026-01-01T00:00:00.000Z',
  };
}

/** node-2 in maintenance holding vm-1 (no HA), vm-2 (HA 10) and vm-3 (HA 900). */
function cluster(policies: PolicyRecord[] = [policy(2, 10), policy(3, 900)]) {
  const record: MaintenanceRecord = {
    nodeId: 'node-2',
    state: 'draining',
    reason: 'maintenance requested',
    requestedAt: '2026-01-01T00:00:00.000Z',
  };
  const view: DrainView = {
    leader,
    ha: {
      members: new Map(),
      policies: new Map(policies.map((p) => [p.vmUuid, p])),
      resources: new Map(),
      fences: new Map(),
      maintenance: new Map([['node-2', record]]),
      specs: new Map(),
    },
    nodes: new Map(['node-1', 'node-2', 'node-3'].map((id) => [id, entry(id)])),
    alive: new Set(['node-1', 'node-2', 'node-3']),
    index: new Map([1, 2, 3].map((n) => [uuid(n), { nodeId: 'node-2', name: `vm-${n}` }])),
  };
  return view;
}

function harness(config: Partial<ReturnType<typeof haConfigSchema.parse>> = {}) {
  const clock = fakeClock();
  const events: EventRecord[] = [];
  const written: MaintenanceRecord[] = [];
  const moves: string[] = [];
  const finish = new Map<string, () => void>();
  const repository = strictMock<HaDrainDeps['repository']>('repository', {
    updateMaintenanceGuarded: async (_leader, _previous, record, event) => {
      written.push(record);
      if (event) events.push(event);
      return true;
    },
    appendEvent: async (event) => {
      events.push(event);
    },
  });
  const mover = strictMock<HaDrainDeps['mover']>('mover', {
    get: async (_node, id) => ({
      spec: { uuid: id, name: id, cpuModel: 'host-model', memoryBytes: String(GiB) } as never,
      runtime: { state: 'running' },
    }),
    move: (move) => {
      moves.push(`${move.uuid}->${move.target.nodeId}`);
      return new Promise<string>((resolve) => finish.set(move.uuid, () => resolve('moved')));
    },
  });
  const candidates = (view: DrainView, source: string): PlacementCandidate[] =>
    [...view.nodes.keys()].map((nodeId) => ({
      nodeId,
      eligible: nodeId !== source,
      ineligibleReason: nodeId === source ? 'the VM moves away from it' : undefined,
      health: undefined,
      groups: [],
      cpuModel: 'x86-64-v2',
      cpuFlags: [],
      memoryBytes: 64 * GiB,
      memoryUsedBytes: 0,
    }));
  const logger = strictMock<Logger>('logger', { warn: () => undefined });
  const drain = new HaDrain({
    config: haConfigSchema.parse({ drainConcurrency: 1, drainRetrySeconds: 1, ...config }),
    repository,
    mover,
    candidates,
    inFlight: new Set(),
    crashedHaVm: () => false,
    clock,
    logger,
  });
  return { drain, events, written, moves, finish, clock };
}

describe('HaDrain', () => {
  it('moves the HA VMs first by priority, one at a time, and ends in maintenance', async () => {
    const view = cluster();
    const h = harness();
    await h.drain.step(view);
    await vi.waitFor(() => expect(h.moves).toEqual([`${uuid(3)}->node-1`]));
    expect(h.written.at(-1)).toMatchObject({ state: 'draining' });
    expect(h.written.at(-1)!.reason).toContain('3 VM(s) still on the node');
    await h.drain.step(view); // the move is under way: nothing more starts
    expect(h.moves).toHaveLength(1);
    h.finish.get(uuid(3))!();
    await h.drain.settle();
    view.index.set(uuid(3), { nodeId: 'node-1', name: 'vm-3' });
    await h.drain.step(view);
    await vi.waitFor(() => expect(h.moves.at(-1)).toBe(`${uuid(2)}->node-1`));
    h.finish.get(uuid(2))!();
    await h.drain.settle();
    view.index.set(uuid(2), { nodeId: 'node-1', name: 'vm-2' });
    await h.drain.step(view);
    await vi.waitFor(() => expect(h.moves.at(-1)).toBe(`${uuid(1)}->node-1`));
    h.finish.get(uuid(1))!();
    await h.drain.settle();
    view.index.set(uuid(1), { nodeId: 'node-1', name: 'vm-1' });
    await h.drain.step(view);
    expect(h.written.at(-1)).toMatchObject({
      state: 'maintenance',
      reason: 'no VM left on the node; new placements avoid it',
    });
    expect(h.events.map((e) => [e.kind, e.vmUuid ?? ''])).toEqual([
      ['drain-started', ''],
      ['drain-vm-moving', uuid(3)],
      ['drain-vm-moved', uuid(3)],
      ['drain-vm-moving', uuid(2)],
      ['drain-vm-moved', uuid(2)],
      ['drain-vm-moving', uuid(1)],
      ['drain-vm-moved', uuid(1)],
      ['drain-finished', ''],
    ]);
    expect(h.events.every((e) => e.nodeId === 'node-2' && e.epoch === 7)).toBe(true);
  });

  it('reports a VM no node fits, retries it with back-off, and never moves it elsewhere', async () => {
    const view = cluster([policy(3, 900, 'gpu')]);
    view.index = new Map([[uuid(3), { nodeId: 'node-2', name: 'vm-3' }]]);
    const h = harness();
    await h.drain.step(view);
    await h.drain.settle();
    expect(h.moves).toEqual([]);
    const failed = h.events.filter((e) => e.kind === 'drain-vm-failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.message).toContain('no node fits VM');
    expect(failed[0]!.message).toContain('tried again in 1 s (attempt 1)');
    // Not due yet: no second attempt.
    await h.drain.step(view);
    await h.drain.settle();
    expect(h.events.filter((e) => e.kind === 'drain-vm-failed')).toHaveLength(1);
    expect(h.written.at(-1)!.reason).toContain('vm-3 cannot move: no node fits VM');
    h.clock.advance(1_000);
    await h.drain.step(view);
    await h.drain.settle();
    const again = h.events.filter((e) => e.kind === 'drain-vm-failed');
    expect(again).toHaveLength(2);
    expect(again[1]!.message).toContain('tried again in 2 s (attempt 2)');
  });

  it('starts no move once the maintenance is ended, and says so', async () => {
    const view = cluster();
    const h = harness({ drainConcurrency: 2 });
    await h.drain.step(view);
    await vi.waitFor(() => expect(h.moves).toHaveLength(2));
    view.ha.maintenance.clear();
    await h.drain.step(view);
    const stopped = h.events.find((e) => e.kind === 'drain-stopped')!;
    expect(stopped.message).toBe(
      'maintenance ended: no further VM is moved; 3 VM(s) on the node, 2 move(s) under way finish',
    );
    for (const done of h.finish.values()) done();
    await h.drain.settle();
    await h.drain.step(view);
    expect(h.moves).toHaveLength(2);
  });
});
