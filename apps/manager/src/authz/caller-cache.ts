import { Injectable } from '@nestjs/common';

/** Authenticated callers are reused this long (and until any access change on this instance). */
const CACHE_TTL_MS = 5_000;
const CACHE_MAX = 10_000;

interface Cached {
  readonly caller: unknown;
  readonly until: number;
  readonly version: number;
}

/**
 * Authenticated callers with their access view, reused for a few seconds. Every feature that
 * changes who may do what (users, groups, memberships, tokens, ACL entries, VM ownership, remote
 * groups, sessions) calls `invalidate()`; it lives here, below those features, so that they need
 * not import the authentication that fills it.
 */
@Injectable()
export class CallerCache {
  private readonly entries = new Map<string, Cached>();
  private current = 0;

  /** Forget every cached caller: called after any change to users, groups, tokens, ACLs or sessions. */
  invalidate(): void {
    this.current++;
    this.entries.clear();
  }

  /** Taken before loading a caller; a caller loaded across an invalidation is not remembered. */
  get version(): number {
    return this.current;
  }

  get<T>(key: string): T | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    if (hit.version !== this.current || hit.until <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return hit.caller as T;
  }

  remember<T>(key: string, caller: T, version: number): T {
    if (version !== this.current) return caller;
    if (this.entries.size >= CACHE_MAX) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { caller, until: Date.now() + CACHE_TTL_MS, version });
    return caller;
  }
}
