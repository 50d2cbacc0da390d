import type { Etcd3 } from 'etcd3';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { ETCD_KEYS } from '../shared/etcd-keys';
import { apiKeyRecordSchema, type ApiKeyRecord, type StoredApiKey } from './api-key.schema';

/** API key records in etcd. Looked up by id; only the admin CLI lists them. */
export class ApiKeyRepository {
  constructor(private readonly etcd: Etcd3) {}

  async get(id: string): Promise<StoredApiKey | undefined> {
    const response = await this.etcd.get(ETCD_KEYS.apiKey(id)).exec();
    const kv = response.kvs[0];
    if (!kv) return undefined;
    return { record: decode(kv.key.toString(), kv.value.toString()), revision: kv.mod_revision };
  }

  /** Stores a new record; false when the id is taken. */
  async create(record: ApiKeyRecord): Promise<boolean> {
    const key = ETCD_KEYS.apiKey(record.id);
    const result = await this.etcd
      .if(key, 'Create', '==', 0)
      .then(this.etcd.put(key).value(JSON.stringify(record)))
      .commit();
    return result.succeeded;
  }

  /** Replaces a record if nobody changed it since it was read; false otherwise. */
  async replace(current: StoredApiKey, record: ApiKeyRecord): Promise<boolean> {
    const key = ETCD_KEYS.apiKey(current.record.id);
    const result = await this.etcd
      .if(key, 'Mod', '==', current.revision)
      .then(this.etcd.put(key).value(JSON.stringify(record)))
      .commit();
    return result.succeeded;
  }

  async list(): Promise<ApiKeyRecord[]> {
    const response = await this.etcd.getAll().prefix(ETCD_KEYS.apiKeysPrefix).exec();
    return response.kvs.map((kv) => decode(kv.key.toString(), kv.value.toString()));
  }
}

function decode(key: string, value: string): ApiKeyRecord {
  try {
    return apiKeyRecordSchema.parse(JSON.parse(value));
  } catch (error) {
    throw new AgentError(ErrorCode.Internal, `the API key record ${key} in etcd is malformed`, {
      cause: error,
    });
  }
}
