import { describe, expect, it } from 'vitest';
import type { VmDefinition } from '../drivers/hypervisor.driver';
import type { HaPolicy } from './ha.records';
import { scoreHealth } from './health-score';
import { placeVm, type PlacementCandidate } from './placement';

const GiB = 1024 ** 3;
const V3_FLAGS = [
  ...['cmov', 'cx8', 'fpu', 'fxsr', 'mmx', 'syscall', 'sse', 'sse2'],
  ...['cx16', 'lahf_lm', 'popcnt', 'pni', 'sse4_1', 'sse4_2', 'ssse3'],
  ...['avx', 'avx2', 'bmi1', 'bmi2', 'f16c', 'fma', 'abm', 'movbe', 'xsave'],
];

const vm: VmDefinition = {
  uuid: '11111111-1111-4111-8111-111111111111',
  name: 'web-01',
  vcpus: 2,
  memoryBytes: 8 * GiB,
  disks: [],
  nics: [],
  cpuModel: 'x86-64-v3',
  hugepages: false,
  tenant: '',
  labels: {},
};
const policy: HaPolicy = {
  enabled: true,
  priority: 100,
  preferredNodes: [],
  nodeGroup: '',
  maxRestarts: 1,
  maxRelocations: 3,
  onNoNode: 'wait',
};
const source = { cpuModel: 'EPYC', cpuFlags: V3_FLAGS };

function node(nodeId: string, change: Partial<PlacementCandidate> = {}): PlacementCandidate {
  return {
    nodeId,
    eligible: true,
    health: undefined,
    groups: [],
    cpuModel: 'EPYC',
    cpuFlags: V3_FLAGS,
    memoryBytes: 64 * GiB,
    memoryUsedBytes: 0,
    ...change,
  };
}

describe('HA placement', () => {
  it('prefers the preferred nodes in their order, then the most free memory', () => {
    const nodes = [node('a', { memoryUsedBytes: 40 * GiB }), node('b'), node('c')];
    expect(placeVm(vm, policy, source, nodes)).toEqual({ nodeId: 'b' });
    expect(placeVm(vm, { ...policy, preferredNodes: ['c', 'b'] }, source, nodes)).toEqual({
      nodeId: 'c',
    });
  });

  it('skips ineligible, failed, full, out-of-group and CPU-incompatible nodes, and says why', () => {
    const health = scoreHealth(
      [{ name: 'hypervisor', result: 'fail', reason: 'down', latencyMs: 1 }],
      { degradedBelow: 80, failedBelow: 40 },
      new Date(),
    );
    const nodes = [
      node('fenced', { eligible: false, ineligibleReason: 'fenced (fenced)' }),
      node('sick', { health }),
      node('full', { memoryUsedBytes: 60 * GiB }),
      node('old', { cpuFlags: ['sse3'] }),
      node('other-group', { groups: ['edge'] }),
    ];
    const placement = placeVm(vm, { ...policy, nodeGroup: 'core' }, source, nodes);
    expect(placement.nodeId).toBeUndefined();
    const reason = (placement as { reason: string }).reason;
    for (const part of [
      'fenced: fenced (fenced)',
      'sick: health failed (score 0)',
      'not in the node group core',
    ])
      expect(reason).toContain(part);
  });

  it('honours the CPU baseline: a node lacking the flags of x86-64-v3 is refused', () => {
    const placement = placeVm(vm, policy, source, [node('old', { cpuFlags: ['sse3'] })]);
    expect((placement as { reason: string }).reason).toMatch(/old: the target CPU .* lacks/);
  });
});

describe('HA health score', () => {
  it("takes each probe's penalty off 100 and applies the thresholds", () => {
    const at = new Date('2026-12-07T20:00:00Z');
    const thresholds = { degradedBelow: 80, failedBelow: 40 };
    const ok = scoreHealth(
      ['hypervisor', 'ceph', 'network', 'etcd'].map((name) => ({
        name: name as 'ceph',
        result: 'ok' as const,
        reason: 'fine',
        latencyMs: 3,
      })),
      thresholds,
      at,
    );
    expect(ok).toMatchObject({ score: 100, state: 'healthy', evaluatedAt: at.toISOString() });
    const degraded = scoreHealth(
      [{ name: 'network', result: 'warn', reason: '2/3 peers reached', latencyMs: 5 }],
      thresholds,
      at,
    );
    expect(degraded).toMatchObject({ score: 80, state: 'healthy' });
    const worse = scoreHealth(
      [
        { name: 'network', result: 'warn', reason: 'x', latencyMs: 5 },
        { name: 'ceph', result: 'warn', reason: 'y', latencyMs: 5 },
      ],
      thresholds,
      at,
    );
    expect(worse).toMatchObject({ score: 65, state: 'degraded' });
    expect(worse.probes.map((p) => p.penalty)).toEqual([20, 15]);
    const failed = scoreHealth(
      [{ name: 'ceph', result: 'fail', reason: 'no OSD', latencyMs: 2000 }],
      thresholds,
      at,
    );
    expect(failed).toMatchObject({ score: 40, state: 'degraded' });
    expect(
      scoreHealth(
        [{ name: 'hypervisor', result: 'fail', reason: 'z', latencyMs: 1 }],
        thresholds,
        at,
      ).state,
    ).toBe('failed');
  });
});
