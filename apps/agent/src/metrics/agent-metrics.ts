import { collectProcessMetrics, RpcMetrics } from '@debvisor/common';
import { X509Certificate } from 'node:crypto';
import { Gauge, Registry } from 'prom-client';
import type { TlsMaterial } from '../config/tls-material';
import type { HealthStatus } from '../drivers/hypervisor.driver';
import type { CephHealth } from '../drivers/storage.driver';

/** How the agent authenticates callers: the `method` label of auth_attempts_total. */
export const AUTH_METHODS = ['api_key', 'forwarded'] as const;
/** What the agent connects to: the `backend_service` label of backend_connection_errors_total. */
export const BACKENDS = ['etcd', 'agent'] as const;

const HEALTH_VALUE: Record<HealthStatus, number> = { ok: 0, degraded: 1, failed: 2 };
const CEPH_VALUE: Record<CephHealth, number> = { HEALTH_OK: 0, HEALTH_WARN: 1, HEALTH_ERR: 2 };

export interface AgentIdentity {
  readonly clusterId: string;
  readonly nodeId: string;
  readonly version: string;
  readonly hypervisorDriver: string;
  readonly storageDriver: string;
}

/**
 * The agent's Prometheus metrics, in a registry of its own: the RPC guide's metrics for the RPCs
 * it serves (shared definitions from @debvisor/common), the process metrics, and what only an agent
 * knows — its identity, its drivers' health, Ceph's health, its certificates' expiry. Cluster and
 * node ids are operator-configured, so they are bounded label values.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly rpc = new RpcMetrics(this.registry, { authMethods: AUTH_METHODS, backends: BACKENDS });
  private readonly driverHealth = new Gauge({
    name: 'debvisor_driver_health_status',
    help: "A driver's health on this node: 0 ok, 1 degraded, 2 failed",
    labelNames: ['driver'] as const,
    registers: [this.registry],
  });
  private readonly cephHealth = new Gauge({
    name: 'debvisor_ceph_health_status',
    help: "The storage cluster's health as the storage driver sees it: 0 HEALTH_OK, 1 HEALTH_WARN, 2 HEALTH_ERR",
    registers: [this.registry],
  });

  constructor(identity: AgentIdentity) {
    collectProcessMetrics(this.registry);
    new Gauge({
      name: 'debvisor_agent_info',
      help: 'Always 1; the labels describe this agent',
      labelNames: ['cluster', 'node', 'version', 'hypervisor_driver', 'storage_driver'] as const,
      registers: [this.registry],
    }).set(
      {
        cluster: identity.clusterId,
        node: identity.nodeId,
        version: identity.version,
        hypervisor_driver: identity.hypervisorDriver,
        storage_driver: identity.storageDriver,
      },
      1,
    );
  }

  setServiceStatus(service: string, serving: boolean): void {
    this.rpc.setServiceStatus(service, serving);
  }

  backendConnectionError(backend: (typeof BACKENDS)[number]): void {
    this.rpc.backendConnectionError(backend);
  }

  /** `driver` is a driver's fixed name (sim, sim-rbd, libvirt, rbd …). */
  setDriverHealth(driver: string, status: HealthStatus): void {
    this.driverHealth.set({ driver }, HEALTH_VALUE[status]);
  }

  setCephHealth(status: CephHealth): void {
    this.cephHealth.set(CEPH_VALUE[status]);
  }

  /** The expiry of the agent's own certificate (`agent`) and of the cluster CA (`cluster-ca`). */
  recordCertificates(tls: Pick<TlsMaterial, 'certChainPem' | 'clusterCa'>): void {
    const leaf = new X509Certificate(tls.certChainPem);
    this.rpc.setCertificateExpiry('agent', new Date(leaf.validTo));
    this.rpc.setCertificateExpiry('cluster-ca', new Date(tls.clusterCa.validTo));
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
