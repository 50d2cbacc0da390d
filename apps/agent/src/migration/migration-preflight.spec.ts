import { describe, expect, it } from 'vitest';
import type { HostFacts, VmDefinition, VmInstance } from '../drivers/hypervisor.driver';
import { checkCpu } from './cpu-baseline';
import { allPass, sourceChecks, targetChecks, type TargetFacts, type TargetRequest } from './migration-preflight';

const GiB = 1024 ** 3;
const spec: VmDefinition = {
  uuid: '6c2b7f7e-5a8f-4d5e-9a3b-1f2e3d4c5b6a',
  name: 'web-1',
  vcpus: 4,
  memoryBytes: 8 * GiB,
  disks: [{ pool: 'rbd-east', image: 'web-1-root', sizeBytes: 20 * GiB, bus: 'virtio' }],
  nics: [{ mac: '52:54:00:12:34:56', bridge: 'vmbr0', model: 'virtio', vlan: 0 }],
  cpuModel: 'x86-64-v2',
  hugepages: false,
  tenant: '',
  labels: {},
};
const facts: HostFacts = {
  hostname: 'node-2',
  fqdn: 'node-2.test',
  addresses: [],
  cpuModel: 'AMD EPYC 7543',
  cpuFlags: ['cmov', 'cx8', 'fpu', 'fxsr', 'mmx', 'syscall', 'sse', 'sse2', 'cx16', 'lahf_lm', 'popcnt', 'pni', 'sse4_1', 'sse4_2', 'ssse3'],
  cpuCount: 64,
  memoryBytes: 256 * GiB,
  hugepages: { pageSizeBytes: 2 * 1024 * 1024, total: 1024, free: 1024 },
  bridges: ['vmbr0', 'vmbr1'],
  versions: {},
};
const target = (over: Partial<TargetFacts> = {}): TargetFacts => ({
  nodeId: 'node-2',
  facts,
  usage: { cpuUsage: 0.1, memoryUsedBytes: 16 * GiB },
  committedMemoryBytes: 0,
  indexedOn: undefined,
  presentHere: false,
  images: new Set(['rbd-east/web-1-root']),
  transports: ['direct', 'tunnel'],
  ...over,
});
const request = (over: Partial<TargetRequest> = {}): TargetRequest => ({
  spec,
  online: true,
  transport: 'tunnel',
  sourceNodeId: 'node-1',
  sameCluster: true,
  storageMap: {},
  networkMap: {},
  source: { model: 'AMD EPYC 7543', flags: facts.cpuFlags },
  ...over,
});
const failed = (checks: { name: string; result: string }[]) => checks.filter((c) => c.result === 'fail').map((c) => c.name);

describe('target pre-flight', () => {
  it('passes a VM the node can take', () => {
    const checks = targetChecks(request(), target({ indexedOn: 'node-1' }));
    expect(failed(checks)).toEqual([]);
    expect(allPass(checks)).toBe(true);
  });

  it('fails each problem with a reason a person can act on', () => {
    const checks = targetChecks(
      request({ spec: { ...spec, hugepages: true, vcpus: 128, cpuModel: 'x86-64-v3' }, transport: 'tunnel' }),
      target({ usage: { cpuUsage: 0, memoryUsedBytes: 250 * GiB }, images: new Set(), facts: { ...facts, bridges: ['vmbr9'], hugepages: { ...facts.hugepages, free: 10 } }, transports: ['direct'] }),
    );
    expect(failed(checks)).toEqual(['cpu', 'hugepages', 'memory', 'vcpus', 'storage:rbd-east/web-1-root', 'network:52:54:00:12:34:56', 'transport']);
    const reasons = Object.fromEntries(checks.map((c) => [c.name, c.reason]));
    expect(reasons.cpu).toMatch(/lacks the flags avx, avx2, bmi1, bmi2, f16c, fma and 3 more that x86-64-v3 needs/);
    expect(reasons['network:52:54:00:12:34:56']).toMatch(/map vmbr0 to one of: vmbr9/);
    expect(reasons.hugepages).toMatch(/needs 4096 hugepages .* has 10 free/);
  });

  it('applies the storage and network maps', () => {
    const checks = targetChecks(
      request({ sameCluster: false, storageMap: { 'rbd-east': 'rbd-west' }, networkMap: { vmbr0: 'br-public' } }),
      target({ images: new Set(['rbd-west/web-1-root']), facts: { ...facts, bridges: ['br-public'] } }),
    );
    expect(failed(checks)).toEqual([]);
    expect(checks.find((c) => c.name.startsWith('storage'))?.reason).toMatch(/rbd-west\/web-1-root \(mapped from pool rbd-east\).*mirrored image/);
  });

  it('refuses a VM id taken in the target cluster, but not the VM itself moving within its cluster', () => {
    expect(failed(targetChecks(request({ sameCluster: false }), target({ indexedOn: 'node-7' })))).toContain('vm-id');
    expect(failed(targetChecks(request(), target({ indexedOn: 'node-1' })))).not.toContain('vm-id');
    expect(failed(targetChecks(request(), target({ presentHere: true })))).toContain('vm-id');
  });
});

describe('source pre-flight', () => {
  const vm = (state: VmInstance['runtime']['state'], lockedBy = ''): VmInstance => ({
    spec,
    runtime: { state, cpuUsage: 0, memoryUsedBytes: 0, uptimeSeconds: 0, stateChangedAt: '', lockedBy },
  });
  it('needs a running, free VM for a live migration and a stopped one offline', () => {
    expect(failed(sourceChecks(vm('running'), spec.uuid, 'node-1', true))).toEqual([]);
    expect(failed(sourceChecks(vm('stopped'), spec.uuid, 'node-1', true))).toEqual(['vm-state']);
    expect(failed(sourceChecks(vm('stopped'), spec.uuid, 'node-1', false))).toEqual([]);
    expect(failed(sourceChecks(vm('running', 'reboot'), spec.uuid, 'node-1', true))).toEqual(['vm-lock']);
    expect(failed(sourceChecks(undefined, spec.uuid, 'node-1', true))).toEqual(['vm-present']);
  });
});

describe('CPU compatibility', () => {
  it('compares host-model guests flag by flag, ignoring host-only flags', () => {
    expect(checkCpu('host-model', { model: 'A', flags: ['sse2', 'avx2', 'constant_tsc'] }, { model: 'B', flags: ['sse2', 'avx2'] }).result).toBe('pass');
    const check = checkCpu('host-model', { model: 'A', flags: ['sse2', 'avx512f'] }, { model: 'B', flags: ['sse2'] });
    expect(check.result).toBe('fail');
    expect(check.reason).toMatch(/lacks the flag avx512f of the source CPU/);
  });
  it('warns about models it cannot check', () => {
    expect(checkCpu('EPYC-Milan', { model: 'A', flags: [] }, { model: 'B', flags: [] }).result).toBe('warn');
  });
});
