import { describe, expect, it } from 'vitest';
import type { HostFacts, VmDefinition, VmInstance } from '../drivers/hypervisor.driver';
import type { ImageMirrorStatus } from '../drivers/storage.driver';
import { checkCpu } from './cpu-baseline';
import {
  allPass,
  sourceChecks,
  targetChecks,
  type TargetDisk,
  type TargetFacts,
  type TargetRequest,
} from './migration-preflight';

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
  cpuFlags: [
    'cmov',
    'cx8',
    'fpu',
    'fxsr',
    'mmx',
    'syscall',
    'sse',
    'sse2',
    'cx16',
    'lahf_lm',
    'popcnt',
    'pni',
    'sse4_1',
    'sse4_2',
    'ssse3',
  ],
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
  disks: new Map(),
  vmNames: new Map(),
  unreachableNodes: [],
  maxMirrorLagSeconds: 300,
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
  sourceDisks: [],
  ...over,
});
const GLOBAL_ID = '0c5f6a0e-8d1b-4d7e-b1a2-3c4d5e6f7a8b';
const SNAPSHOT_AT = '2026-12-07T12:00:00.000Z';
/** The source's answer about its disk: mirrored, primary. */
const sourceDisk = {
  pool: 'rbd-east',
  image: 'web-1-root',
  globalId: GLOBAL_ID,
  primary: true,
  lastSnapshotAt: SNAPSHOT_AT,
};
/** The target's mirror of it, replaying and in sync. */
const mirror = (over: Partial<ImageMirrorStatus> = {}): ImageMirrorStatus => ({
  pool: 'rbd-west',
  image: 'web-1-root',
  enabled: true,
  primary: false,
  state: 'up+replaying',
  description: 'replaying',
  lastUpdate: SNAPSHOT_AT,
  globalId: GLOBAL_ID,
  mode: 'snapshot',
  lastMirroredSnapshotAt: SNAPSHOT_AT,
  lastSnapshotAt: SNAPSHOT_AT,
  bytesPerSecond: 0,
  secondsUntilSynced: 0,
  peerState: 'up+stopped',
  peerDescription: 'local image is primary',
  scheduleInterval: '',
  splitBrain: false,
  ...over,
});
const crossCluster = (over: Partial<TargetRequest> = {}) =>
  request({
    sameCluster: false,
    storageMap: { 'rbd-east': 'rbd-west' },
    sourceDisks: [sourceDisk],
    ...over,
  });
const westDisk = (disk: Partial<TargetDisk> = {}) =>
  target({
    images: new Set(['rbd-west/web-1-root']),
    disks: new Map([
      ['rbd-west/web-1-root', { mirror: mirror(), holder: undefined, usedBy: [], ...disk }],
    ]),
  });
const failed = (checks: { name: string; result: string }[]) =>
  checks.filter((c) => c.result === 'fail').map((c) => c.name);

describe('target pre-flight', () => {
  it('passes a VM the node can take', () => {
    const checks = targetChecks(request(), target({ indexedOn: 'node-1' }));
    expect(failed(checks)).toEqual([]);
    expect(allPass(checks)).toBe(true);
  });

  it('fails each problem with a reason a person can act on', () => {
    const checks = targetChecks(
      request({
        spec: { ...spec, hugepages: true, vcpus: 128, cpuModel: 'x86-64-v3' },
        transport: 'tunnel',
      }),
      target({
        usage: { cpuUsage: 0, memoryUsedBytes: 250 * GiB },
        images: new Set(),
        facts: { ...facts, bridges: ['vmbr9'], hugepages: { ...facts.hugepages, free: 10 } },
        transports: ['direct'],
      }),
    );
    expect(failed(checks)).toEqual([
      'cpu',
      'hugepages',
      'memory',
      'vcpus',
      'storage:rbd-east/web-1-root',
      'network:52:54:00:12:34:56',
      'transport',
    ]);
    const reasons = Object.fromEntries(checks.map((c) => [c.name, c.reason]));
    expect(reasons.cpu).toMatch(
      /lacks the flags avx, avx2, bmi1, bmi2, f16c, fma and 3 more that x86-64-v3 needs/,
    );
    expect(reasons['network:52:54:00:12:34:56']).toMatch(/map vmbr0 to one of: vmbr9/);
    expect(reasons.hugepages).toMatch(/needs 4096 hugepages .* has 10 free/);
  });

  it('applies the storage and network maps', () => {
    const checks = targetChecks(crossCluster({ networkMap: { vmbr0: 'br-public' } }), {
      ...westDisk(),
      facts: { ...facts, bridges: ['br-public'] },
    });
    expect(failed(checks)).toEqual([]);
    expect(checks.find((c) => c.name.startsWith('storage'))?.reason).toMatch(
      new RegExp(
        `rbd-west/web-1-root \\(mapped from pool rbd-east\\) at the target is the mirror of the source's disk: global id ${GLOBAL_ID}, up\\+replaying, 0 s behind`,
      ),
    );
  });

  it('refuses a VM id taken in the target cluster, but not the VM itself moving within its cluster', () => {
    expect(
      failed(targetChecks(request({ sameCluster: false }), target({ indexedOn: 'node-7' }))),
    ).toContain('vm-id');
    expect(failed(targetChecks(request(), target({ indexedOn: 'node-1' })))).not.toContain('vm-id');
    expect(failed(targetChecks(request(), target({ presentHere: true })))).toContain('vm-id');
  });

  it('refuses a VM whose name another VM has in the target cluster', () => {
    const checks = targetChecks(crossCluster(), {
      ...westDisk(),
      vmNames: new Map([['web-1', '11111111-2222-4333-8444-555555555555']]),
    });
    expect(failed(checks)).toEqual(['vm-name']);
    expect(checks.find((c) => c.name === 'vm-name')?.reason).toMatch(
      /another VM named web-1 \(11111111-2222-4333-8444-555555555555\); rename one/,
    );
    expect(
      failed(targetChecks(request(), target({ vmNames: new Map([['web-1', spec.uuid]]) }))),
    ).toEqual([]);
  });
});

describe('target pre-flight across clusters: the target image must be the mirror of the source disk', () => {
  const storageReason = (checks: { name: string; result: string; reason: string }[]) => {
    const check = checks.find((c) => c.name === 'storage:rbd-east/web-1-root')!;
    expect(check.result).toBe('fail');
    return check.reason;
  };

  it('refuses an image of the same name that is not mirrored — another VM’s disk, as dns-01-disk0 was on the demo', () => {
    expect(
      storageReason(
        targetChecks(
          crossCluster(),
          westDisk({ mirror: mirror({ enabled: false, globalId: '', state: '' }) }),
        ),
      ),
    ).toMatch(/not a mirror \(mirroring is off there\): it is another image of the same name/);
  });

  it('refuses a mirrored image of another global id', () => {
    expect(
      storageReason(
        targetChecks(crossCluster(), westDisk({ mirror: mirror({ globalId: 'another-id' }) })),
      ),
    ).toMatch(/is another image \(mirroring global id another-id, the source's is 0c5f/);
  });

  it('refuses when the source disk is not mirrored at all', () => {
    expect(
      storageReason(
        targetChecks(crossCluster({ sourceDisks: [{ ...sourceDisk, globalId: '' }] }), westDisk()),
      ),
    ).toMatch(/source disk rbd-east\/web-1-root is not mirrored/);
    expect(storageReason(targetChecks(crossCluster({ sourceDisks: [] }), westDisk()))).toMatch(
      /is not mirrored/,
    );
  });

  it('refuses a target image that is primary, not replaying, or lagging beyond the limit', () => {
    expect(
      storageReason(targetChecks(crossCluster(), westDisk({ mirror: mirror({ primary: true }) }))),
    ).toMatch(/primary at the target too/);
    expect(
      storageReason(
        targetChecks(
          crossCluster(),
          westDisk({ mirror: mirror({ state: 'down+unknown', description: 'peer gone' }) }),
        ),
      ),
    ).toMatch(/is down\+unknown \(peer gone\); wait until it replays/);
    expect(
      storageReason(
        targetChecks(crossCluster(), westDisk({ mirror: mirror({ lastMirroredSnapshotAt: '' }) })),
      ),
    ).toMatch(/not received a mirror snapshot yet/);
    const behind = mirror({ lastMirroredSnapshotAt: '2026-12-07T11:50:00.000Z' });
    expect(storageReason(targetChecks(crossCluster(), westDisk({ mirror: behind })))).toMatch(
      /lags 600 s behind the source \(limit 300 s, migration.maxMirrorLagSeconds\)/,
    );
    expect(
      failed(
        targetChecks(crossCluster(), { ...westDisk({ mirror: behind }), maxMirrorLagSeconds: 600 }),
      ),
    ).toEqual([]);
  });

  it('refuses an image another VM holds or has as a disk at the target, in either direction', () => {
    expect(storageReason(targetChecks(crossCluster(), westDisk({ holder: 'vm-other' })))).toMatch(
      /in use by VM vm-other; a disk is never attached to two VMs/,
    );
    const usedBy = [{ uuid: 'aaaaaaaa-2222-4333-8444-555555555555', name: 'dns-01' }];
    expect(storageReason(targetChecks(crossCluster(), westDisk({ usedBy })))).toMatch(
      /is a disk of VM dns-01 \(aaaaaaaa-/,
    );
    expect(
      storageReason(
        targetChecks(request(), {
          ...target(),
          disks: new Map([
            ['rbd-east/web-1-root', { mirror: undefined, holder: 'vm-other', usedBy: [] }],
          ]),
        }),
      ),
    ).toMatch(/in use by VM vm-other/);
    // The VM's own lock and definition are no obstacle (a move within the cluster).
    expect(
      failed(
        targetChecks(request(), {
          ...target(),
          disks: new Map([
            [
              'rbd-east/web-1-root',
              {
                mirror: undefined,
                holder: spec.uuid,
                usedBy: [{ uuid: spec.uuid, name: 'web-1' }],
              },
            ],
          ]),
        }),
      ),
    ).toEqual([]);
  });

  it('warns when some nodes of the target cluster could not say which disks their VMs use', () => {
    const checks = targetChecks(crossCluster(), { ...westDisk(), unreachableNodes: ['node-3'] });
    expect(checks.find((c) => c.name === 'storage-users')).toMatchObject({
      result: 'warn',
      reason: expect.stringMatching(/node-3/),
    });
  });
});

describe('source pre-flight', () => {
  const vm = (state: VmInstance['runtime']['state'], lockedBy = ''): VmInstance => ({
    spec,
    runtime: {
      state,
      cpuUsage: 0,
      memoryUsedBytes: 0,
      uptimeSeconds: 0,
      stateChangedAt: '',
      lockedBy,
    },
  });
  it('needs a running, free VM for a live migration and a stopped one offline', () => {
    expect(failed(sourceChecks(vm('running'), spec.uuid, 'node-1', true))).toEqual([]);
    expect(failed(sourceChecks(vm('stopped'), spec.uuid, 'node-1', true))).toEqual(['vm-state']);
    expect(failed(sourceChecks(vm('stopped'), spec.uuid, 'node-1', false))).toEqual([]);
    expect(failed(sourceChecks(vm('running', 'reboot'), spec.uuid, 'node-1', true))).toEqual([
      'vm-lock',
    ]);
    expect(failed(sourceChecks(undefined, spec.uuid, 'node-1', true))).toEqual(['vm-present']);
  });
});

describe('CPU compatibility', () => {
  it('compares host-model guests flag by flag, ignoring host-only flags', () => {
    expect(
      checkCpu(
        'host-model',
        { model: 'A', flags: ['sse2', 'avx2', 'constant_tsc'] },
        { model: 'B', flags: ['sse2', 'avx2'] },
      ).result,
    ).toBe('pass');
    const check = checkCpu(
      'host-model',
      { model: 'A', flags: ['sse2', 'avx512f'] },
      { model: 'B', flags: ['sse2'] },
    );
    expect(check.result).toBe('fail');
    expect(check.reason).toMatch(/lacks the flag avx512f of the source CPU/);
  });
  it('warns about models it cannot check', () => {
    expect(
      checkCpu('EPYC-Milan', { model: 'A', flags: [] }, { model: 'B', flags: [] }).result,
    ).toBe('warn');
  });
});
