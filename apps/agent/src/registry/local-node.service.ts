import type { DriverHealth, HealthStatus, HypervisorDriver } from '../drivers/hypervisor.driver';
import type { StorageDriver } from '../drivers/storage.driver';
import { AGENT_VERSION } from '../shared/version';
import type { NodeInfo, NodeStatusInput } from './node.schema';

const SEVERITY: Record<HealthStatus, number> = { ok: 0, degraded: 1, failed: 2 };

export interface NodeHealth {
  status: HealthStatus;
  drivers: DriverHealth[];
}

/** This node as the registry sees it: facts from the hypervisor driver, status from both drivers. */
export class LocalNodeService {
  constructor(
    private readonly identity: { nodeId: string; advertise: string },
    private readonly hypervisor: HypervisorDriver,
    private readonly storage: StorageDriver,
  ) {}

  async info(): Promise<NodeInfo> {
    const facts = await this.hypervisor.facts();
    return {
      nodeId: this.identity.nodeId,
      hostname: facts.hostname,
      fqdn: facts.fqdn,
      addresses: facts.addresses,
      agentEndpoint: this.identity.advertise,
      cpuModel: facts.cpuModel,
      cpuFlags: facts.cpuFlags,
      cpuCount: facts.cpuCount,
      memoryBytes: facts.memoryBytes,
      hugepages: facts.hugepages,
      versions: { agent: AGENT_VERSION, node: process.versions.node, ...facts.versions },
      hypervisorDriver: this.hypervisor.name,
      storageDriver: this.storage.name,
      bridges: facts.bridges,
    };
  }

  async status(): Promise<NodeStatusInput> {
    const [vms, usage, facts, health] = await Promise.all([
      this.hypervisor.list(),
      this.hypervisor.usage(),
      this.hypervisor.facts(),
      this.health(),
    ]);
    return {
      cpuUsage: usage.cpuUsage,
      memoryUsedBytes: usage.memoryUsedBytes,
      memoryTotalBytes: facts.memoryBytes,
      vmCount: vms.length,
      vmsRunning: vms.filter((vm) => vm.runtime.state === 'running').length,
      drivers: health.drivers,
      health: health.status,
    };
  }

  /** The drivers' health; the node's is the worst of them. */
  async health(): Promise<NodeHealth> {
    const drivers = await Promise.all([this.hypervisor.health(), this.storage.health()]);
    const status = drivers.reduce<HealthStatus>(
      (worst, d) => (SEVERITY[d.status] > SEVERITY[worst] ? d.status : worst),
      'ok',
    );
    return { status, drivers };
  }
}
