import type { HaStatus__Output } from '@debvisor/proto';
import { Injectable } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { MetricsService } from '../health/metrics.service';
import { HA_NODE_STATES, HA_VM_STATES } from './ha.dto';
import { summarize } from './ha-state';

export const RECOVERY_OUTCOMES = ['succeeded', 'failed'] as const;
export type RecoveryOutcome = (typeof RECOVERY_OUTCOMES)[number];

/**
 * The HA metrics of the manager, on its registry: what the alert rules of the debvisor-ha group
 * read (docs/monitoring/prometheus-rules.yml). Labels: remote ids and fixed state names only.
 * A remote whose HA state could not be read has no series (its last known state is stale).
 */
@Injectable()
export class HaMetrics {
  private readonly coordinatorUp: Gauge<'remote'>;
  private readonly fencingEpoch: Gauge<'remote'>;
  private readonly nodes: Gauge<'remote' | 'state'>;
  private readonly vms: Gauge<'remote' | 'state'>;
  private readonly recoveries: Counter<'remote' | 'outcome'>;

  constructor(metrics: MetricsService) {
    const registers = [metrics.registry];
    this.coordinatorUp = new Gauge({
      name: 'debvisor_ha_coordinator_up',
      help: "1 while the remote's HA coordinator is elected, 0 while none is; absent while its HA state cannot be read",
      labelNames: ['remote'] as const,
      registers,
    });
    this.fencingEpoch = new Gauge({
      name: 'debvisor_ha_fencing_epoch',
      help: "The fencing epoch of the remote's HA coordinator (it grows at every election)",
      labelNames: ['remote'] as const,
      registers,
    });
    this.nodes = new Gauge({
      name: 'debvisor_ha_nodes',
      help: 'Nodes of each remote by HA state (online, draining, maintenance, suspect, fencing, fenced, fence-failed, rejoining, unknown)',
      labelNames: ['remote', 'state'] as const,
      registers,
    });
    this.vms = new Gauge({
      name: 'debvisor_ha_vms',
      help: 'HA VMs of each remote by state (protected, recovering, fenced, error, disabled, stopped, unknown)',
      labelNames: ['remote', 'state'] as const,
      registers,
    });
    this.recoveries = new Counter({
      name: 'debvisor_ha_recoveries_total',
      help: 'VM recoveries by HA that the manager saw end, by outcome',
      labelNames: ['remote', 'outcome'] as const,
      registers,
    });
  }

  /** After every HA poll: each remote's status, or undefined when it could not be read. */
  publish(remotes: readonly { remote: string; status: HaStatus__Output | undefined }[]): void {
    this.coordinatorUp.reset();
    this.fencingEpoch.reset();
    this.nodes.reset();
    this.vms.reset();
    for (const { remote, status } of remotes) {
      for (const outcome of RECOVERY_OUTCOMES) this.recoveries.inc({ remote, outcome }, 0);
      if (!status) continue;
      const summary = summarize(status);
      this.coordinatorUp.set({ remote }, summary.coordinator ? 1 : 0);
      this.fencingEpoch.set({ remote }, Number(summary.fencingEpoch));
      for (const state of HA_NODE_STATES) this.nodes.set({ remote, state }, summary.nodes[state]);
      for (const state of HA_VM_STATES) this.vms.set({ remote, state }, summary.vms[state]);
    }
  }

  recoveryEnded(remote: string, outcome: RecoveryOutcome): void {
    this.recoveries.inc({ remote, outcome });
  }
}
