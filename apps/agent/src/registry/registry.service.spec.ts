import { describe, expect, it } from 'vitest';
import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import { ErrorCode } from '../shared/agent-error';
import type { NodeInfo, NodeStatusInput, StoredNodeInfo } from './node.schema';
import type { RegistryRecord } from './registry.repository';
import { RegistryService, type RegistryStore } from './registry.service';

const info: NodeInfo = {
  nodeId: 'node-1',
  hostname: 'node-1',
  fqdn: 'node-1.example.org',
  addresses: ['10.0.0.1'],
  agentEndpoint: '10.0.0.1:9443',
  cpuModel: 'AMD EPYC 7543 32-Core Processor',
  cpuFlags: ['avx2'],
  cpuCount: 64,
  memoryBytes: 512 * 1024 ** 3,
  hugepages: { pageSizeBytes: 2097152, total: 0, free: 0 },
  versions: { agent: '0.1.0' },
  hypervisorDriver: 'sim',
  storageDriver: 'sim',
  bridges: ['vmbr0'],
};
const status: NodeStatusInput = {
  cpuUsage: 0.2,
  memoryUsedBytes: 1,
  memoryTotalBytes: 2,
  vmCount: 3,
  vmsRunning: 2,
  drivers: [],
  health: 'ok',
};

function record(
  overrides: Partial<RegistryRecord> = {},
  infoOverrides: Partial<StoredNodeInfo> = {},
): RegistryRecord {
  return {
    nodeId: 'node-1',
    leaseId: '42',
    info: { ...info, registeredAt: '2026-01-01T00:00:00.000Z', ttlSeconds: 15, ...infoOverrides },
    status: undefined,
    ...overrides,
  };
}

describe('RegistryService', () => {
  it('registers under a lease of the cluster default TTL, stamping the registration time', async () => {
    const clock = fakeClock();
    const store = strictMock<RegistryStore>('RegistryStore', {
      grantLease: async () => '42',
      putInfo: async () => undefined,
    });
    const result = await new RegistryService(store, clock, 15).register(info);
    expect(result).toEqual({ leaseId: '42', ttlSeconds: 15 });
    expect(store.grantLease).toHaveBeenCalledWith(15);
    expect(store.putInfo).toHaveBeenCalledWith(
      { ...info, registeredAt: clock.now().toISOString(), ttlSeconds: 15 },
      '42',
    );
  });

  it('refuses a TTL outside 2-3600 seconds without touching etcd', async () => {
    const service = new RegistryService(
      strictMock<RegistryStore>('RegistryStore'),
      fakeClock(),
      15,
    );
    await expect(service.register(info, 1)).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
    await expect(service.register(info, 3601)).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
    });
  });

  it('refreshes the lease and records the status stamped with its own clock', async () => {
    const clock = fakeClock();
    const store = strictMock<RegistryStore>('RegistryStore', {
      get: async () => record(),
      keepAlive: async () => 15,
      putStatus: async () => undefined,
    });
    await expect(
      new RegistryService(store, clock, 15).heartbeat('node-1', '42', status),
    ).resolves.toBe(true);
    expect(store.keepAlive).toHaveBeenCalledWith('42');
    expect(store.putStatus).toHaveBeenCalledWith(
      'node-1',
      { ...status, heartbeatAt: clock.now().toISOString() },
      '42',
    );
  });

  it('answers lease lost for a lease that is no longer the node registration, without refreshing it', async () => {
    const store = strictMock<RegistryStore>('RegistryStore', {
      get: async () => record({ leaseId: '43' }),
    });
    await expect(
      new RegistryService(store, fakeClock(), 15).heartbeat('node-1', '42', status),
    ).resolves.toBe(false);
  });

  it('answers lease lost when etcd says the lease expired', async () => {
    const store = strictMock<RegistryStore>('RegistryStore', {
      get: async () => record(),
      keepAlive: async () => 0,
    });
    await expect(
      new RegistryService(store, fakeClock(), 15).heartbeat('node-1', '42', status),
    ).resolves.toBe(false);
  });

  it('reports a node alive while it was heard from within its TTL', async () => {
    const clock = fakeClock(new Date('2026-01-01T00:00:20.000Z'));
    const fresh = record({ status: { ...status, heartbeatAt: '2026-01-01T00:00:10.000Z' } });
    const stale = record(
      { nodeId: 'node-2', status: { ...status, heartbeatAt: '2026-01-01T00:00:04.000Z' } },
      { nodeId: 'node-2' },
    );
    const unleased = record(
      {
        nodeId: 'node-3',
        leaseId: '0',
        status: { ...status, heartbeatAt: '2026-01-01T00:00:19.000Z' },
      },
      { nodeId: 'node-3' },
    );
    const store = strictMock<RegistryStore>('RegistryStore', {
      list: async () => [stale, unleased, fresh],
    });
    const entries = await new RegistryService(store, clock, 15).list();
    expect(entries.map((e) => [e.info.nodeId, e.alive])).toEqual([
      ['node-1', true],
      ['node-2', false],
      ['node-3', false],
    ]);
  });
});
