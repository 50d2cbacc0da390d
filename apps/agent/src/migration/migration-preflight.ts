import type { HostFacts, HostUsage, VmDefinition, VmInstance } from '../drivers/hypervisor.driver';
import { checkCpu } from './cpu-baseline';

export type CheckResult = 'pass' | 'warn' | 'fail';
export interface PreflightCheck {
  name: string;
  result: CheckResult;
  reason: string;
}

const GiB = 1024 ** 3;
const gib = (bytes: number): string => `${(bytes / GiB).toFixed(1)} GiB`;

/** Source: is the VM here, in the state the migration needs, and free? */
export function sourceChecks(vm: VmInstance | undefined, uuid: string, nodeId: string, online: boolean): PreflightCheck[] {
  if (!vm) return [{ name: 'vm-present', result: 'fail', reason: `VM ${uuid} is not on node ${nodeId}; refresh the resources and try again` }];
  const checks: PreflightCheck[] = [{ name: 'vm-present', result: 'pass', reason: `VM ${vm.spec.name} is on node ${nodeId}` }];
  const { state, lockedBy } = vm.runtime;
  checks.push(
    lockedBy === ''
      ? { name: 'vm-lock', result: 'pass', reason: 'no other operation holds the VM' }
      : { name: 'vm-lock', result: 'fail', reason: `the VM is busy with "${lockedBy}"; wait until it finishes` },
  );
  if (online) {
    checks.push(
      state === 'running'
        ? { name: 'vm-state', result: 'pass', reason: 'the VM is running: live migration' }
        : { name: 'vm-state', result: 'fail', reason: `the VM is ${state}; live migration needs a running VM (migrate it offline instead, or start it)` },
    );
  } else {
    checks.push(
      state === 'stopped'
        ? { name: 'vm-state', result: 'pass', reason: 'the VM is stopped: offline migration' }
        : { name: 'vm-state', result: 'fail', reason: `the VM is ${state}; offline migration needs a stopped VM (shut it down, or migrate it live)` },
    );
  }
  return checks;
}

export interface TargetFacts {
  nodeId: string;
  facts: HostFacts;
  usage: HostUsage;
  /** Memory the VMs already placed here may claim (running VMs' configured memory). */
  committedMemoryBytes: number;
  /** Where this cluster's VM index places the uuid (undefined: nowhere). */
  indexedOn: string | undefined;
  /** The VM is defined on this node already. */
  presentHere: boolean;
  /** Images present in the mapped pools, "pool/image". */
  images: ReadonlySet<string>;
  /** The transports this node's hypervisor driver can receive. */
  transports: readonly string[];
}

export interface TargetRequest {
  spec: VmDefinition;
  online: boolean;
  transport: string;
  sourceNodeId: string;
  sameCluster: boolean;
  storageMap: Record<string, string>;
  networkMap: Record<string, string>;
  source: { model: string; flags: readonly string[] };
}

/** The VM's definition as the target will run it: pools and bridges mapped. */
export function mappedSpec(spec: VmDefinition, storageMap: Record<string, string>, networkMap: Record<string, string>): VmDefinition {
  return {
    ...spec,
    disks: spec.disks.map((disk) => ({ ...disk, pool: storageMap[disk.pool] ?? disk.pool })),
    nics: spec.nics.map((nic) => ({ ...nic, bridge: networkMap[nic.bridge] ?? nic.bridge })),
  };
}

/** Target: can this node take the VM? */
export function targetChecks(request: TargetRequest, target: TargetFacts): PreflightCheck[] {
  const { spec } = request;
  const mapped = mappedSpec(spec, request.storageMap, request.networkMap);
  const checks: PreflightCheck[] = [];

  if (target.presentHere) checks.push({ name: 'vm-id', result: 'fail', reason: `VM ${spec.uuid} is already defined on node ${target.nodeId}` });
  else if (target.indexedOn && !(request.sameCluster && target.indexedOn === request.sourceNodeId)) {
    checks.push({ name: 'vm-id', result: 'fail', reason: `a VM with id ${spec.uuid} already exists on node ${target.indexedOn} of the target cluster` });
  } else checks.push({ name: 'vm-id', result: 'pass', reason: `VM id ${spec.uuid} is free on the target` });

  if (request.sameCluster && request.sourceNodeId === target.nodeId) {
    checks.push({ name: 'target-node', result: 'fail', reason: `the VM already runs on node ${target.nodeId}; choose another node` });
  }

  if (request.online) checks.push({ name: 'cpu', ...checkCpu(spec.cpuModel, request.source, { model: target.facts.cpuModel, flags: target.facts.cpuFlags }) });

  const pages = target.facts.hugepages;
  if (spec.hugepages) {
    const needed = Math.ceil(spec.memoryBytes / pages.pageSizeBytes);
    checks.push(
      pages.free >= needed
        ? { name: 'hugepages', result: 'pass', reason: `${needed} of ${pages.free} free hugepages of ${pages.pageSizeBytes / 1024} KiB` }
        : { name: 'hugepages', result: 'fail', reason: `the VM needs ${needed} hugepages of ${pages.pageSizeBytes / 1024} KiB; node ${target.nodeId} has ${pages.free} free — reserve more (vm.nr_hugepages) or choose another node` },
    );
  } else checks.push({ name: 'hugepages', result: 'pass', reason: 'the VM does not use hugepages' });

  const free = target.facts.memoryBytes - Math.max(target.usage.memoryUsedBytes, target.committedMemoryBytes);
  if (!request.online) checks.push({ name: 'memory', result: 'pass', reason: 'offline migration: memory is needed only when the VM starts' });
  else if (free < spec.memoryBytes) {
    checks.push({ name: 'memory', result: 'fail', reason: `the VM needs ${gib(spec.memoryBytes)}; node ${target.nodeId} has ${gib(Math.max(0, free))} free — choose another node or free memory there` });
  } else if (free - spec.memoryBytes < target.facts.memoryBytes * 0.1) {
    checks.push({ name: 'memory', result: 'warn', reason: `node ${target.nodeId} will have less than 10 % of its memory free (${gib(free - spec.memoryBytes)})` });
  } else checks.push({ name: 'memory', result: 'pass', reason: `${gib(free)} free on node ${target.nodeId}` });

  checks.push(
    spec.vcpus <= target.facts.cpuCount
      ? { name: 'vcpus', result: 'pass', reason: `${spec.vcpus} vCPUs on a host with ${target.facts.cpuCount} CPUs` }
      : { name: 'vcpus', result: 'fail', reason: `the VM has ${spec.vcpus} vCPUs; node ${target.nodeId} has only ${target.facts.cpuCount} CPUs` },
  );

  if (mapped.disks.length === 0) checks.push({ name: 'storage', result: 'pass', reason: 'the VM has no disks' });
  for (const [index, disk] of mapped.disks.entries()) {
    const original = spec.disks[index];
    const name = `${disk.pool}/${disk.image}`;
    const mappedFrom = original.pool !== disk.pool ? ` (mapped from pool ${original.pool})` : '';
    if (target.images.has(name)) {
      const how = request.sameCluster ? 'the shared RBD pool' : 'a mirrored image';
      checks.push({ name: `storage:${original.pool}/${original.image}`, result: 'pass', reason: `${name}${mappedFrom} is reachable on the target: ${how}` });
    } else {
      const fix = request.sameCluster ? 'check that the node reaches the pool' : 'enable RBD mirroring of the image to the target cluster first, or map the pool to one that holds it';
      checks.push({ name: `storage:${original.pool}/${original.image}`, result: 'fail', reason: `image ${name}${mappedFrom} is not in the target cluster's storage; ${fix}` });
    }
  }

  if (mapped.nics.length === 0) checks.push({ name: 'network', result: 'pass', reason: 'the VM has no NICs' });
  for (const [index, nic] of mapped.nics.entries()) {
    const original = spec.nics[index];
    const mappedFrom = original.bridge !== nic.bridge ? ` (mapped from ${original.bridge})` : '';
    checks.push(
      target.facts.bridges.includes(nic.bridge)
        ? { name: `network:${original.mac}`, result: 'pass', reason: `bridge ${nic.bridge}${mappedFrom} exists on node ${target.nodeId}` }
        : {
            name: `network:${original.mac}`,
            result: 'fail',
            reason: `bridge ${nic.bridge}${mappedFrom} does not exist on node ${target.nodeId}; map ${original.bridge} to one of: ${target.facts.bridges.join(', ') || '(none)'}`,
          },
    );
  }

  if (request.online && request.transport !== '') {
    checks.push(
      target.transports.includes(request.transport)
        ? { name: 'transport', result: 'pass', reason: `node ${target.nodeId} receives over the ${request.transport} transport` }
        : { name: 'transport', result: 'fail', reason: `node ${target.nodeId} cannot receive over the ${request.transport} transport; use ${target.transports.join(' or ')}` },
    );
  }
  return checks;
}

export function allPass(checks: readonly PreflightCheck[]): boolean {
  return checks.every((check) => check.result !== 'fail');
}
