import { EtcdLeaseInvalidError, type Etcd3 } from 'etcd3';
import { ETCD_CALL_TIMEOUT_MS } from '../shared/etcd-client';
import { ETCD_KEYS } from '../shared/etcd-keys';
import type { Logger } from '../shared/logger';
import {
  storedNodeInfoSchema,
  storedNodeStatusSchema,
  type StoredNodeInfo,
  type StoredNodeStatus,
} from './node.schema';

export interface RegistryRecord {
  nodeId: string;
  info: StoredNodeInfo;
  /** The lease the info key is bound to ('0': none). */
  leaseId: string;
  status: StoredNodeStatus | undefined;
}

/** The node registry in etcd: /debvisor/nodes/<id>/{info,status}, bound to the node's lease. */
export class RegistryRepository {
  constructor(
    private readonly etcd: Etcd3,
    private readonly logger: Logger,
  ) {}

  async grantLease(ttlSeconds: number): Promise<string> {
    const response = await this.etcd.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 });
    return response.ID;
  }

  /** Refreshes a lease; answers its remaining TTL in seconds, 0 when it is gone. */
  async keepAlive(leaseId: string): Promise<number> {
    const stream = await this.etcd.leaseClient.leaseKeepAlive();
    try {
      return await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error('etcd did not answer the lease keep-alive in time')),
          ETCD_CALL_TIMEOUT_MS,
        );
        stream.on('data', (response: { TTL: string }) => {
          clearTimeout(timer);
          resolve(Math.max(0, Number(response.TTL)));
        });
        stream.on('error', (error: Error) => {
          clearTimeout(timer);
          if (error instanceof EtcdLeaseInvalidError || /lease not found/i.test(error.message))
            resolve(0);
          else reject(error);
        });
        stream.write({ ID: leaseId });
      });
    } finally {
      stream.end();
    }
  }

  async revokeLease(leaseId: string): Promise<void> {
    try {
      await this.etcd.leaseClient.leaseRevoke({ ID: leaseId });
    } catch (error) {
      if (!(
        error instanceof EtcdLeaseInvalidError || /lease not found/i.test((error as Error).message)
      ))
        throw error;
    }
  }

  async putInfo(info: StoredNodeInfo, leaseId: string): Promise<void> {
    await this.etcd.put(ETCD_KEYS.nodeInfo(info.nodeId)).value(JSON.stringify(info)).lease(leaseId);
  }

  async putStatus(nodeId: string, status: StoredNodeStatus, leaseId: string): Promise<void> {
    await this.etcd.put(ETCD_KEYS.nodeStatus(nodeId)).value(JSON.stringify(status)).lease(leaseId);
  }

  async get(nodeId: string): Promise<RegistryRecord | undefined> {
    return (await this.read(ETCD_KEYS.node(nodeId))).find((r) => r.nodeId === nodeId);
  }

  async list(): Promise<RegistryRecord[]> {
    return this.read(ETCD_KEYS.nodesPrefix);
  }

  private async read(prefix: string): Promise<RegistryRecord[]> {
    const response = await this.etcd.getAll().prefix(prefix).exec();
    const infos = new Map<string, { info: StoredNodeInfo; leaseId: string }>();
    const statuses = new Map<string, StoredNodeStatus>();
    for (const kv of response.kvs) {
      const key = kv.key.toString();
      const match = /^\/debvisor\/nodes\/([^/]+)\/(info|status)$/.exec(key);
      if (!match) continue;
      const schema = match[2] === 'info' ? storedNodeInfoSchema : storedNodeStatusSchema;
      const parsed = schema.safeParse(parseJson(kv.value.toString()));
      if (!parsed.success) {
        this.logger.warn({ key }, 'ignoring a malformed node registry entry');
        continue;
      }
      if (match[2] === 'info')
        infos.set(match[1], { info: parsed.data as StoredNodeInfo, leaseId: kv.lease });
      else statuses.set(match[1], parsed.data as StoredNodeStatus);
    }
    return [...infos].map(([nodeId, { info, leaseId }]) => ({
      nodeId,
      info,
      leaseId,
      status: statuses.get(nodeId),
    }));
  }
}

function parseJson(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}
