import type { NodeEntry__Output, Vm__Output } from '@debvisor/proto';
import type { NodeResource, VmHardware, VmResource } from './resources.dto';

/** uint64 values arrive as decimal strings; byte counts fit a double exactly up to 8 PiB. */
function num(value: string | number | undefined | null): number {
  const n = Number(value ?? 0);
  return Number.isFinite(n) ? n : 0;
}

export function toNodeResource(
  remote: string,
  entry: NodeEntry__Output,
  stale: boolean,
): NodeResource {
  const info = entry.info;
  const status = entry.status;
  return {
    type: 'node',
    remote,
    id: info?.nodeId ?? '',
    name: info?.hostname || info?.nodeId || '',
    status: entry.alive ? status?.health || 'ok' : 'offline',
    alive: entry.alive,
    fqdn: info?.fqdn ?? '',
    agentEndpoint: info?.agentEndpoint ?? '',
    cpuCount: info?.cpuCount ?? 0,
    cpuUsage: status?.cpuUsage ?? 0,
    memoryTotalBytes: num(status?.memoryTotalBytes ?? info?.memoryBytes),
    memoryUsedBytes: num(status?.memoryUsedBytes),
    vmCount: status?.vmCount ?? 0,
    vmsRunning: status?.vmsRunning ?? 0,
    hypervisorDriver: info?.hypervisorDriver ?? '',
    storageDriver: info?.storageDriver ?? '',
    heartbeatAt: status?.heartbeatAt || null,
    // Until merged with what the manager knew (known-nodes.ts): what the entry alone says.
    state: !entry.alive ? 'down' : (status?.health || 'ok') === 'ok' ? 'online' : 'degraded',
    stateSince: null,
    lastSeenAt: null,
    stale,
  };
}

export function toVmResource(remote: string, vm: Vm__Output, stale: boolean): VmResource {
  const spec = vm.spec;
  const runtime = vm.runtime;
  return {
    type: 'vm',
    remote,
    id: spec?.uuid ?? '',
    name: spec?.name ?? '',
    status: runtime?.state || 'unknown',
    node: runtime?.nodeId ?? '',
    tenant: spec?.tenant || null,
    vcpus: spec?.vcpus ?? 0,
    memoryBytes: num(spec?.memoryBytes),
    cpuUsage: runtime?.cpuUsage ?? 0,
    memoryUsedBytes: num(runtime?.memoryUsedBytes),
    uptimeSeconds: num(runtime?.uptimeSeconds),
    stateChangedAt: runtime?.stateChangedAt || null,
    lockedBy: runtime?.lockedBy || null,
    labels: { ...(spec?.labels ?? {}) },
    lastSeenAt: null,
    stale,
  };
}

/** What only the VM detail shows: the CPU baseline, hugepages, disks and NICs (the migration maps' inputs). */
export function toVmHardware(vm: Vm__Output): VmHardware {
  const spec = vm.spec;
  return {
    cpuModel: spec?.cpuModel ?? '',
    hugepages: spec?.hugepages ?? false,
    disks: (spec?.disks ?? []).map((disk) => ({
      pool: disk.pool,
      image: disk.image,
      sizeBytes: num(disk.sizeBytes),
      bus: disk.bus,
    })),
    nics: (spec?.nics ?? []).map((nic) => ({
      mac: nic.mac,
      bridge: nic.bridge,
      model: nic.model,
      vlan: nic.vlan || null,
    })),
  };
}
