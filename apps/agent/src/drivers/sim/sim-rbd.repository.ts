import type { Etcd3, Lease } from 'etcd3';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import { ETCD_KEYS } from '../../shared/etcd-keys';
import type { ImageRef } from '../storage.driver';
import {
  blocklistEntrySchema,
  parseImageRecord,
  parseJson,
  peerSiteReportSchema,
  poolMirrorRecordSchema,
  type ImageRecord,
  type PeerSiteReport,
  type PoolMirrorRecord,
} from './sim-rbd.records';

/** How often a compare-and-swap is retried when another writer changed the record meanwhile. */
const CAS_ATTEMPTS = 20;

interface Versioned<T> {
  value: T;
  revision: number;
}

/** What an update function answers: the new record, 'delete', or undefined to leave it unchanged. */
export type Change<T> = T | 'delete' | undefined;

/**
 * The simulated Ceph's etcd I/O: image records, pool mirroring, the blocklist, peer site reports
 * and the replayer's leader key. Every change is a compare-and-swap on the record's revision (a
 * multi-image change is one transaction), so concurrent agents serialize per image as Ceph does.
 * With `timeoutMs` (a peer cluster) every call fails UNAVAILABLE once that time is up.
 */
export class SimRbdRepository {
  /** etcd requests made so far (tests check that refused input makes none). */
  requests = 0;

  constructor(
    private readonly etcd: Etcd3,
    private readonly timeoutMs?: number,
    private readonly site = 'this cluster',
  ) {}

  async image(ref: ImageRef): Promise<ImageRecord | undefined> {
    return (await this.versionedImage(ref))?.value;
  }

  /** The image records of a pool (sub-keys and unreadable values skipped), by name. */
  async images(pool: string): Promise<ImageRecord[]> {
    const prefix = ETCD_KEYS.simRbdPool(pool);
    const values = await this.run(() => this.etcd.getAll().prefix(prefix).strings());
    return Object.entries(values)
      .filter(([key]) => !key.slice(prefix.length).includes('/'))
      .flatMap(([, value]) => parseImageRecord(value) ?? [])
      .sort((a, b) => a.image.localeCompare(b.image));
  }

  /** Creates a record; false when the pool has an image of that name. */
  async createImage(record: ImageRecord): Promise<boolean> {
    const key = ETCD_KEYS.simRbdImage(record.pool, record.image);
    const result = await this.run(() =>
      this.etcd
        .if(key, 'Create', '==', 0)
        .then(this.etcd.put(key).value(JSON.stringify(record)))
        .commit(),
    );
    return result.succeeded;
  }

  /**
   * Changes one image atomically: `change` sees the current record and answers the new one
   * ('delete', or undefined for no change); it may throw to refuse. NOT_FOUND when absent.
   */
  async updateImage(
    ref: ImageRef,
    change: (record: ImageRecord) => Change<ImageRecord>,
  ): Promise<ImageRecord | undefined> {
    const [result] = await this.updateImages([ref], ([record]) => {
      const next = change(record);
      return next === undefined ? undefined : [next];
    });
    return result;
  }

  /** Changes several images in one transaction (all or none); `change` answers one entry per image. */
  async updateImages(
    refs: ImageRef[],
    change: (records: ImageRecord[]) => Change<ImageRecord>[] | undefined,
  ): Promise<(ImageRecord | undefined)[]> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const current = await Promise.all(refs.map((ref) => this.versionedImage(ref)));
      const missing = refs.find((_, i) => current[i] === undefined);
      if (missing)
        throw new AgentError(
          ErrorCode.NotFound,
          `no RBD image ${missing.pool}/${missing.image} in ${this.site}`,
        );
      const records = current.map((entry) => entry!.value);
      const next = change(records);
      if (next === undefined || next.every((entry) => entry === undefined)) return records;
      const [first, ...rest] = refs.map((ref, i) => ({
        key: ETCD_KEYS.simRbdImage(ref.pool, ref.image),
        revision: current[i]!.revision,
      }));
      let txn = this.etcd.if(first.key, 'Mod', '==', first.revision);
      for (const other of rest) txn = txn.and(other.key, 'Mod', '==', other.revision);
      const ops = refs.flatMap((ref, i) => {
        const entry = next[i];
        const key = ETCD_KEYS.simRbdImage(ref.pool, ref.image);
        if (entry === undefined) return [];
        return [
          entry === 'delete'
            ? this.etcd.delete().key(key)
            : this.etcd.put(key).value(JSON.stringify(entry)),
        ];
      });
      const result = await this.run(() => txn.then(...ops).commit());
      if (result.succeeded)
        return next.map((entry, i) => (entry === 'delete' ? undefined : (entry ?? records[i])));
    }
    throw new AgentError(
      ErrorCode.Unavailable,
      `the RBD image ${refs.map((r) => `${r.pool}/${r.image}`).join(', ')} kept changing; try again`,
    );
  }

  /** Every pool that has mirroring configured. */
  async mirrorPools(): Promise<Map<string, PoolMirrorRecord>> {
    const prefix = ETCD_KEYS.simRbdMirrorPoolsPrefix;
    const values = await this.run(() => this.etcd.getAll().prefix(prefix).strings());
    const pools = new Map<string, PoolMirrorRecord>();
    for (const [key, value] of Object.entries(values)) {
      const record = parseJson(poolMirrorRecordSchema, value);
      if (record) pools.set(key.slice(prefix.length), record);
    }
    return pools;
  }

  async mirrorPool(pool: string): Promise<PoolMirrorRecord | undefined> {
    return parseJson(
      poolMirrorRecordSchema,
      await this.run(() => this.etcd.get(ETCD_KEYS.simRbdMirrorPool(pool)).string()),
    );
  }

  /** Changes a pool's mirroring record atomically (`change` sees undefined when there is none). */
  async updateMirrorPool(
    pool: string,
    change: (record: PoolMirrorRecord | undefined) => PoolMirrorRecord,
  ): Promise<PoolMirrorRecord> {
    const key = ETCD_KEYS.simRbdMirrorPool(pool);
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const response = await this.run(() => this.etcd.get(key).exec());
      const kv = response.kvs[0];
      const current = kv ? parseJson(poolMirrorRecordSchema, kv.value.toString()) : undefined;
      const next = change(current);
      const txn = kv
        ? this.etcd.if(key, 'Mod', '==', Number(kv.mod_revision))
        : this.etcd.if(key, 'Create', '==', 0);
      if (
        (await this.run(() => txn.then(this.etcd.put(key).value(JSON.stringify(next))).commit()))
          .succeeded
      )
        return next;
    }
    throw new AgentError(
      ErrorCode.Unavailable,
      `the mirroring of pool ${pool} kept changing; try again`,
    );
  }

  async blocklisted(client: string, now: Date): Promise<string | undefined> {
    const entry = parseJson(
      blocklistEntrySchema,
      await this.run(() => this.etcd.get(ETCD_KEYS.simRbdBlocklist(client)).string()),
    );
    return entry && Date.parse(entry.until) > now.getTime() ? entry.until : undefined;
  }

  async addToBlocklist(client: string, now: Date, until: Date): Promise<void> {
    const entry = { client, addedAt: now.toISOString(), until: until.toISOString() };
    await this.run(() =>
      this.etcd.put(ETCD_KEYS.simRbdBlocklist(client)).value(JSON.stringify(entry)).exec(),
    );
  }

  /** A peer site's report about its side of a mirrored image (written by that site's replayer). */
  async putPeerReport(pool: string, globalId: string, report: PeerSiteReport): Promise<void> {
    await this.run(() =>
      this.etcd
        .put(ETCD_KEYS.simRbdMirrorPeerReport(pool, globalId, report.site))
        .value(JSON.stringify(report))
        .exec(),
    );
  }

  async peerReports(pool: string, globalId: string): Promise<PeerSiteReport[]> {
    const values = await this.run(() =>
      this.etcd.getAll().prefix(ETCD_KEYS.simRbdMirrorPeerReports(pool, globalId)).strings(),
    );
    return Object.values(values).flatMap((value) => parseJson(peerSiteReportSchema, value) ?? []);
  }

  async deletePeerReports(pool: string, globalId: string): Promise<void> {
    await this.run(() =>
      this.etcd.delete().prefix(ETCD_KEYS.simRbdMirrorPeerReports(pool, globalId)).exec(),
    );
  }

  /** The node that runs this cluster's replayer (the holder of the leader key), if any. */
  async replayerLeader(): Promise<string | undefined> {
    return (
      (await this.run(() => this.etcd.get(ETCD_KEYS.simRbdMirrorLeader).string())) ?? undefined
    );
  }

  /** Takes the leader key for `nodeId` under `lease` when nobody holds it; answers whether this node leads. */
  async claimReplayer(nodeId: string, lease: Lease): Promise<boolean> {
    const key = ETCD_KEYS.simRbdMirrorLeader;
    const leaseId = await lease.grant();
    await this.run(() =>
      this.etcd
        .if(key, 'Create', '==', 0)
        .then(this.etcd.put(key).value(nodeId).lease(leaseId))
        .commit(),
    );
    const response = await this.run(() => this.etcd.get(key).exec());
    const kv = response.kvs[0];
    return (
      kv !== undefined && kv.value.toString() === nodeId && String(kv.lease) === String(leaseId)
    );
  }

  private async versionedImage(ref: ImageRef): Promise<Versioned<ImageRecord> | undefined> {
    const response = await this.run(() =>
      this.etcd.get(ETCD_KEYS.simRbdImage(ref.pool, ref.image)).exec(),
    );
    const kv = response.kvs[0];
    if (!kv) return undefined;
    const value = parseImageRecord(kv.value.toString());
    return value && { value, revision: Number(kv.mod_revision) };
  }

  /** The call, bounded by the peer timeout when there is one. */
  private async run<T>(call: () => Promise<T>): Promise<T> {
    this.requests++;
    if (this.timeoutMs === undefined) return call();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new AgentError(
              ErrorCode.Unavailable,
              `${this.site} did not answer within ${this.timeoutMs} ms`,
            ),
          ),
        this.timeoutMs,
      );
    });
    try {
      return await Promise.race([call(), deadline]);
    } catch (error) {
      if (error instanceof AgentError) throw error;
      throw new AgentError(ErrorCode.Unavailable, `${this.site} cannot be reached`, {
        cause: error,
      });
    } finally {
      clearTimeout(timer);
    }
  }
}
