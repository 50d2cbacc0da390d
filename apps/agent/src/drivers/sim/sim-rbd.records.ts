import { labelSchema } from '@debvisor/common';
import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * What the simulated Ceph keeps in a cluster's etcd (see ETCD_KEYS.simRbd*). Sim images hold no
 * bytes: their content is a version and a checksum that every write changes; snapshots record it,
 * a rollback restores it and mirroring copies it, so tests compare checksums as with real images.
 */
export const contentSchema = z.object({ version: z.int().min(0), checksum: z.string() });
export type SimContent = z.infer<typeof contentSchema>;

export const userSnapshotSchema = z.object({
  name: z.string(),
  createdAt: z.string(),
  sizeBytes: z.number(),
  content: contentSchema,
});

/** A mirror snapshot: taken on the primary, copied to the secondary (same id) once replayed. */
export const mirrorSnapshotSchema = z.object({
  id: z.string(),
  takenAt: z.string(),
  content: contentSchema,
  /** Taken by a demotion: the last snapshot of a primary that stepped down. */
  demoted: z.boolean().default(false),
  /** The site whose primary took it. */
  site: z.string(),
});
export type MirrorSnapshot = z.infer<typeof mirrorSnapshotSchema>;

/** One side's replication state as its rbd-mirror daemon last reported it. */
export const mirrorReportSchema = z.object({
  state: z.string(),
  description: z.string(),
  lastUpdate: z.string(),
  bytesPerSecond: z.number().default(0),
  secondsUntilSynced: z.int().min(0).default(0),
  lastMirroredSnapshotAt: z.string().default(''),
});
export type MirrorReport = z.infer<typeof mirrorReportSchema>;

export const imageMirrorSchema = z.object({
  globalId: z.string(),
  primary: z.boolean(),
  scheduleInterval: z.string().default(''),
  /** Newest last; a few are kept, as rbd-mirror prunes older mirror snapshots. */
  snapshots: z.array(mirrorSnapshotSchema).default([]),
  /** Secondary: when the newest mirror snapshot it holds completely was taken. */
  lastMirroredSnapshotAt: z.string().default(''),
  /** Secondary: the site it replays from. */
  peerSite: z.string().default(''),
  resyncRequested: z.boolean().default(false),
  splitBrain: z.boolean().default(false),
  /** This side's state, written by this cluster's replayer (stale: the daemon is down). */
  report: mirrorReportSchema.optional(),
  /** Secondary: the primary site's own report, as the replayer last read it. */
  peerReport: mirrorReportSchema.optional(),
});
export type ImageMirror = z.infer<typeof imageMirrorSchema>;

export const lockSchema = z.object({
  holder: z.string(),
  client: z.string(),
  lockedAt: z.string(),
});

/** An image record; records written before content, locks and mirroring existed read with defaults. */
export const imageRecordSchema = z.object({
  pool: z.string(),
  image: z.string(),
  sizeBytes: z.number(),
  createdAt: z.string(),
  content: contentSchema.optional(),
  snapshots: z.array(userSnapshotSchema).default([]),
  lock: lockSchema.nullable().default(null),
  mirror: imageMirrorSchema.nullable().default(null),
});
export type ImageRecord = Omit<z.infer<typeof imageRecordSchema>, 'content'> & {
  content: SimContent;
};

export function parseImageRecord(value: string): ImageRecord | undefined {
  try {
    const parsed = imageRecordSchema.safeParse(JSON.parse(value));
    if (!parsed.success) return undefined;
    // An image older than content versions: a stable checksum from what identifies it.
    const content = parsed.data.content ?? {
      version: 0,
      checksum: sha256(`${parsed.data.pool}/${parsed.data.image}@${parsed.data.createdAt}`),
    };
    return { ...parsed.data, content };
  } catch {
    return undefined;
  }
}

/** A peer site of a pool, as `rbd mirror pool peer bootstrap import` records it (the key is stored like Ceph's). */
export const poolPeerSchema = z.object({
  uuid: z.string(),
  siteName: z.string(),
  direction: z.enum(['rx-tx', 'rx-only']),
  /** The peer cluster's etcd endpoints. */
  endpoints: z.array(z.string()).min(1),
  /** The secret this cluster presents to the peer. */
  key: z.string(),
});
export type PoolPeer = z.infer<typeof poolPeerSchema>;

export const poolMirrorRecordSchema = z.object({
  siteName: z.string(),
  /** SHA-256 of the bootstrap keys this cluster accepts from its peers (the keys themselves are never kept here). */
  acceptedKeys: z.array(z.string()).default([]),
  peers: z.array(poolPeerSchema).default([]),
});
export type PoolMirrorRecord = z.infer<typeof poolMirrorRecordSchema>;

/** What a secondary's replayer reports into the primary cluster about its side (Ceph's peer site status). */
export const peerSiteReportSchema = mirrorReportSchema.extend({ site: z.string() });
export type PeerSiteReport = z.infer<typeof peerSiteReportSchema>;

export const blocklistEntrySchema = z.object({
  client: z.string(),
  addedAt: z.string(),
  until: z.string(),
});

/** The peer bootstrap token's content (base64 JSON, like Ceph's): a secret, as it carries the key. */
export const bootstrapTokenSchema = z.object({
  kind: z.literal('debvisor-sim-rbd-peer'),
  siteName: labelSchema,
  pool: labelSchema,
  endpoints: z.array(z.url()).min(1).max(16),
  key: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
});
export type BootstrapToken = z.infer<typeof bootstrapTokenSchema>;

export function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

export function parseJson<T>(schema: z.ZodType<T, unknown>, value: string | null): T | undefined {
  if (value === null) return undefined;
  try {
    const parsed = schema.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
