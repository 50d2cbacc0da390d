import type { HealthRecord, Probe, ProbeName, ProbeResult } from './ha.records';

/** Points each probe takes off a score of 100 when it warns or fails (docs/ha.md). */
export const PENALTIES: Readonly<Record<ProbeName, Readonly<Record<ProbeResult, number>>>> = {
  // A node whose hypervisor does not answer cannot run VMs at all.
  hypervisor: { ok: 0, warn: 30, fail: 100 },
  // Without Ceph the node's VMs cannot do I/O.
  ceph: { ok: 0, warn: 15, fail: 60 },
  // Peers or the gateway unreachable: the VMs' users may not reach them.
  network: { ok: 0, warn: 20, fail: 50 },
  // etcd unreachable: the node will lose its lease (and be fenced) soon.
  etcd: { ok: 0, warn: 10, fail: 40 },
};

export interface ProbeOutcome {
  name: ProbeName;
  result: ProbeResult;
  reason: string;
  latencyMs: number;
}

/** Folds the probes into one score (100 minus the penalties, at least 0) and a state by the thresholds. */
export function scoreHealth(
  outcomes: readonly ProbeOutcome[],
  thresholds: { degradedBelow: number; failedBelow: number },
  evaluatedAt: Date,
): HealthRecord {
  const probes: Probe[] = outcomes.map((o) => ({ ...o, penalty: PENALTIES[o.name][o.result] }));
  const score = Math.max(0, 100 - probes.reduce((sum, p) => sum + p.penalty, 0));
  const state =
    score < thresholds.failedBelow
      ? 'failed'
      : score < thresholds.degradedBelow
        ? 'degraded'
        : 'healthy';
  return {
    score,
    state,
    probes,
    evaluatedAt: evaluatedAt.toISOString(),
    degradedBelow: thresholds.degradedBelow,
    failedBelow: thresholds.failedBelow,
  };
}
