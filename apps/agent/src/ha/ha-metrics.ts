import type { Vm } from '@debvisor/proto';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { NodeEntry } from '../registry/node.schema';
import type { CallContext } from '../rpc/call-context';
import type { Clock } from '../shared/clock';
import type { FailoverCall } from './ha-coordinator.service';
import { PROBE_NAMES, RESOURCE_STATES, type ProbeResult } from './ha.records';
import type { HaMetricsRepository } from './ha-metrics.repository';
import { scoreHealth, type ProbeOutcome } from './health-score';
import type { NodeFencer } from './node-fencer';

/** How a fence attempt ended: confirmed, not confirmed (nothing started), or an error. */
export const FENCE_OUTCOMES = ['confirmed', 'unconfirmed', 'failed'] as const;
/** How a FailoverVm the coordinator asked for ended. */
export const FAILOVER_OUTCOMES = ['recovered', 'failed'] as const;

const PROBE_VALUE: Record<ProbeResult, number> = { ok: 0, warn: 1, fail: 2 };
/** A scrape waits at most this long for etcd: a node cut off from etcd still answers its metrics. */
const READ_TIMEOUT_MS = 1_500;

/**
 * The agent's HA metrics (docs/ha.md, docs/agent.md), in the agent's registry: this node's health
 * (score and each probe, as last evaluated here), whether this node is the coordinator and the
 * fencing epoch it sees, the fences and failovers this node carried out as coordinator and how
 * long recoveries took (from the node's loss to the VM running elsewhere), and — on the
 * coordinator only, so that a sum over the cluster counts each VM once — the HA VMs by state.
 * Leadership and resources are read from etcd at scrape time (bounded by READ_TIMEOUT_MS; an
 * unanswered read leaves the last values).
 */
export class HaMetrics {
  private readonly fences: Counter<'outcome'>;
  private readonly failovers: Counter<'outcome'>;
  private readonly recovery: Histogram;
  private readonly score: Gauge;
  private readonly probes: Gauge<'probe'>;

  constructor(
    registry: Registry,
    private readonly deps: {
      nodeId: string;
      thresholds: { degradedBelow: number; failedBelow: number };
      repository: HaMetricsRepository;
      clock: Clock;
    },
  ) {
    const registers = [registry];
    this.score = new Gauge({
      name: 'debvisor_agent_ha_health_score',
      help: "This node's HA health score (0-100) as it last published it; below the degraded and failed thresholds the coordinator avoids or fences it",
      registers,
    });
    this.probes = new Gauge({
      name: 'debvisor_agent_ha_probe_status',
      help: "Each HA health probe's last result on this node: 0 ok, 1 warn, 2 fail",
      labelNames: ['probe'] as const,
      registers,
    });
    // Leadership and resources are read at scrape time: one etcd read sets the three gauges.
    let reading: Promise<void> | undefined;
    const collect = async () => {
      reading ??= this.readCoordinator(leaderGauge, epochGauge, resourcesGauge)
        .catch(() => undefined)
        .finally(() => (reading = undefined));
      await reading;
    };
    const leaderGauge: Gauge = new Gauge({
      name: 'debvisor_agent_ha_coordinator_leader',
      help: '1 while this node is the HA coordinator, else 0',
      registers,
      collect,
    });
    const epochGauge: Gauge = new Gauge({
      name: 'debvisor_agent_ha_fencing_epoch',
      help: "The HA coordinator's fencing epoch as this node sees it (0: no coordinator elected)",
      registers,
      collect,
    });
    const resourcesGauge: Gauge<'state'> = new Gauge({
      name: 'debvisor_agent_ha_resources',
      help: 'HA VMs by state; exported by the coordinator only (0 elsewhere), so a sum counts each VM once',
      labelNames: ['state'] as const,
      registers,
      collect,
    });
    this.fences = new Counter({
      name: 'debvisor_agent_ha_fences_total',
      help: 'Fence attempts this node made as HA coordinator, by outcome',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.failovers = new Counter({
      name: 'debvisor_agent_ha_failovers_total',
      help: 'FailoverVm calls this node made as HA coordinator, by outcome',
      labelNames: ['outcome'] as const,
      registers,
    });
    this.recovery = new Histogram({
      name: 'debvisor_agent_ha_recovery_duration_seconds',
      help: "From a node's loss being detected to one of its HA VMs running on another node",
      buckets: [5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600],
      registers,
    });
    for (const outcome of FENCE_OUTCOMES) this.fences.inc({ outcome }, 0);
    for (const outcome of FAILOVER_OUTCOMES) this.failovers.inc({ outcome }, 0);
  }

  private async readCoordinator(
    leader: Gauge,
    epoch: Gauge,
    resources: Gauge<'state'>,
  ): Promise<void> {
    const view = await withTimeout(this.deps.repository.coordinatorView(this.deps.nodeId));
    if (!view) return;
    leader.set(view.leader ? 1 : 0);
    epoch.set(view.epoch);
    for (const state of RESOURCE_STATES) resources.set({ state }, view.resources?.[state] ?? 0);
  }

  /** The probes of one health evaluation (the score is computed as the published one is). */
  probed(outcomes: readonly ProbeOutcome[]): void {
    const record = scoreHealth(outcomes, this.deps.thresholds, this.deps.clock.now());
    this.score.set(record.score);
    for (const name of PROBE_NAMES) {
      const outcome = outcomes.find((o) => o.name === name);
      if (outcome) this.probes.set({ probe: name }, PROBE_VALUE[outcome.result]);
    }
  }

  /** The fencer, counting each attempt's outcome. */
  countFences(fencer: NodeFencer): NodeFencer {
    return {
      fence: async (target) => {
        try {
          const outcome = await fencer.fence(target);
          this.fences.inc({ outcome: outcome.confirmed ? 'confirmed' : 'unconfirmed' });
          return outcome;
        } catch (error) {
          this.fences.inc({ outcome: 'failed' });
          throw error;
        }
      },
      release: (blocklisted) => fencer.release(blocklisted),
    };
  }

  /** The coordinator's FailoverVm call, counting outcomes and observing the recovery's duration. */
  countFailovers(
    failover: (target: NodeEntry, call: FailoverCall, context: CallContext) => Promise<Vm>,
  ): (target: NodeEntry, call: FailoverCall, context: CallContext) => Promise<Vm> {
    return async (target, call, context) => {
      let vm: Vm;
      try {
        vm = await failover(target, call, context);
      } catch (error) {
        this.failovers.inc({ outcome: 'failed' });
        throw error;
      }
      this.failovers.inc({ outcome: 'recovered' });
      // Measured now, observed once the fence's detection time is read: the coordinator goes on at once.
      const runningAt = this.deps.clock.now().getTime();
      void withTimeout(this.deps.repository.detectedAt(call.sourceNodeId, call.uuid))
        .then((detectedAt) => {
          if (detectedAt !== undefined)
            this.recovery.observe(Math.max(0, (runningAt - detectedAt.getTime()) / 1000));
        })
        .catch(() => undefined);
      return vm;
    };
  }
}

async function withTimeout<T>(work: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), READ_TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
