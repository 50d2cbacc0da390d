import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * Prometheus metrics of this manager instance (its own registry, so several instances can live in
 * one process): the default process metrics, remotes by status, refresh durations and HTTP requests
 * labelled only by method, route template and status code (bounded label sets).
 */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();
  private readonly remotes = new Gauge({
    name: 'debvisor_remotes',
    help: 'Remotes by status of their last refresh',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  private readonly refreshDuration = new Histogram({
    name: 'debvisor_resource_refresh_duration_seconds',
    help: 'How long refreshing one remote (nodes and VMs) took',
    labelNames: ['outcome'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  private readonly httpRequests = new Counter({
    name: 'debvisor_http_requests_total',
    help: 'HTTP requests answered, by method, route template and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  private readonly httpDuration = new Histogram({
    name: 'debvisor_http_request_duration_seconds',
    help: 'HTTP request duration, by method and route template',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.setRemoteCounts({ pending: 0, online: 0, unreachable: 0 });
  }

  setRemoteCounts(counts: Record<'pending' | 'online' | 'unreachable', number>): void {
    for (const [status, count] of Object.entries(counts)) this.remotes.set({ status }, count);
  }

  observeRefresh(outcome: 'online' | 'unreachable', seconds: number): void {
    this.refreshDuration.observe({ outcome }, seconds);
  }

  /** `route` is a route template (`/api/v1/remotes/:remote`), `static`, or `unmatched` — never a raw path. */
  observeHttp(method: string, route: string, status: number, seconds: number): void {
    const m = KNOWN_METHODS.has(method) ? method : 'OTHER';
    this.httpRequests.inc({ method: m, route, status: String(status) });
    this.httpDuration.observe({ method: m, route }, seconds);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
