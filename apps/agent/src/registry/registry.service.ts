import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Clock } from '../shared/clock';
import type { NodeEntry, NodeInfo, NodeStatusInput } from './node.schema';
import type { RegistryRecord, RegistryRepository } from './registry.repository';

export type RegistryStore = Pick<
  RegistryRepository,
  'grantLease' | 'keepAlive' | 'revokeLease' | 'putInfo' | 'putStatus' | 'get' | 'list'
>;

export const MIN_TTL_SECONDS = 2;
export const MAX_TTL_SECONDS = 3600;

/**
 * The cluster's node registry. The agent registers and heartbeats its own node through this
 * service, and RegisterNode / Heartbeat calls for other nodes take the very same path.
 */
export class RegistryService {
  constructor(
    private readonly store: RegistryStore,
    private readonly clock: Clock,
    private readonly defaultTtlSeconds: number,
  ) {}

  /** Registers (or re-registers) a node under a new lease; ttlSeconds 0 uses the cluster default. */
  async register(info: NodeInfo, ttlSeconds = 0): Promise<{ leaseId: string; ttlSeconds: number }> {
    const ttl = ttlSeconds || this.defaultTtlSeconds;
    if (ttl < MIN_TTL_SECONDS || ttl > MAX_TTL_SECONDS) {
      throw new AgentError(
        ErrorCode.InvalidArgument,
        `ttl_seconds must be 0 (the default) or ${MIN_TTL_SECONDS}-${MAX_TTL_SECONDS}`,
      );
    }
    const leaseId = await this.store.grantLease(ttl);
    await this.store.putInfo(
      { ...info, registeredAt: this.clock.now().toISOString(), ttlSeconds: ttl },
      leaseId,
    );
    return { leaseId, ttlSeconds: ttl };
  }

  /**
   * Keeps a node's lease alive and records its status (stamped with this agent's clock). False
   * when the lease is gone or no longer the node's registration: the node must register again.
   */
  async heartbeat(nodeId: string, leaseId: string, status: NodeStatusInput): Promise<boolean> {
    const current = await this.store.get(nodeId);
    if (!current || current.leaseId !== leaseId) return false;
    if ((await this.store.keepAlive(leaseId)) <= 0) return false;
    await this.store.putStatus(
      nodeId,
      { ...status, heartbeatAt: this.clock.now().toISOString() },
      leaseId,
    );
    return true;
  }

  async revoke(leaseId: string): Promise<void> {
    await this.store.revokeLease(leaseId);
  }

  async list(): Promise<NodeEntry[]> {
    const records = await this.store.list();
    return records
      .map((record) => this.entry(record))
      .sort((a, b) => a.info.nodeId.localeCompare(b.info.nodeId));
  }

  async aliveNodes(): Promise<NodeEntry[]> {
    return (await this.list()).filter((entry) => entry.alive);
  }

  async find(nodeId: string): Promise<NodeEntry | undefined> {
    const record = await this.store.get(nodeId);
    return record && this.entry(record);
  }

  private entry(record: RegistryRecord): NodeEntry {
    const lastSeen = Date.parse(record.status?.heartbeatAt ?? record.info.registeredAt);
    const alive =
      record.leaseId !== '0' &&
      this.clock.now().getTime() - lastSeen <= record.info.ttlSeconds * 1000;
    return { info: record.info, status: record.status, alive };
  }
}
