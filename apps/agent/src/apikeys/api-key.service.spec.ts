import { parseAgentApiKey } from '@debvisor/common';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fakeClock, strictMock } from '@debvisor/testing/strict-mock';
import { ErrorCode } from '../shared/agent-error';
import type { ApiKeyRecord, StoredApiKey } from './api-key.schema';
import { ApiKeyService, type ApiKeyStore } from './api-key.service';

/** A strict store holding records in a map, with etcd-like revisions for compare-and-swap. */
function memoryStore() {
  const records = new Map<string, StoredApiKey>();
  let revision = 1;
  const store = strictMock<ApiKeyStore>('ApiKeyStore', {
    get: async (id) => records.get(id) && structuredClone(records.get(id)),
    create: async (record) => {
      if (records.has(record.id)) return false;
      records.set(record.id, { record: structuredClone(record), revision: String(++revision) });
      return true;
    },
    replace: async (current, record) => {
      if (records.get(current.record.id)?.revision !== current.revision) return false;
      records.set(record.id, { record: structuredClone(record), revision: String(++revision) });
      return true;
    },
    list: async () => [...records.values()].map((s) => s.record),
  });
  return { store, records };
}

function setup(cacheTtlMs = 5_000) {
  const clock = fakeClock();
  const { store, records } = memoryStore();
  const service = new ApiKeyService(store, clock, { cacheTtlMs });
  const issue = (overrides: Partial<{ permissions: string[]; expiresAt: Date | null }> = {}) =>
    service.create({
      principal: 'manager:dc-east',
      permissions: overrides.permissions ?? ['vm:*'],
      expiresAt: overrides.expiresAt ?? null,
    });
  return { clock, store, records, service, issue };
}

async function failure(promise: Promise<unknown>): Promise<{ code: ErrorCode; message: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { code: ErrorCode; message: string };
  }
  throw new Error('expected a failure');
}

describe('ApiKeyService', () => {
  it('stores only the SHA-256 of the secret, never the secret', async () => {
    const { records, issue } = setup();
    const { key, summary } = await issue();
    const { id, secret } = parseAgentApiKey(key)!;
    const stored: ApiKeyRecord = records.get(id)!.record;
    expect(summary.id).toBe(id);
    expect(stored.secretSha256).toBe(createHash('sha256').update(secret).digest('hex'));
    expect(JSON.stringify(stored)).not.toContain(secret);
    expect(summary).not.toHaveProperty('secretSha256');
  });

  it('authenticates a key and answers its principal and permissions', async () => {
    const { service, issue } = setup();
    const { key } = await issue({ permissions: ['vm:*', 'node:registry:read'] });
    await expect(service.authenticate(key)).resolves.toMatchObject({
      principal: 'manager:dc-east',
      permissions: ['vm:*', 'node:registry:read'],
    });
  });

  it('answers the same "invalid API key" for a malformed key, an unknown id and a wrong secret', async () => {
    const { service, issue } = setup();
    const { key } = await issue();
    const { id } = parseAgentApiKey(key)!;
    for (const presented of [
      'not-a-key',
      `dvk_0123456789abcdef_${'A'.repeat(43)}`,
      `dvk_${id}_${'B'.repeat(43)}`,
    ]) {
      await expect(failure(service.authenticate(presented))).resolves.toMatchObject({
        code: ErrorCode.Unauthenticated,
        message: 'invalid API key',
      });
    }
  });

  it('refuses an expired key once its secret matched', async () => {
    const { clock, service, issue } = setup();
    const { key } = await issue({ expiresAt: new Date(clock.now().getTime() + 60_000) });
    await expect(service.authenticate(key)).resolves.toBeDefined();
    clock.advance(60_000);
    await expect(failure(service.authenticate(key))).resolves.toMatchObject({
      code: ErrorCode.Unauthenticated,
      message: 'API key expired',
    });
  });

  it('makes a revocation effective on a cached key within the cache time', async () => {
    const { clock, service, issue } = setup(5_000);
    const { key, summary } = await issue();
    await service.authenticate(key); // records the first use, which refreshes the cache entry
    await service.settle();
    await service.authenticate(key); // cached now
    const other = new ApiKeyService(setupStoreOf(service), clock, { cacheTtlMs: 0 });
    await other.revoke(summary.id);
    await expect(service.authenticate(key)).resolves.toBeDefined(); // still cached
    clock.advance(5_000);
    await expect(failure(service.authenticate(key))).resolves.toMatchObject({
      code: ErrorCode.Unauthenticated,
      message: 'API key revoked',
    });
  });

  it('accepts a rotated secret at once, and refuses the old one once the cache time is over', async () => {
    const { clock, service, issue } = setup(5_000);
    const { key: oldKey, summary } = await issue();
    await service.authenticate(oldKey);
    const other = new ApiKeyService(setupStoreOf(service), clock, { cacheTtlMs: 0 });
    const { key: newKey } = await other.rotate(summary.id);
    expect(parseAgentApiKey(newKey)!.id).toBe(summary.id);
    await expect(service.authenticate(newKey)).resolves.toMatchObject({ id: summary.id });
    clock.advance(5_000);
    await expect(failure(service.authenticate(oldKey))).resolves.toMatchObject({
      message: 'invalid API key',
    });
  });

  it('keeps the first revocation time and refuses to rotate a revoked key', async () => {
    const { clock, service, issue } = setup();
    const { summary } = await issue();
    const first = await service.revoke(summary.id);
    clock.advance(1_000);
    const second = await service.revoke(summary.id);
    expect(first.alreadyRevoked).toBe(false);
    expect(second).toMatchObject({
      alreadyRevoked: true,
      summary: { revokedAt: first.summary.revokedAt },
    });
    await expect(failure(service.rotate(summary.id))).resolves.toMatchObject({
      code: ErrorCode.FailedPrecondition,
    });
    await expect(failure(service.revoke('0000000000000000'))).resolves.toMatchObject({
      code: ErrorCode.NotFound,
    });
  });

  it('records the last use at most once a minute per key', async () => {
    const { clock, store, records, service, issue } = setup(0);
    const { key, summary } = await issue();
    await service.authenticate(key);
    await service.settle();
    const firstUse = records.get(summary.id)!.record.lastUsedAt;
    expect(firstUse).toBe(clock.now().toISOString());
    clock.advance(30_000);
    await service.authenticate(key);
    await service.authenticate(key);
    await service.settle();
    expect(records.get(summary.id)!.record.lastUsedAt).toBe(firstUse);
    expect(store.replace).toHaveBeenCalledTimes(1);
    clock.advance(30_000);
    await service.authenticate(key);
    await service.settle();
    expect(records.get(summary.id)!.record.lastUsedAt).toBe(clock.now().toISOString());
    expect(store.replace).toHaveBeenCalledTimes(2);
  });

  it('never undoes a revocation when it records a use', async () => {
    const { records, service, issue } = setup(60_000);
    const { key, summary } = await issue();
    const stale = structuredClone(records.get(summary.id)!);
    await service.revoke(summary.id);
    // Authenticating against a stale cache entry would write lastUsedAt; the write re-reads and keeps revokedAt.
    (service as unknown as { cache: Map<string, unknown> }).cache.set(summary.id, {
      stored: stale,
      fetchedAt: Date.now(),
    });
    await service.authenticate(key).catch(() => undefined);
    await service.settle();
    expect(records.get(summary.id)!.record.revokedAt).not.toBeNull();
  });
});

/** The store behind a service, for a second service instance (another agent, or the CLI). */
function setupStoreOf(service: ApiKeyService): ApiKeyStore {
  return (service as unknown as { store: ApiKeyStore }).store;
}
