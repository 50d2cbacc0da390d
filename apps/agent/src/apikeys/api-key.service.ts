import { formatAgentApiKey, parseAgentApiKey } from '@debvisor/common';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { AgentError, ErrorCode } from '../shared/agent-error';
import type { Clock } from '../shared/clock';
import type { Logger } from '../shared/logger';
import type { ApiKeyRepository } from './api-key.repository';
import {
  summarize,
  type ApiKeyRecord,
  type ApiKeySummary,
  type StoredApiKey,
} from './api-key.schema';

export type ApiKeyStore = Pick<ApiKeyRepository, 'get' | 'create' | 'replace' | 'list'>;

export interface ApiKeyServiceOptions {
  /** How long a fetched record is trusted; revocation and rotation take effect within this bound. */
  cacheTtlMs: number;
  /** lastUsedAt is written at most this often per key (and agent). */
  lastUsedIntervalMs?: number;
}

export interface NewApiKey {
  principal: string;
  permissions: string[];
  description?: string;
  expiresAt: Date | null;
}

export interface IssuedApiKey {
  /** `dvk_<id>_<secret>`: shown once, never stored. */
  key: string;
  summary: ApiKeySummary;
}

export interface AuthenticatedKey {
  id: string;
  principal: string;
  permissions: readonly string[];
}

const LAST_USED_INTERVAL_MS = 60_000;
const MAX_CAS_ATTEMPTS = 5;

/**
 * Agent API keys: issue, list, revoke, rotate, and authenticate presented keys.
 *
 * Failures of authenticate() are all UNAUTHENTICATED: "invalid API key" for anything that does not
 * prove knowledge of a live key's secret (malformed, unknown id, wrong secret), and "API key
 * revoked" / "API key expired" only once the secret matched.
 */
export class ApiKeyService {
  private readonly cache = new Map<string, { stored: StoredApiKey; fetchedAt: number }>();
  private readonly lastUsedWrites = new Map<string, number>();
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly store: ApiKeyStore,
    private readonly clock: Clock,
    private readonly options: ApiKeyServiceOptions,
    private readonly logger?: Logger,
  ) {}

  async create(input: NewApiKey): Promise<IssuedApiKey> {
    const secret = newSecret();
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const record: ApiKeyRecord = {
        id: randomBytes(8).toString('hex'),
        principal: input.principal,
        permissions: [...new Set(input.permissions)],
        description: input.description ?? '',
        secretSha256: sha256Hex(secret),
        createdAt: this.clock.now().toISOString(),
        expiresAt: input.expiresAt?.toISOString() ?? null,
        lastUsedAt: null,
        revokedAt: null,
      };
      if (await this.store.create(record))
        return { key: formatAgentApiKey(record.id, secret), summary: summarize(record) };
    }
    throw new AgentError(ErrorCode.Internal, 'could not allocate an unused API key id');
  }

  async list(): Promise<ApiKeySummary[]> {
    const records = await this.store.list();
    return records
      .map(summarize)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  /** Revokes a key; revoking it again keeps the first revocation time. */
  async revoke(id: string): Promise<{ summary: ApiKeySummary; alreadyRevoked: boolean }> {
    return this.update<{ summary: ApiKeySummary; alreadyRevoked: boolean }>(id, (record) => {
      if (record.revokedAt) return { result: { summary: summarize(record), alreadyRevoked: true } };
      const next = { ...record, revokedAt: this.clock.now().toISOString() };
      return { next, result: { summary: summarize(next), alreadyRevoked: false } };
    });
  }

  /** A new secret for the same id, principal, permissions and expiry; the old secret stops working. */
  async rotate(id: string): Promise<IssuedApiKey> {
    const secret = newSecret();
    return this.update(id, (record) => {
      if (record.revokedAt)
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `API key ${id} is revoked; create a new one`,
        );
      if (this.isExpired(record))
        throw new AgentError(
          ErrorCode.FailedPrecondition,
          `API key ${id} has expired; create a new one`,
        );
      const next = { ...record, secretSha256: sha256Hex(secret) };
      return { next, result: { key: formatAgentApiKey(id, secret), summary: summarize(next) } };
    });
  }

  async authenticate(presented: string): Promise<AuthenticatedKey> {
    const parsed = parseAgentApiKey(presented);
    if (!parsed) throw unauthenticated('invalid API key');
    const hash = Buffer.from(sha256Hex(parsed.secret), 'hex');
    let stored = await this.lookup(parsed.id, false);
    if (stored && !matches(stored.record, hash)) stored = await this.lookup(parsed.id, true); // rotated since cached?
    if (!stored || !matches(stored.record, hash)) throw unauthenticated('invalid API key');
    const { record } = stored;
    if (record.revokedAt) throw unauthenticated('API key revoked');
    if (this.isExpired(record)) throw unauthenticated('API key expired');
    this.noteUse(record);
    return { id: record.id, principal: record.principal, permissions: record.permissions };
  }

  /**
   * The key behind a forwarded call, looked up again by its id on the node that answers: a peer
   * agent names the key it authenticated, never the rights it carries. Refused when the key is
   * unknown, revoked or expired here.
   */
  async forwardedKey(id: string): Promise<AuthenticatedKey> {
    const stored = await this.lookup(id, false);
    if (!stored) throw unauthenticated('the forwarded API key is unknown in this cluster');
    const { record } = stored;
    if (record.revokedAt) throw unauthenticated('the forwarded API key is revoked');
    if (this.isExpired(record)) throw unauthenticated('the forwarded API key has expired');
    return { id: record.id, principal: record.principal, permissions: record.permissions };
  }

  /** Waits for lastUsedAt writes in flight (shutdown, tests). */
  async settle(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  private async lookup(id: string, fresh: boolean): Promise<StoredApiKey | undefined> {
    const now = this.clock.now().getTime();
    const cached = this.cache.get(id);
    if (!fresh && cached && now - cached.fetchedAt < this.options.cacheTtlMs) return cached.stored;
    const stored = await this.store.get(id);
    if (stored && this.options.cacheTtlMs > 0) {
      if (this.cache.size >= 10_000) this.cache.clear();
      this.cache.set(id, { stored, fetchedAt: now });
    } else {
      this.cache.delete(id);
    }
    return stored;
  }

  private isExpired(record: ApiKeyRecord): boolean {
    return record.expiresAt !== null && Date.parse(record.expiresAt) <= this.clock.now().getTime();
  }

  /** Records the use, at most once per interval per key, without making the caller wait. */
  private noteUse(record: ApiKeyRecord): void {
    const now = this.clock.now().getTime();
    const interval = this.options.lastUsedIntervalMs ?? LAST_USED_INTERVAL_MS;
    const last = Math.max(
      this.lastUsedWrites.get(record.id) ?? 0,
      record.lastUsedAt ? Date.parse(record.lastUsedAt) : 0,
    );
    if (now - last < interval) return;
    this.lastUsedWrites.set(record.id, now);
    const write = this.update(record.id, (current) =>
      current.revokedAt
        ? { result: undefined }
        : { next: { ...current, lastUsedAt: new Date(now).toISOString() }, result: undefined },
    )
      .catch((error: unknown) =>
        this.logger?.warn({ keyId: record.id, err: error }, 'could not record the API key use'),
      )
      .finally(() => this.pending.delete(write));
    this.pending.add(write);
  }

  /** Read-modify-write with compare-and-swap, so that no update undoes a concurrent revocation. */
  private async update<T>(
    id: string,
    change: (record: ApiKeyRecord) => { next?: ApiKeyRecord; result: T },
  ): Promise<T> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const current = await this.store.get(id);
      if (!current) throw new AgentError(ErrorCode.NotFound, `no API key with id ${id}`);
      const { next, result } = change(current.record);
      if (!next || (await this.store.replace(current, next))) {
        this.cache.delete(id);
        return result;
      }
    }
    throw new AgentError(ErrorCode.Unavailable, `API key ${id} kept changing; try again`);
  }
}

function newSecret(): string {
  return randomBytes(32).toString('base64url'); // 43 characters
}

function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

function matches(record: ApiKeyRecord, hash: Buffer): boolean {
  return timingSafeEqual(Buffer.from(record.secretSha256, 'hex'), hash);
}

function unauthenticated(message: string): AgentError {
  return new AgentError(ErrorCode.Unauthenticated, message);
}
