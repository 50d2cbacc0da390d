import { describe, expect, it } from 'vitest';
import {
  formOf,
  haTotals,
  policyFromForm,
  policyInWords,
  probeProblems,
  scoreInWords,
  vmDetailsInWords,
  vmStateInWords,
} from './ha-view';
import type { HaNode, HaOverview } from './queries';

const health = (score: number, state: string, probes: { name: string; result: string }[] = []) =>
  ({
    score,
    state,
    degradedBelow: 80,
    failedBelow: 40,
    evaluatedAt: '2026-12-07T19:00:00Z',
    probes: probes.map((probe) => ({ ...probe, penalty: 20, reason: 'slow', latencyMs: 5 })),
  }) as HaNode['health'];

describe('HA in words', () => {
  it('says a pending VM waits for a node, with the reason', () => {
    expect(
      vmStateInWords({ state: 'recovering', clusterState: 'pending', reason: 'no capacity' }),
    ).toBe('Recovering — waiting for a node that fits: no capacity');
    expect(vmDetailsInWords({ clusterState: 'protected', reason: 'runs on node-2' })).toBe(
      'runs on node-2',
    );
    expect(vmStateInWords({ state: 'protected', clusterState: 'protected', reason: '' })).toBe(
      'Protected',
    );
  });

  it('gives the score and names only the probes that cost points', () => {
    const h = health(79.6, 'degraded', [
      { name: 'ceph', result: 'warn' },
      { name: 'hypervisor', result: 'ok' },
    ]);
    expect(scoreInWords(h)).toBe('80 of 100 (degraded)');
    expect(probeProblems(h)).toEqual(['ceph warn: slow (−20)']);
    expect(scoreInWords(null)).toBe('—');
  });

  it('describes a policy in one line', () => {
    expect(
      policyInWords({
        enabled: true,
        priority: 500,
        preferredNodes: ['node-1'],
        nodeGroup: '',
        maxRestarts: 1,
        maxRelocations: 2,
        onNoNode: 'stop',
      }),
    ).toBe(
      'priority 500, prefers node-1, 2 relocations/h, 1 restart/h, gives up when no node fits',
    );
  });

  it('adds up the remotes for the dashboard, counting unconfirmed fences as fenced nodes', () => {
    const remote = (fenced: number, failed: number, vms: number) => ({
      nodes: { fenced, 'fence-failed': failed },
      vms: { protected: vms, recovering: 1, fenced: 0, error: 1 },
    });
    expect(
      haTotals({ remotes: [remote(1, 0, 3), remote(0, 1, 2)] } as unknown as HaOverview),
    ).toEqual({ protected: 5, recovering: 2, fenced: 0, error: 2, fencedNodes: 2 });
  });
});

describe('the HA policy form', () => {
  it('turns what was typed into the policy to send', () => {
    const form = { ...formOf(null), preferredNodes: 'node-2, node-3 ', priority: ' 250 ' };
    expect(policyFromForm(form)).toEqual({
      policy: {
        enabled: true,
        priority: 250,
        preferredNodes: ['node-2', 'node-3'],
        nodeGroup: '',
        maxRestarts: 1,
        maxRelocations: 1,
        onNoNode: 'wait',
      },
    });
  });

  it('names the field that is wrong instead of sending it', () => {
    expect(policyFromForm({ ...formOf(null), priority: '1001' })).toEqual({
      error: 'Priority: a whole number from 0 to 1000',
    });
    expect(policyFromForm({ ...formOf(null), maxRestarts: '1.5' })).toEqual({
      error: 'Restarts per hour: a whole number from 0 to 100',
    });
    expect(policyFromForm({ ...formOf(null), preferredNodes: 'node-1, -rf' })).toEqual({
      error: 'Preferred nodes: "-rf" is not a node id',
    });
  });
});
