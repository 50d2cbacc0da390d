import { Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { AclService } from '../acl/acl.service';
import { CallerCache } from '../authz/caller-cache';
import type { Caller } from '../authz/caller';
import { RateLimiterService } from '../authz/rate-limiter.service';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { TokensService } from '../tokens/tokens.service';
import { PasswordHasherRepository } from './password-hasher.repository';
import { PasswordPolicy } from './password-policy';
import { formatUserId } from '../common/principal';
import { newUser, type UserEntity } from './user.entity';
import { UserSessions } from './user-sessions';
import type { CreateUserInput, UpdateUserInput, UserView } from './users.dto';
import {
  UsersRepository,
  type DirectoryUser,
  type Membership,
  type UserPatch,
} from './users.repository';

/**
 * Users: listing, creating (local users with a password; directory users ahead of their first
 * login, so that they can be granted roles), changing, disabling, removing, and passwords. An
 * administrator can never disable or remove their own user (no locking oneself out).
 */
@Injectable()
export class UsersService {
  constructor(
    private readonly repository: UsersRepository,
    private readonly sessions: UserSessions,
    private readonly tokens: TokensService,
    private readonly acl: AclService,
    private readonly db: UnitOfWork,
    private readonly passwords: PasswordHasherRepository,
    private readonly policy: PasswordPolicy,
    private readonly callers: CallerCache,
    private readonly limits: RateLimiterService,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
  ) {}

  async list(realm?: string): Promise<{ items: UserView[] }> {
    const users = await this.repository.listUsers(realm);
    const byUser = new Map<string, Membership[]>();
    for (const m of await this.repository.membershipsOf(users.map((u) => u.id)))
      byUser.set(m.userId, [...(byUser.get(m.userId) ?? []), m]);
    return { items: users.map((u) => toView(u, byUser.get(u.id) ?? [])) };
  }

  async get(id: string): Promise<UserView> {
    const user = await this.require(id);
    return toView(user, await this.repository.membershipsOf([id]));
  }

  async create(input: CreateUserInput): Promise<UserView> {
    const realm = await this.repository.findRealm(input.realm);
    if (!realm) throw DomainError.notFound(`realm ${input.realm}`);
    const id = formatUserId(input.username, input.realm);
    if (input.password !== undefined) {
      if (realm.type !== 'local') {
        throw new DomainError(
          ErrorCode.ValidationFailed,
          `password: users of the ${realm.type} realm ${realm.id} log in with their directory's password; only local users have a password in the manager`,
        );
      }
      this.policy.check(input.password, id);
    }
    const now = this.clock.now();
    const user = newUser({
      id,
      realmId: realm.id,
      username: input.username,
      displayName: input.displayName ?? null,
      email: input.email ?? null,
      enabled: input.enabled,
      passwordHash: input.password === undefined ? null : await this.passwords.hash(input.password),
      passwordChangedAt: input.password === undefined ? null : now,
      requireTfa: input.requireTfa,
      createdAt: now,
    });
    if (!(await this.repository.insertUser(user)))
      throw new DomainError(ErrorCode.Conflict, `user ${id} already exists`);
    this.callers.invalidate();
    this.audit.note({
      user: id,
      realm: realm.id,
      withPassword: input.password !== undefined,
      enabled: input.enabled,
    });
    return toView(user, []);
  }

  /** Changes a user; disabling it ends its sessions, and its tokens stop working with it. */
  async update(caller: Caller, id: string, input: UpdateUserInput): Promise<UserView> {
    const user = await this.require(id);
    const disabling = input.enabled === false && user.enabled;
    if (disabling) this.refuseSelf(caller, id, 'disable');
    const patch: UserPatch = {};
    if (input.displayName !== undefined) patch.displayName = input.displayName;
    if (input.email !== undefined) patch.email = input.email;
    if (input.enabled !== undefined) patch.enabled = input.enabled;
    if (input.requireTfa !== undefined) patch.requireTfa = input.requireTfa;
    await this.db.run(async () => {
      await this.repository.updateUser(id, patch);
      if (disabling) await this.sessions.end(id, { all: this.clock.now() });
    });
    this.callers.invalidate();
    this.audit.note({
      user: id,
      changed: Object.keys(patch),
      ...(disabling ? { sessionsEnded: true } : {}),
    });
    return this.get(id);
  }

  async delete(caller: Caller, id: string): Promise<void> {
    this.refuseSelf(caller, id, 'remove');
    const deleted = await this.db.run(async () => {
      await this.tokens.removeOwnedBy('user', [id]);
      await this.acl.removeGrantsOf('user', [id]);
      return this.repository.deleteUser(id);
    });
    if (!deleted) throw DomainError.notFound(`user ${id}`);
    this.callers.invalidate();
    this.audit.note({ user: id });
  }

  /** An administrator sets a local user's password: every session of the user ends, the lock-out resets. */
  async resetPassword(id: string, password: string): Promise<void> {
    const user = await this.require(id);
    await this.requireLocal(user);
    this.policy.check(password, id);
    const now = this.clock.now();
    const hash = await this.passwords.hash(password);
    await this.db.run(async () => {
      await this.repository.setPassword(id, hash, now);
      await this.sessions.end(id, { all: now });
    });
    this.callers.invalidate();
    this.audit.note({ user: id, sessionsEnded: true });
  }

  /**
   * A local user changes their own password (through a session): the current password must be
   * right — attempts count against the login rate limit of the user — and every other session of
   * the user ends.
   */
  async changeOwnPassword(
    caller: Caller,
    currentPassword: string,
    newPassword: string,
  ): Promise<void> {
    if (caller.kind !== 'session' || caller.principalType !== 'user' || !caller.sessionId) {
      throw new DomainError(ErrorCode.Forbidden, 'changing your password needs a login session');
    }
    await this.limits.loginAttempt(`password-change:${caller.principal}`);
    const user = await this.require(caller.principal);
    await this.requireLocal(user);
    if (!user.passwordHash || !(await this.passwords.verify(user.passwordHash, currentPassword))) {
      throw new DomainError(ErrorCode.Forbidden, 'currentPassword: the current password is wrong');
    }
    if (currentPassword === newPassword)
      throw new DomainError(
        ErrorCode.ValidationFailed,
        'newPassword: the new password must differ from the current one',
      );
    this.policy.check(newPassword, user.id, 'newPassword');
    const hash = await this.passwords.hash(newPassword);
    const sessionId = caller.sessionId;
    await this.db.run(async () => {
      await this.repository.setPassword(user.id, hash, this.clock.now());
      await this.sessions.end(user.id, { except: sessionId });
    });
    this.callers.invalidate();
    this.audit.note({ user: user.id, otherSessionsEnded: true });
  }

  private refuseSelf(caller: Caller, id: string, what: 'disable' | 'remove'): void {
    if (caller.principalType === 'user' && caller.principal === id) {
      throw new DomainError(
        ErrorCode.Forbidden,
        `you cannot ${what} your own user ${id}: another administrator must do it`,
      );
    }
  }

  private async requireLocal(user: UserEntity): Promise<void> {
    const realm = await this.repository.findRealm(user.realmId);
    if (realm?.type !== 'local') {
      throw new DomainError(
        ErrorCode.ValidationFailed,
        `user ${user.id} belongs to a ${realm?.type ?? 'missing'} realm: its password is managed by the directory, not the manager`,
      );
    }
  }

  private async require(id: string): Promise<UserEntity> {
    const user = await this.repository.findUser(id);
    if (!user) throw DomainError.notFound(`user ${id}`);
    return user;
  }

  // --- for the features that act on users (sessions, realms, authentication) ---------------------

  /** Stores the user unless the id is taken (the first start's administrator); no audit entry. */
  async createUnlessPresent(user: UserEntity): Promise<void> {
    await this.repository.insertUnlessPresent(user);
    this.callers.invalidate();
  }

  // Login counters and locks, for sessions/ (which decides when they count): each one statement.

  /** A wrong current password in a session's re-check; locks the account at `threshold`. */
  recordPasswordFailure(id: string, threshold: number, lockUntil: Date, now: Date): Promise<void> {
    return this.repository.recordPasswordFailure(id, threshold, lockUntil, now);
  }

  clearPasswordFailures(id: string): Promise<void> {
    return this.repository.clearPasswordFailures(id);
  }

  /** Counts a second-factor attempt before it is checked; false while it may not be checked. */
  reserveTfaAttempt(
    id: string,
    totp: boolean,
    totpThreshold: number,
    lockThreshold: number,
    now: Date,
  ): Promise<boolean> {
    return this.repository.reserveTfaAttempt(id, totp, totpThreshold, lockThreshold, now);
  }

  recordTfaFailure(
    id: string,
    totpThreshold: number,
    lockThreshold: number,
    lockUntil: Date,
  ): Promise<void> {
    return this.repository.recordTfaFailure(id, totpThreshold, lockThreshold, lockUntil);
  }

  clearTfaFailures(id: string, unlockTotp: boolean): Promise<void> {
    return this.repository.clearTfaFailures(id, unlockTotp);
  }

  /** Clears every login lock and counter of the user; its account name, or null for an unknown user. */
  unlockLogins(id: string): Promise<string | null> {
    return this.repository.unlockLogins(id);
  }

  clearTfaLocks(id: string): Promise<void> {
    return this.repository.clearTfaLocks(id);
  }

  /**
   * What a realm's directory says about its users (the directory sync and directory logins): the
   * listed users created or updated (those a sync disabled enabled again as `reenable` says), and
   * the enabled ones in `disable` disabled as vanished. In the caller's transaction, if any.
   */
  async applyDirectoryUsers(
    realmId: string,
    at: Date,
    users: readonly DirectoryUser[],
    disable: readonly string[],
  ): Promise<{ created: number; disabled: number }> {
    return this.db.run(async () => {
      await this.repository.reenableSyncedUsers(
        realmId,
        users.filter((u) => u.reenable).map((u) => u.id),
      );
      const created = await this.repository.upsertDirectoryUsers(realmId, at, users);
      const disabled = await this.repository.disableSyncedUsers(realmId, disable);
      return { created, disabled };
    });
  }

  /** Sessions of the user created before `at` are void (the session rule in sessions/ calls this). */
  voidSessionsBefore(id: string, at: Date): Promise<void> {
    return this.repository.voidSessionsBefore(id, at);
  }
}

/** A user as answered (never its password hash), with its memberships. */
function toView(user: UserEntity, memberships: readonly Membership[]): UserView {
  return {
    id: user.id,
    realm: user.realmId,
    username: user.username,
    displayName: user.displayName,
    email: user.email,
    enabled: user.enabled,
    requireTfa: user.requireTfa,
    hasPassword: user.passwordHash !== null,
    passwordChangedAt: user.passwordChangedAt?.toISOString() ?? null,
    lockedUntil: user.lockedUntil?.toISOString() ?? null,
    totpLocked: user.totpLocked,
    groups: memberships.map((m) => ({ id: m.groupId, source: m.source })),
    createdAt: user.createdAt.toISOString(),
    syncedAt: user.syncedAt?.toISOString() ?? null,
  };
}
