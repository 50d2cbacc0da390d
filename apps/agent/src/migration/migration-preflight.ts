import type { HostFacts, HostUsage, VmDefinition, VmInstance } from '../drivers/hypervisor.driver';
import type { ImageMirrorStatus } from '../drivers/storage.driver';
import { checkCpu } from './cpu-baseline';
import type { MigrationDisk } from './migration.requests';

export type CheckResult = 'pass' | 'warn' | 'fail';
export interface PreflightCheck {
  name: string;
  result: CheckResult;
  reason: string;
}

const GiB = 1024 ** 3;
const gib = (bytes: number): string => `${(bytes / GiB).toFixed(1)} GiB`;

/** Source: is the VM here, in the state the migration needs, and free? */
export function sourceChecks(
  vm: VmInstance | undefined,
  uuid: string,
  nodeId: string,
  online: boolean,
): PreflightCheck[] {
  if (!vm)
    return [
      {
        name: 'vm-present',
        result: 'fail',
        reason: `VM ${uuid} is not on node ${nodeId}; refresh the resources and try again`,
      },
    ];
  const checks: PreflightCheck[] = [
    { name: 'vm-present', result: 'pass', reason: `VM ${vm.spec.name} is on node ${nodeId}` },
  ];
  const { state, lockedBy } = vm.runtime;
  checks.push(
    lockedBy === ''
      ? { name: 'vm-lock', result: 'pass', reason: 'no other operation holds the VM' }
      : {
          name: 'vm-lock',
          result: 'fail',
          reason: `the VM is busy with "${lockedBy}"; wait until it finishes`,
        },
  );
  if (online) {
    checks.push(
      state === 'running'
        ? { name: 'vm-state', result: 'pass', reason: 'the VM is running: live migration' }
        : {
            name: 'vm-state',
            result: 'fail',
            reason: `the VM is ${state}; live migration needs a running VM (migrate it offline instead, or start it)`,
          },
    );
  } else {
    checks.push(
      state === 'stopped'
        ? { name: 'vm-state', result: 'pass', reason: 'the VM is stopped: offline migration' }
        : {
            name: 'vm-state',
            result: 'fail',
            reason: `the VM is ${state}; offline migration needs a stopped VM (shut it down, or migrate it live)`,
          },
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
  /** Each mapped disk image present here ("pool/image"): its mirroring and who uses it. */
  disks: ReadonlyMap<string, TargetDisk>;
  /** The target cluster's VMs by name → uuid (its VM index). */
  vmNames: ReadonlyMap<string, string>;
  /** The target cluster's VMs that could not be asked for their disks (node → why). */
  unreachableNodes: readonly string[];
  /** migration.maxMirrorLagSeconds */
  maxMirrorLagSeconds: number;
}

export interface TargetDisk {
  /** undefined: the driver could not tell. */
  mirror: ImageMirrorStatus | undefined;
  /** The VM holding the image's lock here. */
  holder: string | undefined;
  /** VMs of the target cluster whose definition has this image as a disk. */
  usedBy: readonly { uuid: string; name: string }[];
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
  /** The source's disks with their mirroring (across clusters). */
  sourceDisks: readonly MigrationDisk[];
}

/** The VM's definition as the target will run it: pools and bridges mapped. */
export function mappedSpec(
  spec: VmDefinition,
  storageMap: Record<string, string>,
  networkMap: Record<string, string>,
): VmDefinition {
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

  if (target.presentHere)
    checks.push({
      name: 'vm-id',
      result: 'fail',
      reason: `VM ${spec.uuid} is already defined on node ${target.nodeId}`,
    });
  else if (
    target.indexedOn &&
    !(request.sameCluster && target.indexedOn === request.sourceNodeId)
  ) {
    checks.push({
      name: 'vm-id',
      result: 'fail',
      reason: `a VM with id ${spec.uuid} already exists on node ${target.indexedOn} of the target cluster`,
    });
  } else
    checks.push({
      name: 'vm-id',
      result: 'pass',
      reason: `VM id ${spec.uuid} is free on the target`,
    });

  const namesake = target.vmNames.get(spec.name);
  if (namesake !== undefined && namesake !== spec.uuid) {
    checks.push({
      name: 'vm-name',
      result: 'fail',
      reason: `the target cluster has another VM named ${spec.name} (${namesake}); rename one of them first`,
    });
  }

  if (request.sameCluster && request.sourceNodeId === target.nodeId) {
    checks.push({
      name: 'target-node',
      result: 'fail',
      reason: `the VM already runs on node ${target.nodeId}; choose another node`,
    });
  }

  if (request.online)
    checks.push({
      name: 'cpu',
      ...checkCpu(spec.cpuModel, request.source, {
        model: target.facts.cpuModel,
        flags: target.facts.cpuFlags,
      }),
    });

  const pages = target.facts.hugepages;
  if (spec.hugepages) {
    const needed = Math.ceil(spec.memoryBytes / pages.pageSizeBytes);
    checks.push(
      pages.free >= needed
        ? {
            name: 'hugepages',
            result: 'pass',
            reason: `${needed} of ${pages.free} free hugepages of ${pages.pageSizeBytes / 1024} KiB`,
          }
        : {
            name: 'hugepages',
            result: 'fail',
            reason: `the VM needs ${needed} hugepages of ${pages.pageSizeBytes / 1024} KiB; node ${target.nodeId} has ${pages.free} free — reserve more (vm.nr_hugepages) or choose another node`,
          },
    );
  } else
    checks.push({ name: 'hugepages', result: 'pass', reason: 'the VM does not use hugepages' });

  const free =
    target.facts.memoryBytes - Math.max(target.usage.memoryUsedBytes, target.committedMemoryBytes);
  if (!request.online)
    checks.push({
      name: 'memory',
      result: 'pass',
      reason: 'offline migration: memory is needed only when the VM starts',
    });
  else if (free < spec.memoryBytes) {
    checks.push({
      name: 'memory',
      result: 'fail',
      reason: `the VM needs ${gib(spec.memoryBytes)}; node ${target.nodeId} has ${gib(Math.max(0, free))} free — choose another node or free memory there`,
    });
  } else if (free - spec.memoryBytes < target.facts.memoryBytes * 0.1) {
    checks.push({
      name: 'memory',
      result: 'warn',
      reason: `node ${target.nodeId} will have less than 10 % of its memory free (${gib(free - spec.memoryBytes)})`,
    });
  } else
    checks.push({
      name: 'memory',
      result: 'pass',
      reason: `${gib(free)} free on node ${target.nodeId}`,
    });

  checks.push(
    spec.vcpus <= target.facts.cpuCount
      ? {
          name: 'vcpus',
          result: 'pass',
          reason: `${spec.vcpus} vCPUs on a host with ${target.facts.cpuCount} CPUs`,
        }
      : {
          name: 'vcpus',
          result: 'fail',
          reason: `the VM has ${spec.vcpus} vCPUs; node ${target.nodeId} has only ${target.facts.cpuCount} CPUs`,
        },
  );

  if (mapped.disks.length === 0)
    checks.push({ name: 'storage', result: 'pass', reason: 'the VM has no disks' });
  for (const [index, disk] of mapped.disks.entries()) {
    const original = spec.disks[index];
    const name = `${disk.pool}/${disk.image}`;
    const mappedFrom = original.pool !== disk.pool ? ` (mapped from pool ${original.pool})` : '';
    const check = `storage:${original.pool}/${original.image}`;
    if (target.images.has(name)) {
      const refusal =
        diskInUse(spec, name, target.disks.get(name)) ??
        (request.sameCluster ? undefined : notTheMirror(request, target, original, name));
      if (refusal) checks.push({ name: check, result: 'fail', reason: `${refusal}` });
      else if (request.sameCluster)
        checks.push({
          name: check,
          result: 'pass',
          reason: `${name}${mappedFrom} is reachable on the target: the shared RBD pool`,
        });
      else
        checks.push({
          name: check,
          result: 'pass',
          reason: `${name}${mappedFrom} at the target is the mirror of the source's disk: ${mirrorSummary(request, target, original, name)}`,
        });
    } else {
      const fix = request.sameCluster
        ? 'check that the node reaches the pool'
        : 'enable RBD mirroring of the image to the target cluster first, or map the pool to one that holds it';
      checks.push({
        name: `storage:${original.pool}/${original.image}`,
        result: 'fail',
        reason: `image ${name}${mappedFrom} is not in the target cluster's storage; ${fix}`,
      });
    }
  }

  if (target.unreachableNodes.length > 0) {
    checks.push({
      name: 'storage-users',
      result: 'warn',
      reason: `nodes ${target.unreachableNodes.join(', ')} of the target cluster did not say which disks their VMs use`,
    });
  }

  if (mapped.nics.length === 0)
    checks.push({ name: 'network', result: 'pass', reason: 'the VM has no NICs' });
  for (const [index, nic] of mapped.nics.entries()) {
    const original = spec.nics[index];
    const mappedFrom = original.bridge !== nic.bridge ? ` (mapped from ${original.bridge})` : '';
    checks.push(
      target.facts.bridges.includes(nic.bridge)
        ? {
            name: `network:${original.mac}`,
            result: 'pass',
            reason: `bridge ${nic.bridge}${mappedFrom} exists on node ${target.nodeId}`,
          }
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
        ? {
            name: 'transport',
            result: 'pass',
            reason: `node ${target.nodeId} receives over the ${request.transport} transport`,
          }
        : {
            name: 'transport',
            result: 'fail',
            reason: `node ${target.nodeId} cannot receive over the ${request.transport} transport; use ${target.transports.join(' or ')}`,
          },
    );
  }
  return checks;
}

/** Why the image cannot be the VM's disk at the target: another VM holds it or has it as a disk. */
function diskInUse(
  spec: VmDefinition,
  name: string,
  disk: TargetDisk | undefined,
): string | undefined {
  if (!disk) return undefined;
  if (disk.holder && disk.holder !== spec.uuid)
    return `image ${name} at the target is in use by VM ${disk.holder}; a disk is never attached to two VMs`;
  const other = disk.usedBy.find((vm) => vm.uuid !== spec.uuid);
  if (other)
    return `image ${name} at the target is a disk of VM ${other.name} (${other.uuid}) there; a disk is never attached to two VMs — map the pool or rename the image`;
  return undefined;
}

/** Across clusters: why the target's image is not (yet) a usable mirror of the source's disk. */
function notTheMirror(
  request: TargetRequest,
  target: TargetFacts,
  original: { pool: string; image: string },
  name: string,
): string | undefined {
  const source = request.sourceDisks.find(
    (disk) => disk.pool === original.pool && disk.image === original.image,
  );
  const mirror = target.disks.get(name)?.mirror;
  if (!source || source.globalId === '') {
    return `the source disk ${original.pool}/${original.image} is not mirrored; pair the pools and enable mirroring of the VM's disks first`;
  }
  if (!mirror?.enabled)
    return `image ${name} at the target is not a mirror (mirroring is off there): it is another image of the same name — map the pool or rename it`;
  if (mirror.globalId !== source.globalId) {
    return `image ${name} at the target is another image (mirroring global id ${mirror.globalId}, the source's is ${source.globalId}) — map the pool or rename it`;
  }
  if (mirror.primary)
    return `image ${name} is primary at the target too (split brain, or it was promoted there); resolve it before moving the VM`;
  if (mirror.state !== 'up+replaying')
    return `the mirror ${name} at the target is ${mirror.state} (${mirror.description}); wait until it replays`;
  const lag = lagSeconds(source, mirror);
  if (lag === undefined)
    return `the mirror ${name} at the target has not received a mirror snapshot yet; wait until it is synced`;
  if (lag > target.maxMirrorLagSeconds) {
    return `the mirror ${name} at the target lags ${lag} s behind the source (limit ${target.maxMirrorLagSeconds} s, migration.maxMirrorLagSeconds); take a mirror snapshot and wait until it is replayed`;
  }
  return undefined;
}

function mirrorSummary(
  request: TargetRequest,
  target: TargetFacts,
  original: { pool: string; image: string },
  name: string,
): string {
  const source = request.sourceDisks.find(
    (disk) => disk.pool === original.pool && disk.image === original.image,
  )!;
  const mirror = target.disks.get(name)!.mirror!;
  return `global id ${mirror.globalId}, ${mirror.state}, ${lagSeconds(source, mirror)} s behind the source's newest mirror snapshot`;
}

/** How far the mirror's newest complete snapshot trails the source's newest (0 when it has it). */
function lagSeconds(source: MigrationDisk, mirror: ImageMirrorStatus): number | undefined {
  const mirrored = Date.parse(mirror.lastMirroredSnapshotAt);
  if (Number.isNaN(mirrored)) return undefined;
  const newest = Date.parse(source.lastSnapshotAt);
  return Number.isNaN(newest) ? 0 : Math.max(0, Math.round((newest - mirrored) / 1000));
}

export function allPass(checks: readonly PreflightCheck[]): boolean {
  return checks.every((check) => check.result !== 'fail');
}
