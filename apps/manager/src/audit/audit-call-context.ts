import { AsyncLocalStorage } from 'node:async_hooks';

/** What the audit log knows about the work in progress: who it is done for, and facts noted for its outcome entry. */
export interface AuditScope {
  /** Whom agent calls made now are attributed to: the request's caller, a task's owner. */
  readonly principal: string | null;
  /** Safe details services noted for the outcome entry of the current API call (AuditService.note). */
  readonly notes: Record<string, unknown>;
}

const storage = new AsyncLocalStorage<AuditScope>();

export function currentAuditScope(): AuditScope | undefined {
  return storage.getStore();
}

export function runInAuditScope<T>(scope: AuditScope, work: () => T): T {
  return storage.run(scope, work);
}
