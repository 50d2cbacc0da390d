import { z } from 'zod';
import {
  disabledMirrorStatus,
  type ImageMirrorStatus,
  type ImageRef,
  type MirrorPeer,
  type PoolMirrorStatus,
} from '../storage.driver';

/*
 * The JSON of Ceph 16 (pacific) `rbd … --format json` that mirroring reads, and how an
 * ImageMirrorStatus is made of it. Pure functions: the commands run in rbd-mirroring.ts.
 *
 * Time stamps: `rbd snap ls` prints ctime strings ("Mon Dec  7 12:58:54 2026") and `rbd mirror
 * image status` "2026-12-07 12:58:54", both in the rbd process's time zone (the agent runs rbd
 * with TZ=UTC); the description's *_snapshot_timestamp are Unix seconds.
 */

/** `rbd info --format json`: the mirroring part (absent on Ceph before 15 or when never enabled). */
export const rbdInfoSchema = z.object({
  name: z.string(),
  id: z.string().optional(),
  mirroring: z
    .object({
      mode: z.string().optional(),
      state: z.string(),
      global_id: z.string().optional(),
      primary: z.boolean().optional(),
    })
    .optional(),
});
export type RbdInfo = z.infer<typeof rbdInfoSchema>;

const siteStatusSchema = z.object({
  site_name: z.string().optional(),
  state: z.string(),
  description: z.string().default(''),
  last_update: z.string().default(''),
});

/** `rbd mirror image status --format json`. */
export const imageStatusSchema = z.object({
  name: z.string(),
  global_id: z.string().default(''),
  state: z.string(),
  description: z.string().default(''),
  last_update: z.string().default(''),
  peer_sites: z.array(siteStatusSchema).default([]),
});
export type ImageStatusJson = z.infer<typeof imageStatusSchema>;

/** `rbd snap ls --all --format json`: mirror snapshots carry a `mirror` namespace. */
export const snapshotListSchema = z.array(
  z.object({
    id: z.number(),
    name: z.string(),
    timestamp: z.string().default(''),
    namespace: z
      .object({
        type: z.string(),
        state: z.string().optional(),
        complete: z.boolean().optional(),
        primary_mirror_uuid: z.string().optional(),
        primary_snap_id: z.number().optional(),
        mirror_peer_uuids: z.array(z.string()).optional(),
      })
      .optional(),
  }),
);
export type SnapshotListJson = z.infer<typeof snapshotListSchema>;

/** The JSON rbd-mirror puts after "replaying, " in a secondary's description. */
export const replayDetailsSchema = z.object({
  bytes_per_second: z.number().optional(),
  bytes_per_snapshot: z.number().optional(),
  last_snapshot_bytes: z.number().optional(),
  last_snapshot_sync_seconds: z.number().optional(),
  local_snapshot_timestamp: z.number().optional(),
  remote_snapshot_timestamp: z.number().optional(),
  replay_state: z.string().optional(),
  syncing_snapshot_timestamp: z.number().optional(),
  syncing_percent: z.number().optional(),
});
export type ReplayDetails = z.infer<typeof replayDetailsSchema>;

/** `rbd mirror snapshot schedule ls --pool <pool> --recursive --format json`. */
export const scheduleListSchema = z.array(
  z.object({
    pool: z.string().default(''),
    namespace: z.string().default(''),
    image: z.string().default(''),
    items: z
      .array(z.object({ interval: z.string(), start_time: z.string().optional() }))
      .default([]),
  }),
);

/** `rbd mirror pool info --format json` (never with --all: that prints the peers' keys). */
export const poolInfoSchema = z.object({
  mode: z.string(),
  site_name: z.string().optional(),
  peers: z
    .array(
      z.object({
        uuid: z.string(),
        direction: z.string().default(''),
        site_name: z.string().default(''),
        client_name: z.string().optional(),
      }),
    )
    .default([]),
});
export type PoolInfoJson = z.infer<typeof poolInfoSchema>;

/** `rbd mirror pool status --format json`. */
export const poolStatusSchema = z.object({
  summary: z.object({
    health: z.string().default('UNKNOWN'),
    daemon_health: z.string().default('UNKNOWN'),
    image_health: z.string().default('UNKNOWN'),
    states: z.record(z.string(), z.number()).default({}),
  }),
});
export type PoolStatusJson = z.infer<typeof poolStatusSchema>;

/** The bootstrap token: base64 of this JSON. Only its shape and fsid are looked at, never logged. */
export const bootstrapTokenSchema = z.object({
  fsid: z.string().min(1),
  client_id: z.string().min(1),
  key: z.string().min(1),
  mon_host: z.string().min(1),
});

/** Splits "replaying, {json}" into its words and its details (undefined when there is no JSON). */
export function splitDescription(description: string): { text: string; details?: ReplayDetails } {
  const brace = description.indexOf('{');
  if (brace < 0) return { text: description };
  const text = description.slice(0, brace).replace(/[,\s]+$/, '');
  try {
    const parsed = replayDetailsSchema.safeParse(JSON.parse(description.slice(brace)));
    return parsed.success ? { text, details: parsed.data } : { text: description };
  } catch {
    return { text: description };
  }
}

/** "Mon Dec  7 12:58:54 2026" or "2026-12-07 12:58:54" (UTC) as ISO 8601; '' when empty or unreadable. */
export function cephTimeToIso(value: string): string {
  const trimmed = value.trim();
  if (!trimmed) return '';
  const iso = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})/.exec(trimmed);
  const ms = iso
    ? Date.parse(`${iso[1]}T${iso[2]}Z`)
    : Date.parse(`${trimmed.replace(/\s+/g, ' ')} UTC`);
  return Number.isNaN(ms) ? '' : new Date(ms).toISOString();
}

function unixToIso(seconds: number | undefined): string {
  return seconds && seconds > 0 ? new Date(seconds * 1000).toISOString() : '';
}

function newest(values: string[]): string {
  return values.filter(Boolean).sort().at(-1) ?? '';
}

export interface MirrorSnapshots {
  /** Snapshots this image took as primary (state primary or demoted), oldest first. */
  own: { id: number; at: string; state: string }[];
  /** Copies of the peer's snapshots (non-primary images), oldest first. */
  copies: { id: number; at: string; state: string; complete: boolean }[];
}

export function mirrorSnapshots(list: SnapshotListJson): MirrorSnapshots {
  const own: MirrorSnapshots['own'] = [];
  const copies: MirrorSnapshots['copies'] = [];
  for (const snap of [...list].sort((a, b) => a.id - b.id)) {
    const ns = snap.namespace;
    if (ns?.type !== 'mirror') continue;
    const at = cephTimeToIso(snap.timestamp);
    if (ns.primary_mirror_uuid)
      copies.push({ id: snap.id, at, state: ns.state ?? '', complete: ns.complete === true });
    else own.push({ id: snap.id, at, state: ns.state ?? '' });
  }
  return { own, copies };
}

export interface StatusSources {
  ref: ImageRef;
  info: RbdInfo;
  /** Undefined when `rbd mirror image status` failed (e.g. the image was being disabled). */
  status?: ImageStatusJson;
  snapshots: SnapshotListJson;
  scheduleInterval: string;
}

/**
 * One image's mirroring from what this cluster knows.
 *
 * - lastMirroredSnapshotAt: at a secondary, the primary's time of the newest snapshot held
 *   completely here, as rbd-mirror last reported it (local_snapshot_timestamp); when a newer copy
 *   completed after that report (rbd-mirror rewrites reports every 30 s) the time the copy began,
 *   which is at most the replayer's notice delay after the primary took it. At a primary, the
 *   peer's last report (up to 30 s old: the RPO it gives errs on the high side).
 * - lastSnapshotAt: the newest mirror snapshot the primary took (as known here).
 * - splitBrain: this side primary and the peer's live report says it is primary as well (newer
 *   than this side's promotion), or rbd-mirror reports split-brain on either side.
 */
export function imageMirrorStatus(sources: StatusSources): ImageMirrorStatus {
  const { ref, info, status, snapshots } = sources;
  const mirroring = info.mirroring;
  if (!mirroring || mirroring.state !== 'enabled') return disabledMirrorStatus(ref);
  const primary = mirroring.primary === true;
  const snaps = mirrorSnapshots(snapshots);
  const local = splitDescription(status?.description ?? '');
  const peer = status?.peer_sites[0];
  const peerSplit = splitDescription(peer?.description ?? '');
  const localUpdate = cephTimeToIso(status?.last_update ?? '');
  const peerUpdate = cephTimeToIso(peer?.last_update ?? '');

  let lastMirroredSnapshotAt = '';
  let lastSnapshotAt = '';
  let details: ReplayDetails | undefined;
  if (primary) {
    details = peerSplit.details;
    lastMirroredSnapshotAt = unixToIso(details?.local_snapshot_timestamp);
    lastSnapshotAt = snaps.own.at(-1)?.at ?? '';
  } else {
    details = local.details;
    const copy = snaps.copies.filter((c) => c.complete).at(-1);
    const reported = unixToIso(details?.local_snapshot_timestamp);
    if (copy && (!reported || !localUpdate || copy.at > localUpdate))
      lastMirroredSnapshotAt = copy.at;
    else lastMirroredSnapshotAt = reported || copy?.at || '';
    lastSnapshotAt = newest([
      unixToIso(details?.remote_snapshot_timestamp),
      snaps.copies.at(-1)?.at ?? '',
    ]);
  }

  // Since when this side is primary: its oldest own snapshot after the last copy of the peer's.
  const lastCopyId = snaps.copies.at(-1)?.id ?? -1;
  const primarySince = snaps.own.find((s) => s.id > lastCopyId)?.at ?? '';
  const peerClaimsPrimary =
    primary &&
    !!peer &&
    peer.state.startsWith('up+') &&
    peerSplit.text.startsWith('local image is primary') &&
    (!primarySince || peerUpdate > primarySince);
  const splitBrain =
    peerClaimsPrimary || /split-brain/.test(local.text) || /split-brain/.test(peerSplit.text);

  return {
    pool: ref.pool,
    image: ref.image,
    enabled: true,
    primary,
    state: status?.state ?? 'down+unknown',
    description: local.text || (status ? '' : 'no mirroring status yet'),
    lastUpdate: localUpdate,
    globalId: mirroring.global_id ?? status?.global_id ?? '',
    mode: mirroring.mode === 'journal' ? 'journal' : 'snapshot',
    lastMirroredSnapshotAt,
    lastSnapshotAt,
    bytesPerSecond: details?.bytes_per_second ?? 0,
    secondsUntilSynced: secondsUntilSynced(details),
    peerState: peer?.state ?? '',
    peerDescription: peerSplit.text,
    scheduleInterval: primary ? sources.scheduleInterval : '',
    splitBrain,
  };
}

/**
 * Seconds until the secondary holds the primary's newest snapshot: while syncing, the rest of
 * the snapshot at the current rate; idle behind a newer snapshot, as long as the last one took.
 */
export function secondsUntilSynced(details: ReplayDetails | undefined): number {
  if (!details) return 0;
  if (details.replay_state === 'syncing') {
    const rate = details.bytes_per_second ?? 0;
    const total = details.bytes_per_snapshot ?? details.last_snapshot_bytes ?? 0;
    const left = Math.max(0, 100 - (details.syncing_percent ?? 0)) / 100;
    if (rate > 0 && total > 0) return Math.ceil((left * total) / rate);
    return Math.max(1, Math.ceil(left * (details.last_snapshot_sync_seconds ?? 0)));
  }
  if ((details.remote_snapshot_timestamp ?? 0) > (details.local_snapshot_timestamp ?? 0))
    return Math.max(1, details.last_snapshot_sync_seconds ?? 0);
  return 0;
}

export function poolMirrorStatus(
  pool: string,
  info: PoolInfoJson,
  status: PoolStatusJson | undefined,
): PoolMirrorStatus {
  const mode = info.mode === 'image' || info.mode === 'pool' ? info.mode : 'disabled';
  const peers: MirrorPeer[] = info.peers.map((p) => ({
    uuid: p.uuid,
    siteName: p.site_name,
    direction: p.direction,
  }));
  const summary = status?.summary;
  return {
    pool,
    mode,
    siteName: mode === 'disabled' ? '' : (info.site_name ?? ''),
    peers,
    health: summary?.health ?? 'UNKNOWN',
    daemonHealth: summary?.daemon_health ?? 'UNKNOWN',
    imageHealth: summary?.image_health ?? 'UNKNOWN',
    states: { ...(summary?.states ?? {}) },
  };
}
