import { labelSchema } from '@debvisor/common';
import type { ZodType } from 'zod';
import { AgentError, ErrorCode } from '../../shared/agent-error';
import type { Clock } from '../../shared/clock';
import {
  disabledMirrorStatus,
  type ImageMirrorStatus,
  type ImageRef,
  type PoolMirrorStatus,
} from '../storage.driver';
import {
  bootstrapTokenSchema,
  imageMirrorStatus,
  imageStatusSchema,
  mirrorSnapshots,
  poolInfoSchema,
  poolMirrorStatus,
  poolStatusSchema,
  rbdInfoSchema,
  scheduleListSchema,
  snapshotListSchema,
  type ImageStatusJson,
  type RbdInfo,
} from './rbd-mirror-status';

/** As RbdCliRepository's: 'peer' calls get the peer deadline; `input` goes to standard input. */
export interface RunOptions {
  reach?: 'local' | 'peer';
  input?: string;
}

/** What mirroring needs of the RBD CLI repository (RbdCliRepository): runs rbd, errors as AgentErrors. */
export interface RbdRunner {
  run(tool: 'rbd', args: readonly string[], options?: RunOptions): Promise<string>;
}

export interface RbdMirroringOptions {
  cli: RbdRunner;
  clock: Clock;
  /** The command deadline (ms): how long a promotion waits for this site's rbd-mirror to let go. */
  commandTimeoutMs: number;
  /** The peer deadline (ms): how long a planned promotion waits for the peer's demotion to arrive. */
  peerTimeoutMs: number;
  /** The site name a pool gets when mirroring is first enabled here and none was given (the cluster id). */
  defaultSiteName: string;
  /** The VM holding the image (the rbd driver's VM lock), asked before a demotion; undefined: free. */
  imageHolder?: (ref: ImageRef) => Promise<string | undefined>;
}

/** Bootstrap tokens are ~250 characters; anything much longer is not one. */
const MAX_TOKEN_LENGTH = 8 * 1024;
const RETRY_MS = 500;

/**
 * Snapshot-based RBD mirroring through the rbd CLI (Ceph 16): pool pairing with peer bootstrap
 * tokens, per-image enable/disable with a mirror-snapshot schedule (the Ceph manager's
 * rbd_support module takes the scheduled snapshots), status with the RPO's inputs,
 * promote/demote/resync. The rbd storage driver delegates its mirroring methods here.
 *
 * Secrets: a bootstrap token holds a Ceph key. It reaches rbd on standard input only, never in
 * argv (visible in /proc), a file or a log line, and no error message quotes it. `rbd mirror pool
 * info --all` (which prints the peers' keys) is never run.
 */
export class RbdMirroring {
  constructor(private readonly options: RbdMirroringOptions) {}

  async enableMirroring(ref: ImageRef, scheduleInterval: string): Promise<ImageMirrorStatus> {
    checkRef(ref);
    checkInterval(scheduleInterval);
    await this.ensurePoolImageMode(ref.pool, '');
    let info = await this.info(ref);
    const mirroring = info.mirroring;
    if (!mirroring || mirroring.state === 'disabled') {
      await this.rbd(['mirror', 'image', 'enable', '--', spec(ref), 'snapshot'], ref);
      info = await this.info(ref);
    } else if (mirroring.mode === 'journal') {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the RBD image ${spec(ref)} is mirrored in journal mode; disable it before enabling snapshot mirroring`,
      );
    } else if (mirroring.state !== 'enabled') {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `mirroring of the RBD image ${spec(ref)} is ${mirroring.state}; wait until it is done`,
      );
    }
    // Schedules apply to primary images only; a secondary keeps whatever its primary decides.
    if (info.mirroring?.primary) await this.setSchedule(ref, scheduleInterval);
    return this.mirrorStatus(ref);
  }

  async disableMirroring(ref: ImageRef, force: boolean): Promise<ImageMirrorStatus> {
    checkRef(ref);
    const mirroring = (await this.info(ref)).mirroring;
    if (!mirroring || mirroring.state === 'disabled') return this.mirrorStatus(ref);
    if (!mirroring.primary && !force) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the RBD image ${spec(ref)} is a non-primary mirror; disable mirroring at the primary (its mirror here is then removed), or force it`,
      );
    }
    if (!force) await this.refuseWhileHeld(ref, 'disabling its mirroring');
    if (mirroring.primary) await this.setSchedule(ref, '');
    await this.rbd(
      ['mirror', 'image', 'disable', ...(force ? ['--force'] : []), '--', spec(ref)],
      ref,
    );
    return this.mirrorStatus(ref);
  }

  async mirrorStatus(ref: ImageRef): Promise<ImageMirrorStatus> {
    checkRef(ref);
    const info = await this.info(ref);
    if (info.mirroring?.state !== 'enabled') return disabledMirrorStatus(ref);
    const [status, snapshots, scheduleInterval] = await Promise.all([
      this.imageStatus(ref),
      this.snapshots(ref),
      info.mirroring.primary ? this.scheduleInterval(ref) : Promise.resolve(''),
    ]);
    return imageMirrorStatus({ ref, info, status, snapshots, scheduleInterval });
  }

  async createMirrorSnapshot(ref: ImageRef): Promise<ImageMirrorStatus> {
    checkRef(ref);
    const mirroring = enabled(ref, await this.info(ref));
    if (!mirroring.primary) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the RBD image ${spec(ref)} is not primary here; mirror snapshots are taken at the primary`,
      );
    }
    await this.rbd(['mirror', 'image', 'snapshot', '--', spec(ref)], ref);
    return this.mirrorStatus(ref);
  }

  /**
   * Makes the image primary here.
   *
   * Planned (no force): the peer must have demoted its image and this side must hold the
   * demotion snapshot completely; it arrives seconds after the demotion, so this waits for it up to
   * the peer deadline. Then this site's rbd-mirror lets go of the image (Ceph answers EROFS/EBUSY
   * until it has), which is retried up to the command deadline.
   * Forced: promoted whatever the peer says (failover: fence the old primary first; when it comes
   * back both sides are primary, a split brain that mirrorStatus reports).
   */
  async promote(ref: ImageRef, force: boolean): Promise<ImageMirrorStatus> {
    checkRef(ref);
    const mirroring = enabled(ref, await this.info(ref));
    if (mirroring.primary) return this.mirrorStatus(ref);
    const started = this.now();
    if (!force) {
      for (;;) {
        const last = mirrorSnapshots(await this.snapshots(ref)).copies.at(-1);
        if (last?.state === 'demoted' && last.complete) break;
        if (this.now() - started + RETRY_MS > this.options.peerTimeoutMs) {
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            `the RBD image ${spec(ref)} is still primary at the peer site, or its demotion has not arrived here yet; demote it there and wait until it is synced, or force the promotion`,
          );
        }
        await this.options.clock.sleep(RETRY_MS);
      }
    }
    for (;;) {
      try {
        await this.rbd(
          ['mirror', 'image', 'promote', ...(force ? ['--force'] : []), '--', spec(ref)],
          ref,
        );
        break;
      } catch (error) {
        const held =
          error instanceof AgentError &&
          /Read-only file system|Device or resource busy/.test(error.message);
        if (!held) throw error;
        if (this.now() - started + RETRY_MS > this.options.commandTimeoutMs) {
          throw new AgentError(
            ErrorCode.FailedPrecondition,
            `the RBD image ${spec(ref)} is still held by this site's rbd-mirror; try again in a few seconds`,
          );
        }
        await this.options.clock.sleep(RETRY_MS);
      }
    }
    return this.mirrorStatus(ref);
  }

  /** Makes the image non-primary here after a last (demotion) mirror snapshot; refused while a VM holds it. */
  async demote(ref: ImageRef): Promise<ImageMirrorStatus> {
    checkRef(ref);
    const mirroring = enabled(ref, await this.info(ref));
    if (!mirroring.primary) return this.mirrorStatus(ref);
    await this.refuseWhileHeld(ref, 'demoting the image');
    await this.rbd(['mirror', 'image', 'demote', '--', spec(ref)], ref);
    return this.mirrorStatus(ref);
  }

  /** Flags a non-primary image for a full resync from the primary (rbd-mirror copies it again). */
  async resync(ref: ImageRef): Promise<ImageMirrorStatus> {
    checkRef(ref);
    const mirroring = enabled(ref, await this.info(ref));
    if (mirroring.primary) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the RBD image ${spec(ref)} is primary here; resync a non-primary image (demote this one first)`,
      );
    }
    await this.rbd(['mirror', 'image', 'resync', '--', spec(ref)], ref);
    // rbd-mirror deletes and recreates the image to copy it again: for a moment it is gone or
    // half made, and its status calls fail (ENOENT, EEXIST); the resync itself is requested.
    return this.mirrorStatus(ref).catch((error: unknown) => {
      if (
        !(error instanceof AgentError) ||
        error.code === ErrorCode.Unavailable ||
        error.code === ErrorCode.DeadlineExceeded
      )
        throw error;
      return {
        ...disabledMirrorStatus(ref),
        enabled: true,
        state: 'up+syncing',
        description: 'resync requested: the image is copied again from the primary',
        globalId: mirroring.global_id ?? '',
        mode: 'snapshot' as const,
      };
    });
  }

  /** The pool's peer bootstrap token (a secret: answered to the caller only). Enables image-mode mirroring on the pool first. */
  async createPeerBootstrap(pool: string, siteName: string): Promise<string> {
    checkName('pool', pool);
    if (siteName !== '') checkName('site', siteName);
    await this.ensurePoolImageMode(pool, siteName);
    const token = (
      await this.rbd(
        ['mirror', 'pool', 'peer', 'bootstrap', 'create', ...siteArgs(siteName), '--', pool],
        { pool },
      )
    ).trim();
    if (!isToken(token))
      throw new AgentError(ErrorCode.Internal, 'rbd answered no peer bootstrap token');
    return token;
  }

  /**
   * Pairs the pool with the peer whose token this is. The token goes to rbd on standard input
   * (`--token-path -`). rbd connects to the peer cluster, so the call has the peer deadline.
   */
  async importPeerBootstrap(
    pool: string,
    siteName: string,
    token: string,
    direction: 'rx-tx' | 'rx-only',
  ): Promise<PoolMirrorStatus> {
    checkName('pool', pool);
    if (siteName !== '') checkName('site', siteName);
    if (direction !== 'rx-tx' && direction !== 'rx-only')
      throw new AgentError(ErrorCode.InvalidArgument, 'the direction is rx-tx or rx-only');
    if (!isToken(token))
      throw new AgentError(
        ErrorCode.InvalidArgument,
        'the peer bootstrap token is not one of a Ceph cluster (rbd mirror pool peer bootstrap create)',
      );
    await this.ensurePoolImageMode(pool, siteName);
    const args = [
      'mirror',
      'pool',
      'peer',
      'bootstrap',
      'import',
      ...siteArgs(siteName),
      '--direction',
      direction,
      '--token-path',
      '-',
      '--',
      pool,
    ];
    await this.rbd(args, { pool }, { reach: 'peer', input: token.trim() });
    return this.poolMirrorStatus(pool);
  }

  async poolMirrorStatus(pool: string): Promise<PoolMirrorStatus> {
    checkName('pool', pool);
    const info = await this.json(
      ['mirror', 'pool', 'info', '--format', 'json', '--', pool],
      poolInfoSchema,
      { pool },
    );
    if (info.mode === 'disabled') return poolMirrorStatus(pool, info, undefined);
    // Without --verbose: the summary, not one entry per image.
    const status = await this.json(
      ['mirror', 'pool', 'status', '--format', 'json', '--', pool],
      poolStatusSchema,
      { pool },
    );
    return poolMirrorStatus(pool, info, status);
  }

  // --- helpers --------------------------------------------------------------------------------

  private async ensurePoolImageMode(pool: string, siteName: string): Promise<void> {
    const info = await this.json(
      ['mirror', 'pool', 'info', '--format', 'json', '--', pool],
      poolInfoSchema,
      { pool },
    );
    if (info.mode === 'disabled') {
      await this.rbd(
        [
          'mirror',
          'pool',
          'enable',
          ...siteArgs(siteName || this.options.defaultSiteName),
          '--',
          pool,
          'image',
        ],
        { pool },
      );
    } else if (info.mode !== 'image') {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the pool ${pool} mirrors in ${info.mode} mode (journal-based); snapshot mirroring needs image mode`,
      );
    } else if (siteName !== '' && info.site_name !== siteName) {
      await this.rbd(['mirror', 'pool', 'enable', ...siteArgs(siteName), '--', pool, 'image'], {
        pool,
      });
    }
  }

  private info(ref: ImageRef): Promise<RbdInfo> {
    return this.json(['info', '--format', 'json', '--', spec(ref)], rbdInfoSchema, ref);
  }

  private snapshots(ref: ImageRef) {
    return this.json(
      ['snap', 'ls', '--all', '--format', 'json', '--', spec(ref)],
      snapshotListSchema,
      ref,
    );
  }

  private async imageStatus(ref: ImageRef): Promise<ImageStatusJson | undefined> {
    try {
      return await this.json(
        ['mirror', 'image', 'status', '--format', 'json', '--', spec(ref)],
        imageStatusSchema,
        ref,
      );
    } catch (error) {
      // Between enable and rbd-mirror's first report, or while it is being disabled: no status yet.
      if (
        error instanceof AgentError &&
        (error.code === ErrorCode.NotFound || error.code === ErrorCode.InvalidArgument)
      )
        return undefined;
      throw error;
    }
  }

  private async scheduleInterval(ref: ImageRef): Promise<string> {
    try {
      return (await this.schedules(ref))[0] ?? '';
    } catch {
      // The Ceph manager (rbd_support) answers schedules; the status stays useful without them.
      return '';
    }
  }

  /**
   * The image's mirror-snapshot schedule intervals. Listed for the whole pool: `schedule ls` of an
   * image without a schedule fails (exit 2, no message), the pool's recursive list answers [].
   */
  private async schedules(ref: ImageRef): Promise<string[]> {
    const list = await this.json(
      [
        'mirror',
        'snapshot',
        'schedule',
        'ls',
        '--pool',
        ref.pool,
        '--recursive',
        '--format',
        'json',
      ],
      scheduleListSchema,
      ref,
    );
    return list
      .filter((entry) => entry.image === ref.image && !entry.namespace)
      .flatMap((entry) => entry.items.map((item) => item.interval));
  }

  /** Replaces the image's mirror-snapshot schedules by `interval` ('' removes them). */
  private async setSchedule(ref: ImageRef, interval: string): Promise<void> {
    const level = ['--pool', ref.pool, '--image', ref.image];
    const current = await this.schedules(ref);
    if (interval !== '' && current.length === 1 && current[0] === interval) return;
    for (const old of current)
      await this.rbd(['mirror', 'snapshot', 'schedule', 'remove', ...level, old], ref);
    if (interval !== '')
      await this.rbd(['mirror', 'snapshot', 'schedule', 'add', ...level, interval], ref);
  }

  /**
   * Refuses while a VM holds the image (the driver's VM lock) or a client holds librbd's lock (a
   * running writer; Ceph itself would answer EROFS), naming the holder.
   */
  private async refuseWhileHeld(ref: ImageRef, doing: string): Promise<void> {
    const vm = await this.options.imageHolder?.(ref);
    const holders = [...(vm ? [vm] : []), ...(await this.lockHolders(ref))];
    if (holders.length > 0) {
      throw new AgentError(
        ErrorCode.FailedPrecondition,
        `the RBD image ${spec(ref)} is in use by ${holders.join(', ')}; stop or move it before ${doing}`,
      );
    }
  }

  private async lockHolders(ref: ImageRef): Promise<string[]> {
    const out = (await this.rbd(['lock', 'ls', '--format', 'json', '--', spec(ref)], ref)).trim();
    const parsed: unknown = out ? JSON.parse(out) : [];
    // Ceph 16 answers [{id, locker, address}]; older releases an object keyed by lock id.
    const entries: { id?: string; locker?: string }[] = Array.isArray(parsed)
      ? parsed
      : Object.entries(parsed as Record<string, { locker?: string }>).map(([id, value]) => ({
          id,
          locker: value.locker,
        }));
    return entries.map((entry) => entry.id || entry.locker || 'a client');
  }

  private async json<T>(
    args: string[],
    schema: ZodType<T>,
    target: ImageRef | { pool: string },
  ): Promise<T> {
    const out = await this.rbd(args, target);
    let parsed: unknown;
    try {
      parsed = JSON.parse(out);
    } catch {
      throw new AgentError(
        ErrorCode.Internal,
        `rbd ${args.slice(0, 3).join(' ')} answered no JSON`,
      );
    }
    const result = schema.safeParse(parsed);
    if (!result.success)
      throw new AgentError(
        ErrorCode.Internal,
        `rbd ${args.slice(0, 3).join(' ')} answered JSON of an unexpected shape`,
      );
    return result.data;
  }

  /** Runs rbd; its errors name the image or pool, a peer call's deadline is reported as the peer's. */
  private async rbd(
    args: string[],
    target: ImageRef | { pool: string },
    options: RunOptions = {},
  ): Promise<string> {
    try {
      return await this.options.cli.run('rbd', args, options);
    } catch (error) {
      if (!(error instanceof AgentError))
        throw new AgentError(ErrorCode.Internal, `rbd ${args.slice(0, 3).join(' ')} failed`, {
          cause: error,
        });
      const what = 'image' in target ? `the RBD image ${spec(target)}` : `the pool ${target.pool}`;
      if (
        options.reach === 'peer' &&
        (error.code === ErrorCode.DeadlineExceeded || error.code === ErrorCode.Unavailable)
      ) {
        throw new AgentError(
          ErrorCode.Unavailable,
          `the peer cluster did not answer within ${Math.round(this.options.peerTimeoutMs / 1000)} s`,
          { cause: error },
        );
      }
      if (error.code === ErrorCode.NotFound)
        throw new AgentError(ErrorCode.NotFound, `no ${what.slice(4)}`, { cause: error });
      throw new AgentError(error.code, `${what}: ${error.message}`, { cause: error });
    }
  }

  private now(): number {
    return this.options.clock.now().getTime();
  }
}

function spec(ref: ImageRef): string {
  return `${ref.pool}/${ref.image}`;
}

function siteArgs(siteName: string): string[] {
  return siteName ? ['--site-name', siteName] : [];
}

function checkName(what: string, value: string): void {
  if (!labelSchema.safeParse(value).success) {
    throw new AgentError(
      ErrorCode.InvalidArgument,
      `invalid ${what} name: a ${what} name is 1-64 letters, digits, dots, underscores and inner hyphens`,
    );
  }
}

function checkRef(ref: ImageRef): void {
  checkName('pool', ref.pool);
  checkName('image', ref.image);
}

/** rbd mirror snapshot schedule intervals: minutes, hours or days ('' = no schedule). */
function checkInterval(interval: string): void {
  if (interval !== '' && !/^[1-9]\d{0,5}[mhd]$/.test(interval)) {
    throw new AgentError(
      ErrorCode.InvalidArgument,
      'invalid schedule interval: a number of minutes, hours or days such as 5m, 1h or 1d',
    );
  }
}

function enabled(ref: ImageRef, info: RbdInfo): NonNullable<RbdInfo['mirroring']> {
  if (info.mirroring?.state !== 'enabled') {
    throw new AgentError(
      ErrorCode.FailedPrecondition,
      `mirroring is not enabled on the RBD image ${spec(ref)}`,
    );
  }
  return info.mirroring;
}

/** Whether `token` has the shape of a Ceph peer bootstrap token (nothing of it is ever echoed). */
function isToken(token: string): boolean {
  const trimmed = token.trim();
  if (
    trimmed.length === 0 ||
    trimmed.length > MAX_TOKEN_LENGTH ||
    !/^[A-Za-z0-9+/=]+$/.test(trimmed)
  )
    return false;
  try {
    return bootstrapTokenSchema.safeParse(
      JSON.parse(Buffer.from(trimmed, 'base64').toString('utf8')),
    ).success;
  } catch {
    return false;
  }
}
