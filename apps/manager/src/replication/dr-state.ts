import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';

/**
 * The DR state machine of a mirrored VM, as pure functions (no I/O), like csi-addons'
 * VolumeReplication: each of the two sites has a role, and exactly one is primary.
 *
 *   enable            → source primary,   target secondary
 *   switchover        → the roles swap (planned: both sites answer, nothing is lost)
 *   failover          → the secondary becomes primary, the old primary is set secondary
 *                       (its images stay primary on its own cluster until resync: split brain)
 *   resync            → the non-primary site becomes resync (its images demoted and resynced)
 *   resync completed  → resync becomes secondary (seen replaying, no split brain)
 *   migrated          → the site the VM was migrated to is primary, the other secondary
 */
export const SITE_ROLES = ['primary', 'secondary', 'resync'] as const;
export type SiteRole = (typeof SITE_ROLES)[number];

export const REPLICATION_PHASES = ['enabling', 'active', 'disabling'] as const;
export type ReplicationPhase = (typeof REPLICATION_PHASES)[number];

export const DR_ACTIONS = ['enable', 'disable', 'switchover', 'failover', 'resync'] as const;
export type DrAction = (typeof DR_ACTIONS)[number];

export type Side = 'source' | 'target';

/** One disk of a mirrored VM: its pool at the source and its image name (the same at both sites). */
export interface ReplicatedDisk {
  readonly pool: string;
  readonly image: string;
}

/** A DR action's task and options, kept on the VM's record while the task is queued or running. */
export interface PendingAction {
  readonly action: DrAction;
  readonly taskId: string;
  /** switchover / failover: the node of the other remote to start the VM on ('' = any). */
  readonly targetNode?: string;
  /** failover: the operator declared the source down (no fence possible). */
  readonly declareSourceDown?: boolean;
  readonly reason?: string;
  /** The credential to act with on each remote (null: the remote's default), as the caller's rights chose. */
  readonly credentials: Readonly<Record<string, string | null>>;
  /**
   * switchover / failover, recorded before the first change: the side that was primary when the
   * task began (a resumed task tells from it whether the roles were recorded already).
   */
  readonly origin?: Side;
  /** switchover: the VM was running before it was stopped (it is started at the other site). */
  readonly wasRunning?: boolean;
  /** switchover: the node the VM was on at the primary site (where an undo defines it again). */
  readonly sourceNode?: string;
}

export interface SiteRoles {
  readonly sourceState: SiteRole;
  readonly targetState: SiteRole;
}

export function other(side: Side): Side {
  return side === 'source' ? 'target' : 'source';
}

export function roleOf(roles: SiteRoles, side: Side): SiteRole {
  return side === 'source' ? roles.sourceState : roles.targetState;
}

/** The side whose images are primary (where the VM runs); an inconsistent record is an internal error. */
export function primarySide(roles: SiteRoles): Side {
  const source = roles.sourceState === 'primary';
  const target = roles.targetState === 'primary';
  if (source === target)
    throw new DomainError(
      ErrorCode.Internal,
      `inconsistent DR state (source ${roles.sourceState}, target ${roles.targetState})`,
    );
  return source ? 'source' : 'target';
}

function withRoles(primary: Side, otherRole: SiteRole): SiteRoles {
  return primary === 'source'
    ? { sourceState: 'primary', targetState: otherRole }
    : { sourceState: otherRole, targetState: 'primary' };
}

/** What the DR state looks like right after enabling. */
export function enabledRoles(): SiteRoles {
  return { sourceState: 'primary', targetState: 'secondary' };
}

/**
 * Planned switchover: the roles swap. Refused (409) while the other side is being resynced or the
 * images are split-brained (a switchover would pick one of two diverged copies silently).
 */
export function switchover(roles: SiteRoles, splitBrain: boolean): SiteRoles {
  const from = primarySide(roles);
  if (roleOf(roles, other(from)) === 'resync')
    throw new DomainError(
      ErrorCode.Conflict,
      'the other site is still being resynced; wait until it is secondary (GET …/replication shows it)',
    );
  if (splitBrain)
    throw new DomainError(
      ErrorCode.Conflict,
      'the images are primary at both sites (split brain); resync the stale site first (POST …/replication/resync)',
    );
  return withRoles(other(from), 'secondary');
}

/**
 * Unplanned failover to the secondary: it becomes primary, the old primary is set secondary (what
 * it still holds is stale from now on). Refused (409) when the secondary is being resynced: its
 * copy is not consistent.
 */
export function failover(roles: SiteRoles): SiteRoles {
  const from = primarySide(roles);
  if (roleOf(roles, other(from)) === 'resync')
    throw new DomainError(
      ErrorCode.Conflict,
      'the surviving site is being resynced: its copy is not consistent and cannot be promoted',
    );
  return withRoles(other(from), 'secondary');
}

/**
 * The VM was migrated (live or offline, outside a DR task) to the site `to`: its disks changed
 * sides with it (the source demoted, the target promoted), so `to` is primary and the other site
 * secondary, as after a switchover. Undefined when `to` is primary already (nothing to change: the
 * same move told again after a restart).
 */
export function migrated(roles: SiteRoles, to: Side): SiteRoles | undefined {
  if (primarySide(roles) === to) return undefined;
  return withRoles(to, 'secondary');
}

/**
 * Resync of the non-primary site (demote its images, resync them from the primary): allowed when
 * it is split-brained or reported in error; refused (409) when there is nothing to repair.
 */
export function resync(roles: SiteRoles, needsResync: boolean): SiteRoles {
  const primary = primarySide(roles);
  if (!needsResync)
    throw new DomainError(
      ErrorCode.Conflict,
      'nothing to resync: the other site is a healthy secondary (no split brain, no error)',
    );
  return withRoles(primary, 'resync');
}

/** A resyncing site that is seen replaying without split brain is secondary again. */
export function resyncSettled(roles: SiteRoles, replaying: boolean): SiteRoles | undefined {
  const primary = primarySide(roles);
  if (roleOf(roles, other(primary)) !== 'resync' || !replaying) return undefined;
  return withRoles(primary, 'secondary');
}

/**
 * The VM's recovery point objective as the manager computes it: now − the oldest of its disks'
 * last mirrored snapshot (what a failover now would lose at most). A disk not mirrored once yet
 * counts from when mirroring was enabled. Undefined when no site answered for some disk.
 */
export function rpoSeconds(
  now: Date,
  lastMirrored: readonly (string | null | undefined)[],
  enabledAt: Date,
): number | undefined {
  if (lastMirrored.length === 0) return undefined;
  let oldest = Number.POSITIVE_INFINITY;
  for (const value of lastMirrored) {
    if (value === undefined) return undefined;
    const at = value === null || value === '' ? enabledAt.getTime() : Date.parse(value);
    oldest = Math.min(oldest, Number.isNaN(at) ? enabledAt.getTime() : at);
  }
  return Math.max(0, Math.round((now.getTime() - oldest) / 1000));
}

/** "5m" → 300; the schedule intervals rbd accepts (minutes, hours, days). */
export function intervalSeconds(interval: string): number {
  const match = /^(\d{1,4})([mhd])$/.exec(interval);
  if (!match)
    throw new DomainError(
      ErrorCode.ValidationFailed,
      `scheduleInterval: ${interval} is not an interval like 5m, 1h or 1d`,
    );
  return Number(match[1]) * { m: 60, h: 3600, d: 86_400 }[match[2] as 'm' | 'h' | 'd'];
}
