import { describe, expect, it } from 'vitest';
import {
  cephTimeToIso,
  imageMirrorStatus,
  imageStatusSchema,
  poolInfoSchema,
  poolMirrorStatus,
  poolStatusSchema,
  rbdInfoSchema,
  secondsUntilSynced,
  snapshotListSchema,
  splitDescription,
  type StatusSources,
} from './rbd-mirror-status';

// Answers of Ceph 16.2.15 (two test clusters, site-a primary, site-b replaying), trimmed.
const REPLAYING =
  'replaying, {"bytes_per_second":1363148.8,"bytes_per_snapshot":13631488.0,"last_snapshot_bytes":13631488,"last_snapshot_sync_seconds":0,"local_snapshot_timestamp":1796648219,"remote_snapshot_timestamp":1796648219,"replay_state":"idle"}';

const ref = { pool: 'rbd', image: 'img1' };
const info = (primary: boolean) =>
  rbdInfoSchema.parse({
    name: 'img1',
    mirroring: {
      mode: 'snapshot',
      state: 'enabled',
      global_id: '584b1ba8-dbed-44bd-a178-587812198db1',
      primary,
    },
  });

const secondarySnapshots = snapshotListSchema.parse([
  {
    id: 7,
    name: '.mirror.non_primary.584b1ba8-dbed-44bd-a178-587812198db1.8f6a5bef',
    size: 67108864,
    timestamp: 'Mon Dec  7 12:58:54 2026',
    namespace: {
      type: 'mirror',
      state: 'non-primary',
      mirror_peer_uuids: [],
      complete: true,
      primary_mirror_uuid: 'c02fd7a3',
      primary_snap_id: 7,
      last_copied_object_number: 16,
    },
  },
]);
const primarySnapshots = snapshotListSchema.parse([
  {
    id: 4,
    name: '.mirror.primary.x.a',
    timestamp: 'Mon Dec  7 12:56:59 2026',
    namespace: { type: 'mirror', state: 'primary', mirror_peer_uuids: [], complete: true },
  },
  {
    id: 7,
    name: '.mirror.primary.x.b',
    timestamp: 'Mon Dec  7 12:58:53 2026',
    namespace: { type: 'mirror', state: 'primary', mirror_peer_uuids: ['354f'], complete: true },
  },
  { id: 8, name: 'user-snap', timestamp: 'Mon Dec  7 12:59:00 2026', namespace: { type: 'user' } },
]);

function sources(overrides: Partial<StatusSources>): StatusSources {
  return { ref, info: info(false), snapshots: [], scheduleInterval: '', ...overrides };
}

describe('rbd mirror status parsing', () => {
  it('splits a replaying description into its words and its figures', () => {
    const { text, details } = splitDescription(REPLAYING);
    expect(text).toBe('replaying');
    expect(details).toMatchObject({
      bytes_per_second: 1363148.8,
      local_snapshot_timestamp: 1796648219,
      replay_state: 'idle',
    });
    expect(splitDescription('local image is primary')).toEqual({ text: 'local image is primary' });
    expect(splitDescription('split-brain')).toEqual({ text: 'split-brain' });
    expect(splitDescription('broken, {not json')).toEqual({ text: 'broken, {not json' });
  });

  it("reads Ceph's time stamps as UTC", () => {
    expect(cephTimeToIso('Mon Dec  7 12:58:54 2026')).toBe('2026-12-07T12:58:54.000Z');
    expect(cephTimeToIso('2026-12-07 13:00:25')).toBe('2026-12-07T13:00:25.000Z');
    expect(cephTimeToIso('')).toBe('');
    expect(cephTimeToIso('yesterday')).toBe('');
  });

  it("takes a secondary's last mirrored snapshot from rbd-mirror's report, or from a newer complete copy", () => {
    const status = imageStatusSchema.parse({
      name: 'img1',
      global_id: '584b1ba8-dbed-44bd-a178-587812198db1',
      state: 'up+replaying',
      description: REPLAYING,
      last_update: '2026-12-07 12:59:18',
      peer_sites: [
        {
          site_name: 'site-a',
          state: 'up+stopped',
          description: 'local image is primary',
          last_update: '2026-12-07 12:59:18',
        },
      ],
    });
    // The report (12:59:18) is newer than the copy (12:58:54): the primary's own time of it.
    const reported = imageMirrorStatus(sources({ status, snapshots: secondarySnapshots }));
    expect(reported).toMatchObject({
      enabled: true,
      primary: false,
      state: 'up+replaying',
      description: 'replaying',
      lastUpdate: '2026-12-07T12:59:18.000Z',
      globalId: '584b1ba8-dbed-44bd-a178-587812198db1',
      mode: 'snapshot',
      lastMirroredSnapshotAt: new Date(1796648219 * 1000).toISOString(),
      bytesPerSecond: 1363148.8,
      secondsUntilSynced: 0,
      peerState: 'up+stopped',
      peerDescription: 'local image is primary',
      splitBrain: false,
    });
    // A report older than the copy (rbd-mirror rewrites it every 30 s): the copy's time.
    const stale = imageMirrorStatus(
      sources({
        status: { ...status, last_update: '2026-12-07 12:58:00' },
        snapshots: secondarySnapshots,
      }),
    );
    expect(stale.lastMirroredSnapshotAt).toBe('2026-12-07T12:58:54.000Z');
    // An incomplete copy does not count.
    const incomplete = snapshotListSchema.parse([
      {
        ...secondarySnapshots[0],
        namespace: { ...secondarySnapshots[0]!.namespace, complete: false },
      },
    ]);
    expect(imageMirrorStatus(sources({ snapshots: incomplete })).lastMirroredSnapshotAt).toBe('');
  });

  it("takes a primary's figures from the peer's report and its newest own snapshot", () => {
    const status = imageStatusSchema.parse({
      name: 'img1',
      state: 'up+stopped',
      description: 'local image is primary',
      last_update: '2026-12-07 12:59:18',
      peer_sites: [
        {
          site_name: 'site-b',
          state: 'up+replaying',
          description: REPLAYING,
          last_update: '2026-12-07 12:59:18',
        },
      ],
    });
    const primary = imageMirrorStatus(
      sources({ info: info(true), status, snapshots: primarySnapshots, scheduleInterval: '5m' }),
    );
    expect(primary).toMatchObject({
      primary: true,
      state: 'up+stopped',
      lastSnapshotAt: '2026-12-07T12:58:53.000Z',
      lastMirroredSnapshotAt: new Date(1796648219 * 1000).toISOString(),
      peerState: 'up+replaying',
      peerDescription: 'replaying',
      scheduleInterval: '5m',
      splitBrain: false,
    });
  });

  it('reports a split brain when both sides are primary, or rbd-mirror says split-brain', () => {
    const bothPrimary = imageStatusSchema.parse({
      name: 'img2',
      state: 'up+stopped',
      description: 'local image is primary',
      last_update: '2026-12-07 13:01:59',
      peer_sites: [
        {
          site_name: 'site-a',
          state: 'up+stopped',
          description: 'local image is primary',
          last_update: '2026-12-07 13:01:59',
        },
      ],
    });
    const promotedAt = snapshotListSchema.parse([
      {
        id: 12,
        name: 'c',
        timestamp: 'Mon Dec  7 13:00:40 2026',
        namespace: {
          type: 'mirror',
          state: 'non-primary',
          complete: true,
          primary_mirror_uuid: 'u',
        },
      },
      {
        id: 18,
        name: 'p',
        timestamp: 'Mon Dec  7 13:01:08 2026',
        namespace: { type: 'mirror', state: 'primary', complete: true },
      },
    ]);
    expect(
      imageMirrorStatus(sources({ info: info(true), status: bothPrimary, snapshots: promotedAt }))
        .splitBrain,
    ).toBe(true);
    // The peer's claim is older than this side's promotion: a report from before its demotion.
    const old = {
      ...bothPrimary,
      peer_sites: [{ ...bothPrimary.peer_sites[0]!, last_update: '2026-12-07 13:01:00' }],
    };
    expect(
      imageMirrorStatus(sources({ info: info(true), status: old, snapshots: promotedAt }))
        .splitBrain,
    ).toBe(false);
    // The peer is down: not (yet) a split brain.
    const down = {
      ...bothPrimary,
      peer_sites: [{ ...bothPrimary.peer_sites[0]!, state: 'down+stopped' }],
    };
    expect(
      imageMirrorStatus(sources({ info: info(true), status: down, snapshots: promotedAt }))
        .splitBrain,
    ).toBe(false);
    const demotedStale = imageStatusSchema.parse({
      name: 'img2',
      state: 'up+error',
      description: 'split-brain',
      peer_sites: [],
    });
    expect(imageMirrorStatus(sources({ status: demotedStale })).splitBrain).toBe(true);
  });

  it('answers a disabled status when the image is not mirrored', () => {
    const plain = imageMirrorStatus(
      sources({ info: rbdInfoSchema.parse({ name: 'img1', mirroring: { state: 'disabled' } }) }),
    );
    expect(plain).toMatchObject({
      enabled: false,
      state: '',
      description: 'mirroring is disabled',
      globalId: '',
    });
    expect(
      imageMirrorStatus(sources({ info: rbdInfoSchema.parse({ name: 'img1' }) })).enabled,
    ).toBe(false);
  });

  it('estimates the seconds until synced from the sync progress', () => {
    expect(
      secondsUntilSynced({
        replay_state: 'syncing',
        syncing_percent: 50,
        bytes_per_snapshot: 100e6,
        bytes_per_second: 10e6,
      }),
    ).toBe(5);
    expect(
      secondsUntilSynced({
        replay_state: 'idle',
        local_snapshot_timestamp: 10,
        remote_snapshot_timestamp: 20,
        last_snapshot_sync_seconds: 7,
      }),
    ).toBe(7);
    expect(
      secondsUntilSynced({
        replay_state: 'idle',
        local_snapshot_timestamp: 20,
        remote_snapshot_timestamp: 20,
      }),
    ).toBe(0);
    expect(secondsUntilSynced(undefined)).toBe(0);
  });

  it('summarises a pool without ever reading peer keys', () => {
    const info = poolInfoSchema.parse({
      mode: 'image',
      site_name: 'site-b',
      peers: [
        {
          uuid: '66fe',
          direction: 'rx-tx',
          site_name: 'site-a',
          mirror_uuid: '',
          client_name: 'client.rbd-mirror-peer',
        },
      ],
    });
    const status = poolStatusSchema.parse({
      summary: {
        health: 'OK',
        daemon_health: 'OK',
        image_health: 'OK',
        states: { replaying: 2, stopped: 1 },
      },
    });
    expect(poolMirrorStatus('rbd', info, status)).toEqual({
      pool: 'rbd',
      mode: 'image',
      siteName: 'site-b',
      peers: [{ uuid: '66fe', siteName: 'site-a', direction: 'rx-tx' }],
      health: 'OK',
      daemonHealth: 'OK',
      imageHealth: 'OK',
      states: { replaying: 2, stopped: 1 },
    });
    expect(
      poolMirrorStatus('rbd', poolInfoSchema.parse({ mode: 'disabled' }), undefined),
    ).toMatchObject({ mode: 'disabled', siteName: '', peers: [], health: 'UNKNOWN' });
  });
});
