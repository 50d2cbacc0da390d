import { describe, expect, it } from 'vitest';
import {
  bandwidthBytes,
  firstEnabled,
  identityMaps,
  initialForm,
  mapErrors,
  migrateBody,
  nodeChoices,
  optionAdvice,
  optionErrors,
  preflightPassed,
  preflightScope,
  remoteChoices,
  transferEstimate,
  type MigrationForm,
  type NodeResource,
  type PreflightAnswer,
  type RemoteStatus,
} from './migration-form';

const GiB = 1024 ** 3;

const vm = {
  remote: 'dc-east',
  node: 'node-1',
  status: 'running',
  disks: [
    { pool: 'rbd', image: 'db-01-disk0', sizeBytes: 60 * GiB, bus: 'virtio' },
    { pool: 'rbd', image: 'db-01-disk1', sizeBytes: 500 * GiB, bus: 'virtio' },
    { pool: 'ssd', image: 'db-01-wal', sizeBytes: 10 * GiB, bus: 'virtio' },
  ],
  nics: [
    { mac: '52:54:00:00:00:01', bridge: 'vmbr0', model: 'virtio', vlan: null },
    { mac: '52:54:00:00:00:02', bridge: 'vmbr1', model: 'virtio', vlan: 20 },
    { mac: '52:54:00:00:00:03', bridge: 'vmbr0', model: 'e1000', vlan: null },
  ],
};

function form(change: Partial<MigrationForm> = {}): MigrationForm {
  return { ...initialForm(vm), targetRemote: 'dc-west', targetNode: 'node-2', ...change };
}

function node(remote: string, id: string, alive = true): NodeResource {
  return {
    type: 'node',
    remote,
    id,
    name: id,
    status: alive ? 'ok' : 'offline',
    alive,
    fqdn: `${id}.example`,
    agentEndpoint: '127.0.0.1:1',
    cpuCount: 16,
    cpuUsage: 0.1,
    memoryTotalBytes: 64 * GiB,
    memoryUsedBytes: 16 * GiB,
    vmCount: 3,
    vmsRunning: 2,
    hypervisorDriver: 'sim',
    storageDriver: 'sim',
    heartbeatAt: null,
    state: alive ? 'online' : 'down',
    stateSince: null,
    lastSeenAt: null,
    stale: false,
  };
}

function remote(
  id: string,
  status: RemoteStatus['status'],
  privileges: RemoteStatus['privileges'],
): RemoteStatus {
  return {
    remote: id,
    status,
    health: status,
    privileges,
    lastRefreshAt: null,
    nodes: { total: 2, alive: 2 },
    vms: { total: 1, running: 1 },
    unreachableNodes: {},
    error: null,
    since: null,
  };
}

describe('the migration form', () => {
  it('prefills one identity row per source pool (with its images) and per bridge (with its NICs)', () => {
    expect(identityMaps(vm)).toEqual({
      storage: [
        { pool: 'rbd', images: ['db-01-disk0', 'db-01-disk1'], target: 'rbd' },
        { pool: 'ssd', images: ['db-01-wal'], target: 'ssd' },
      ],
      network: [
        { bridge: 'vmbr0', nics: ['52:54:00:00:00:01', '52:54:00:00:00:03'], target: 'vmbr0' },
        { bridge: 'vmbr1', nics: ['52:54:00:00:00:02'], target: 'vmbr1' },
      ],
    });
  });

  it('starts as a live migration for a running VM and an offline one for a stopped VM', () => {
    expect(initialForm(vm).online).toBe(true);
    expect(initialForm({ ...vm, status: 'stopped' }).online).toBe(false);
    expect(initialForm(vm).targetRemote).toBe('dc-east');
  });

  it('builds the API body: MiB/s as bytes, only the renamed pools and bridges, the transport only when chosen', () => {
    const body = migrateBody(
      form({
        bandwidthMiBps: '1.5',
        downtimeLimitMs: '500',
        storage: [
          { pool: 'rbd', images: [], target: 'rbd-dr' },
          { pool: 'ssd', images: [], target: 'ssd' },
        ],
        network: [{ bridge: 'vmbr0', nics: [], target: ' vmbr9 ' }],
        mode: 'auto',
        allowPostcopy: true,
      }),
    );
    expect(body).toEqual({
      targetRemote: 'dc-west',
      targetNode: 'node-2',
      online: true,
      mode: 'auto',
      autoConverge: false,
      allowPostcopy: true,
      downtimeLimitMs: 500,
      bandwidthLimitBytes: 1_572_864,
      completionTimeoutSecondsPerGib: 60,
      storageMap: { rbd: 'rbd-dr' },
      networkMap: { vmbr0: 'vmbr9' },
    });
    expect(migrateBody(form({ transport: 'direct' })).transport).toBe('direct');
  });

  it('sends an empty bandwidth as unlimited (0) and refuses what is not a number', () => {
    expect(bandwidthBytes('')).toBe(0);
    expect(bandwidthBytes(' 1 ')).toBe(1024 * 1024);
    expect(bandwidthBytes('abc')).toMatch(/number/);
    expect(bandwidthBytes('-1')).toMatch(/number/);
    expect(optionErrors(form({ bandwidthMiBps: 'fast' }))).toHaveProperty('bandwidthMiBps');
  });

  it('checks the downtime limit and completion timeout against the bounds the API accepts', () => {
    expect(optionErrors(form())).toEqual({});
    expect(optionErrors(form({ downtimeLimitMs: '0' }))).toHaveProperty('downtimeLimitMs');
    expect(optionErrors(form({ downtimeLimitMs: '600001' }))).toHaveProperty('downtimeLimitMs');
    expect(optionErrors(form({ downtimeLimitMs: '2.5' }))).toHaveProperty('downtimeLimitMs');
    expect(optionErrors(form({ completionTimeoutSecondsPerGib: '0' }))).toEqual({});
    expect(optionErrors(form({ completionTimeoutSecondsPerGib: '' }))).toHaveProperty(
      'completionTimeoutSecondsPerGib',
    );
    expect(() => migrateBody(form({ downtimeLimitMs: 'x' }))).toThrow(/downtimeLimitMs/);
  });

  it('refuses map names the agents would refuse', () => {
    const errors = mapErrors(
      form({
        storage: [{ pool: 'rbd', images: [], target: '-bad' }],
        network: [{ bridge: 'vmbr0', nics: [], target: '' }],
      }),
    );
    expect(Object.keys(errors)).toEqual(['storage:rbd', 'network:vmbr0']);
    expect(() =>
      migrateBody(form({ storage: [{ pool: 'rbd', images: [], target: 'a b' }] })),
    ).toThrow(/storage:rbd/);
  });

  it('needs a target before it builds a body', () => {
    expect(() => migrateBody(form({ targetNode: '' }))).toThrow(/target/);
  });

  it('advises on auto mode without post-copy and on offline migrations', () => {
    expect(optionAdvice(form({ mode: 'auto' }))).toHaveLength(1);
    expect(optionAdvice(form({ mode: 'auto', allowPostcopy: true }))).toEqual([]);
    expect(optionAdvice(form({ online: false }))[0]).toMatch(/stopped VM/);
  });
});

describe('the target choices', () => {
  it('offers remotes where vm.migrate is held and that answer; the others stay listed, disabled with the reason', () => {
    const choices = remoteChoices(
      [
        remote('dc-west', 'online', ['vm.audit', 'vm.migrate']),
        remote('dc-north', 'online', ['vm.audit']),
        remote('dc-east', 'online', ['vm.migrate']),
        remote('dc-south', 'unreachable', ['vm.migrate']),
      ],
      'dc-east',
    );
    expect(choices.map((c) => [c.value, c.disabledReason])).toEqual([
      ['dc-east', null],
      ['dc-north', 'needs the vm.migrate privilege there'],
      ['dc-south', 'unreachable'],
      ['dc-west', null],
    ]);
    expect(choices[0].label).toMatch(/this remote/);
  });

  it('lists the nodes of the chosen remote, offline ones and the VM’s own node disabled', () => {
    const nodes = [
      node('dc-east', 'node-2'),
      node('dc-east', 'node-1'),
      node('dc-east', 'node-3', false),
      node('dc-west', 'node-1'),
    ];
    const east = nodeChoices(nodes, 'dc-east', vm);
    expect(east.map((c) => [c.value, c.disabledReason])).toEqual([
      ['node-1', 'the VM runs here'],
      ['node-2', null],
      ['node-3', 'offline'],
    ]);
    expect(east[1].label).toBe('node-2 — ok, 2 VMs running, 48 GiB free');
    expect(firstEnabled(east)).toBe('node-2');
    // On another remote, a node of the same id is a different node.
    expect(nodeChoices(nodes, 'dc-west', vm).map((c) => c.disabledReason)).toEqual([null]);
    expect(firstEnabled(nodeChoices(nodes, 'dc-south', vm))).toBe('');
  });
});

describe('the pre-flight gate', () => {
  const answer = (results: ('pass' | 'warn' | 'fail')[]): PreflightAnswer => ({
    ok: !results.includes('fail'),
    source: { remote: 'dc-east', node: 'node-1' },
    target: { remote: 'dc-west', node: 'node-2' },
    transport: 'tunnel',
    checks: results.map((result, i) => ({
      side: 'target',
      name: `check-${i}`,
      result,
      reason: 'because',
    })),
    estimate: {
      memoryBytes: GiB,
      measuredBytesPerSecond: null,
      measuredMigrations: 0,
      linkCapBytesPerSecond: null,
      bytesPerSecond: null,
      seconds: null,
    },
  });

  it('lets the wizard on when no check failed for the current target and maps', () => {
    const f = form();
    expect(preflightPassed(answer(['pass', 'warn']), preflightScope(f), f)).toBe(true);
    expect(preflightPassed(answer(['pass', 'fail']), preflightScope(f), f)).toBe(false);
    expect(preflightPassed(null, null, f)).toBe(false);
  });

  it('asks for the checks again when the target or a map changed, but not for an option', () => {
    const f = form();
    const scope = preflightScope(f);
    expect(preflightPassed(answer(['pass']), scope, form({ targetNode: 'node-3' }))).toBe(false);
    expect(
      preflightPassed(
        answer(['pass']),
        scope,
        form({ storage: [{ pool: 'rbd', images: [], target: 'other' }] }),
      ),
    ).toBe(false);
    expect(preflightPassed(answer(['pass']), scope, form({ bandwidthMiBps: '10' }))).toBe(true);
  });
});

describe('the estimated transfer time', () => {
  const remotes = { source: 'dc-east', target: 'dc-west' };
  const estimate = (change: Partial<PreflightAnswer['estimate']> = {}) => ({
    memoryBytes: 4 * GiB,
    measuredBytesPerSecond: null,
    measuredMigrations: 0,
    linkCapBytesPerSecond: null,
    bytesPerSecond: null,
    seconds: null,
    ...change,
  });
  const MiBps = 1024 * 1024;

  it('asks for the pre-flight first, and says an offline migration sends no memory', () => {
    expect(transferEstimate(undefined, form(), remotes)).toMatch(/^Run the pre-flight checks/);
    expect(transferEstimate(estimate(), form({ online: false }), remotes)).toMatch(
      /no memory is sent/,
    );
  });

  it('estimates from the rate measured between the remotes, and says so', () => {
    expect(
      transferEstimate(
        estimate({ measuredBytesPerSecond: 100 * MiBps, measuredMigrations: 3 }),
        form(),
        remotes,
      ),
    ).toBe(
      'About 41 s to send 4.0 GiB at 100 MiB/s (the rate measured over the last 3 migrations between dc-east and dc-west); a guest that writes to its memory takes longer.',
    );
  });

  it('follows the bandwidth limit as it is typed, and the link cap, whichever is slowest', () => {
    const measured = estimate({
      measuredBytesPerSecond: 100 * MiBps,
      measuredMigrations: 1,
      linkCapBytesPerSecond: 50 * MiBps,
    });
    expect(transferEstimate(measured, form(), remotes)).toMatch(
      /^About 1 min 22 s .* at 50\.0 MiB\/s \(the link's bandwidth cap\)/,
    );
    expect(transferEstimate(measured, form({ bandwidthMiBps: '16' }), remotes)).toMatch(
      /^About 4 min 16 s .* at 16\.0 MiB\/s \(the bandwidth limit above\)/,
    );
  });

  it('has no estimate before any migration was measured, unless a limit is set', () => {
    expect(transferEstimate(estimate(), form(), remotes)).toMatch(/^No estimate yet/);
    expect(transferEstimate(estimate(), form({ bandwidthMiBps: '1024' }), remotes)).toMatch(
      /^About 4 s /,
    );
  });
});
