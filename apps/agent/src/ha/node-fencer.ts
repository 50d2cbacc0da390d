import { z } from 'zod';
import type { RbdCliRepository } from '../drivers/rbd/rbd-cli.repository';
import type { ImageRef, StorageDriver } from '../drivers/storage.driver';
import { AgentError, ErrorCode } from '../shared/agent-error';
import { forEachLimit } from '../shared/concurrency';

/** A node to fence: where its Ceph clients connect from, and the disks of its HA VMs. */
export interface FenceTarget {
  nodeId: string;
  /** IP addresses: every client from them is blocklisted (`<ip>:0/0`). */
  addresses: readonly string[];
  images: readonly ImageRef[];
}

export interface FenceOutcome {
  /** Every step done and checked: the node can no longer write, its locks are gone. */
  confirmed: boolean;
  blocklisted: string[];
  locksBroken: string[];
  /** What was checked, or what could not be. */
  reason: string;
}

/** Fences a lost node so that it can no longer write to the disks of its VMs (docs/ha.md). */
export interface NodeFencer {
  fence(target: FenceTarget): Promise<FenceOutcome>;
  /** Lifts the node-wide blocklist entries once the node stopped its old VMs; answers what it could not lift. */
  release(blocklisted: readonly string[]): Promise<string[]>;
}

const watchersSchema = z.object({
  watchers: z.array(z.object({ address: z.string() })).default([]),
});
/**
 * Disks fenced at once. Each Ceph tool call is a process with its own monitor session, CPU-bound
 * on a small host: more at once only queue (bench/failover.bench.mjs traces them).
 */
const FENCE_CONCURRENCY = 6;
/** `ip:port/nonce` as Ceph prints client addresses (IPv6 in brackets). */
const CLIENT_ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}\/\d{1,10}$/;

/**
 * Fencing on Ceph: every client from the node's addresses is blocklisted (`ceph osd blocklist add
 * <ip>:0/0`), all at once (the monitor commits them together); then each disk is fenced by the
 * storage driver (fenceImage): the clients that have it open (its watchers, i.e. its QEMUs even
 * when they connect from elsewhere) are blocklisted, and its VM lock and librbd's locks broken —
 * every entry with the HA blocklist expiry. It is confirmed when the OSD map lists every entry, no
 * disk has a watcher left that is not blocklisted, and no disk still has a VM lock (read by the
 * driver right after it broke the locks).
 */
export class CephNodeFencer implements NodeFencer {
  constructor(
    private readonly cli: Pick<RbdCliRepository, 'run' | 'json'>,
    private readonly storage: Pick<StorageDriver, 'fenceImage' | 'imageHolder'>,
    private readonly blocklistSeconds: number,
  ) {}

  async fence(target: FenceTarget): Promise<FenceOutcome> {
    const entries = new Set(target.addresses.map(nodeWide));
    const locksBroken: string[] = [];
    await Promise.all([...entries].map((entry) => this.blocklist(entry)));
    /** Per disk, what was left after its fence: clients still open, the VM lock's holder. */
    const left: { ref: ImageRef; open: string[]; holder: string | undefined }[] = [];
    await forEachLimit(target.images, FENCE_CONCURRENCY, async (ref) => {
      const result = await this.storage.fenceImage(ref, {
        blocklistSeconds: this.blocklistSeconds,
      });
      locksBroken.push(...result.locksBroken.map((lock) => `${ref.pool}/${ref.image}:${lock}`));
      for (const address of result.blocklisted) entries.add(address);
      const after = result.after ?? {
        watchers: await this.watchers(ref),
        holder: await this.storage.imageHolder(ref),
      };
      left.push({ ref, open: after.watchers, holder: after.holder });
    });
    const blocklisted = [...entries];
    const listed = await this.listed();
    const missing = blocklisted.filter((entry) => !listed.has(entry));
    if (missing.length)
      return unconfirmed(
        blocklisted,
        locksBroken,
        `the OSD map does not list ${missing.join(', ')}`,
      );
    const problems: string[] = [];
    for (const { ref, open, holder } of left) {
      const uncovered = open.filter((address) => !isCovered(address, listed));
      if (uncovered.length)
        problems.push(
          `${ref.pool}/${ref.image} is still open by ${uncovered.join(', ')}, which is not blocklisted`,
        );
      if (holder) problems.push(`${ref.pool}/${ref.image} is still locked by VM ${holder}`);
    }
    if (problems.length) return unconfirmed(blocklisted, locksBroken, problems.join('; '));
    return {
      confirmed: true,
      blocklisted,
      locksBroken,
      reason: `${blocklisted.length} client address(es) blocklisted and listed in the OSD map; ${target.images.length} disk(s) without an open client or lock`,
    };
  }

  async release(blocklisted: readonly string[]): Promise<string[]> {
    const kept: string[] = [];
    // Only the node-wide entries matter: the node's new clients have new nonces.
    for (const entry of blocklisted.filter((e) => e.endsWith(':0/0'))) {
      await this.cli.run('ceph', ['osd', 'blocklist', 'rm', '--', entry]).catch(() => {
        kept.push(entry);
      });
    }
    return kept;
  }

  private async blocklist(entry: string): Promise<void> {
    if (!CLIENT_ADDRESS.test(entry))
      throw new AgentError(ErrorCode.Internal, `not a Ceph client address: ${entry.slice(0, 80)}`);
    await this.cli.run('ceph', [
      'osd',
      'blocklist',
      'add',
      '--',
      entry,
      String(this.blocklistSeconds),
    ]);
  }

  /**
   * The OSD map's blocklist. Ceph 16 prints two JSON arrays back to back with --format json (the
   * entries and the range entries), so the plain listing is read: one `<addr> <until>` per line.
   */
  private async listed(): Promise<Set<string>> {
    const text = await this.cli.run('ceph', ['osd', 'blocklist', 'ls']);
    const entries = new Set<string>();
    for (const line of text.split('\n')) {
      const address = line.trim().split(/\s+/)[0] ?? '';
      if (CLIENT_ADDRESS.test(address)) entries.add(address);
    }
    return entries;
  }

  private async watchers(ref: ImageRef): Promise<string[]> {
    const status = watchersSchema.parse(
      await this.cli.json('rbd', ['status', '--', `${ref.pool}/${ref.image}`]),
    );
    return [...new Set(status.watchers.map((w) => w.address))];
  }
}

/**
 * The sim storage driver's fencing: each disk's lock holder is blocklisted in the simulated Ceph
 * and its lock broken (fenceImage); node-wide addresses do not exist there. Confirmed when no disk
 * is locked any more.
 */
export class SimNodeFencer implements NodeFencer {
  constructor(
    private readonly storage: Pick<StorageDriver, 'fenceImage' | 'imageHolder'>,
    /** Lifts one simulated blocklist entry (the sim storage keeps them in etcd). */
    private readonly unblock: (client: string) => Promise<void>,
  ) {}

  async fence(target: FenceTarget): Promise<FenceOutcome> {
    const blocklisted: string[] = [];
    const locksBroken: string[] = [];
    for (const ref of target.images) {
      const result = await this.storage.fenceImage(ref);
      blocklisted.push(...result.blocklisted);
      locksBroken.push(...result.locksBroken.map((lock) => `${ref.pool}/${ref.image}:${lock}`));
      const holder = await this.storage.imageHolder(ref);
      if (holder)
        return unconfirmed(
          blocklisted,
          locksBroken,
          `${ref.pool}/${ref.image} is still locked by VM ${holder}`,
        );
    }
    return {
      confirmed: true,
      blocklisted,
      locksBroken,
      reason: `${target.images.length} disk(s) fenced in the simulated Ceph`,
    };
  }

  /** A sim VM's client is named after its node and VM: lifted, or the VM could never run there again. */
  async release(blocklisted: readonly string[]): Promise<string[]> {
    const kept: string[] = [];
    for (const client of blocklisted) await this.unblock(client).catch(() => kept.push(client));
    return kept;
  }
}

function nodeWide(ip: string): string {
  return ip.includes(':') ? `[${ip}]:0/0` : `${ip}:0/0`;
}

/** A client is covered by its own entry or by its address's node-wide entry. */
function isCovered(address: string, listed: ReadonlySet<string>): boolean {
  if (listed.has(address)) return true;
  const ip = address.slice(0, address.lastIndexOf(':'));
  return listed.has(`${ip}:0/0`);
}

function unconfirmed(blocklisted: string[], locksBroken: string[], reason: string): FenceOutcome {
  return { confirmed: false, blocklisted, locksBroken, reason };
}
