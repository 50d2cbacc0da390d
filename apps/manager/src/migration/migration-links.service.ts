import { Inject, Injectable } from '@nestjs/common';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';

/** A migration's share of a link, held until its transfer ends. */
export interface LinkLease {
  /** The bandwidth limit the migration runs with (bytes per second; 0: unlimited). */
  readonly bytesPerSecond: number;
  release(): void;
}

/** How a lease waits: aborted by a cancel or a shutdown; `onWait` hears once why it waits. */
export interface LeaseWait {
  readonly signal: AbortSignal;
  onWait(note: string): Promise<void>;
}

/**
 * The bandwidth of the links between remotes (datacenters), shared by the migrations on them so
 * that migrations never take more than DEBVISOR_MIGRATION_LINK_CAP_BYTES of a link together. A
 * migration gets its own limit (0: all that is free) but at most what the others leave; while they
 * leave nothing, it waits before anything is reserved at the target. Within one remote there is no
 * datacenter link: each migration keeps its own limit. In memory: after a restart the migrations
 * the recovery follows keep the limits they run with, and new ones share what is left of the cap.
 */
@Injectable()
export class MigrationLinks {
  private readonly cap: number;
  /** Link → task id → granted bytes per second. */
  private readonly leases = new Map<string, Map<string, number>>();
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(@Inject(MANAGER_CONFIG) config: Pick<ManagerConfig, 'migrationLinkCapBytes'>) {
    this.cap = config.migrationLinkCapBytes;
  }

  /** The cap of the link between these remotes (null: none applies). */
  capOf(sourceRemote: string, targetRemote: string): number | null {
    return linkOf(sourceRemote, targetRemote) !== undefined && this.cap > 0 ? this.cap : null;
  }

  /**
   * A share of the link for one migration: `requested` (0: unlimited) under what the others on
   * the link leave of the cap. Undefined when `wait.signal` aborted while it waited.
   */
  async lease(
    sourceRemote: string,
    targetRemote: string,
    taskId: string,
    requested: number,
    wait: LeaseWait,
  ): Promise<LinkLease | undefined> {
    const link = linkOf(sourceRemote, targetRemote);
    if (link === undefined || this.cap === 0)
      return { bytesPerSecond: requested, release: () => undefined };
    let told = false;
    for (;;) {
      if (wait.signal.aborted) return undefined;
      const shares = this.leases.get(link) ?? new Map<string, number>();
      const used = [...shares.values()].reduce((sum, bytes) => sum + bytes, 0);
      const free = this.cap - used;
      if (free > 0) {
        const granted = requested > 0 ? Math.min(requested, free) : free;
        shares.set(taskId, granted);
        this.leases.set(link, shares);
        return { bytesPerSecond: granted, release: () => this.release(link, taskId) };
      }
      if (!told) {
        told = true;
        await wait.onWait(
          `waiting for bandwidth on the link ${link}: ${shares.size} migration${shares.size === 1 ? '' : 's'} use${shares.size === 1 ? 's' : ''} all of its ${this.cap} bytes/s cap`,
        );
      }
      await this.freed(link, wait.signal);
    }
  }

  private release(link: string, taskId: string): void {
    const shares = this.leases.get(link);
    if (!shares?.delete(taskId)) return;
    if (shares.size === 0) this.leases.delete(link);
    for (const wake of [...(this.waiters.get(link) ?? [])]) wake();
  }

  /** Resolves when a lease of the link is released, or when `signal` aborts. */
  private freed(link: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const waiters = this.waiters.get(link) ?? new Set<() => void>();
      this.waiters.set(link, waiters);
      const done = () => {
        waiters.delete(done);
        if (waiters.size === 0) this.waiters.delete(link);
        signal.removeEventListener('abort', done);
        resolve();
      };
      waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** The link between two remotes, the same in both directions; undefined within one remote. */
function linkOf(a: string, b: string): string | undefined {
  if (a === b) return undefined;
  return a < b ? `${a} ⇄ ${b}` : `${b} ⇄ ${a}`;
}
