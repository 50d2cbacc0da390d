import { strictMock } from '@debvisor/testing/strict-mock';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { LocalNodeService } from './local-node.service';
import { NodePresence } from './node-presence.service';
import type { NodeInfo, NodeStatusInput } from './node.schema';
import type { RegistryService } from './registry.service';

const info = { nodeId: 'node-1' } as NodeInfo;
const status = { health: 'ok' } as NodeStatusInput;

/** A registry whose lease dies when anything slow runs between registration and the first heartbeat. */
function setUp() {
  const events: string[] = [];
  let leaseAlive = false;
  const registry = strictMock<RegistryService>('registry', {
    register: async () => {
      events.push('register');
      leaseAlive = true;
      return { leaseId: 'lease-1', ttlSeconds: 3 };
    },
    heartbeat: async () => {
      events.push('heartbeat');
      return leaseAlive;
    },
    revoke: async () => undefined,
  });
  const slow = async <T>(name: string, value: T): Promise<T> => {
    events.push(name);
    if (leaseAlive) leaseAlive = false; // slower than the lease
    return value;
  };
  const local = strictMock<LocalNodeService>('local', {
    info: async () => info,
    status: () => slow('status', status),
  });
  const onRegistered = () => slow('onRegistered', undefined);
  const presence = new NodePresence(
    'node-1',
    registry,
    local,
    60_000,
    pino({ level: 'silent' }),
    onRegistered,
  );
  return { presence, events };
}

describe('NodePresence', () => {
  it('reads the node status before registering and runs onRegistered after the first heartbeat, so slow drivers cannot outlive the lease', async () => {
    const { presence, events } = setUp();
    await presence.start();
    await presence.stop();
    expect(events).toEqual(['status', 'register', 'heartbeat', 'onRegistered']);
  });

  it('keeps the lease alive with the last status while a status read hangs', async () => {
    const sent: NodeStatusInput[] = [];
    const registry = strictMock<RegistryService>('registry', {
      register: async () => ({ leaseId: 'lease-1', ttlSeconds: 3 }),
      heartbeat: async (_node: string, _lease: string, status: NodeStatusInput) => {
        sent.push(status);
        return true;
      },
      revoke: async () => undefined,
    });
    let reads = 0;
    const local = strictMock<LocalNodeService>('local', {
      info: async () => info,
      // the first read answers; every later one hangs (a `ceph health` that never returns)
      status: () => (++reads === 1 ? Promise.resolve(status) : new Promise(() => undefined)),
    });
    const presence = new NodePresence('node-1', registry, local, 20, pino({ level: 'silent' }));
    await presence.start();
    await vi.waitFor(() => expect(sent.length).toBeGreaterThanOrEqual(4), { timeout: 10_000 });
    await presence.stop();
    expect(sent.every((s) => s === status)).toBe(true);
    // one read hangs; no pile of reads behind it
    expect(reads).toBe(2);
  });
});
