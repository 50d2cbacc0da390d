import { Injectable } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { insertedUnlessTaken } from '../database/unique-violation';
import { UserEntity } from './user.entity';

export type UserPatch = Partial<
  Pick<UserEntity, 'displayName' | 'email' | 'enabled' | 'requireTfa'>
>;

export interface Membership {
  readonly groupId: string;
  readonly userId: string;
  /** `local` or the realm id that manages it. */
  readonly source: string;
}

/** The realm of a user: `local`, or a directory or identity provider's (`ldap`, `openid`). */
export interface UserRealm {
  readonly id: string;
  readonly type: string;
}

/** A user as its realm's directory or identity provider describes it (see RealmSyncService). */
export interface DirectoryUser {
  /** `username@realm`. */
  readonly id: string;
  readonly username: string;
  readonly displayName: string | null;
  readonly email: string | null;
  readonly externalId: string;
  /** Enable the user again if it is disabled *and* was disabled by a sync (external id now null). */
  readonly reenable: boolean;
}

/** The owner of `users`: the only code that writes them. */
@Injectable()
export class UsersRepository {
  constructor(private readonly db: UnitOfWork) {}

  /** A realm as users need it (a read of the realms' table, which realms/ owns). */
  async findRealm(id: string): Promise<UserRealm | null> {
    const [row]: UserRealm[] = await this.db.manager.query(
      'SELECT id, type FROM realms WHERE id = $1',
      [id],
    );
    return row ?? null;
  }

  listUsers(realm?: string): Promise<UserEntity[]> {
    return this.db.manager
      .getRepository(UserEntity)
      .find({ where: realm === undefined ? {} : { realmId: realm }, order: { id: 'ASC' } });
  }

  findUser(id: string): Promise<UserEntity | null> {
    return this.db.manager.getRepository(UserEntity).findOneBy({ id });
  }

  /** The memberships of several users in one query (a read of the groups' table). */
  async membershipsOf(userIds: readonly string[]): Promise<Membership[]> {
    if (userIds.length === 0) return [];
    const rows: { group_id: string; user_id: string; source: string }[] =
      await this.db.manager.query(
        'SELECT group_id, user_id, source FROM group_members WHERE user_id = ANY($1::varchar[]) ORDER BY group_id',
        [[...userIds]],
      );
    return rows.map((r) => ({ groupId: r.group_id, userId: r.user_id, source: r.source }));
  }

  /** False when the id is taken. */
  insertUser(user: UserEntity): Promise<boolean> {
    return insertedUnlessTaken(() => this.db.manager.getRepository(UserEntity).insert(user));
  }

  /** Inserts the user unless the id is taken (the first start's administrator). */
  async insertUnlessPresent(user: UserEntity): Promise<void> {
    await this.db.manager
      .createQueryBuilder()
      .insert()
      .into(UserEntity)
      .values(user)
      .orIgnore()
      .execute();
  }

  async updateUser(id: string, patch: UserPatch): Promise<void> {
    if (Object.keys(patch).length > 0)
      await this.db.manager.getRepository(UserEntity).update({ id }, patch);
  }

  /** A new password hash; the lock-out counters reset. */
  async setPassword(id: string, passwordHash: string, at: Date): Promise<void> {
    await this.db.manager
      .getRepository(UserEntity)
      .update({ id }, { passwordHash, passwordChangedAt: at, failedLogins: 0, lockedUntil: null });
  }

  /** Sessions of the user created before `at` are void, even one a racing login still inserts. */
  async voidSessionsBefore(id: string, at: Date): Promise<void> {
    await this.db.manager.getRepository(UserEntity).update({ id }, { sessionsValidAfter: at });
  }

  // --- login counters and locks (sessions/ decides when; these statements count atomically) ------

  /**
   * One more wrong current password in a session's re-check (changing factors, the password); locks
   * the account until `lockUntil` when this reaches `threshold`. A
   * lock that has run out starts the count afresh.
   */
  async recordPasswordFailure(
    userId: string,
    threshold: number,
    lockUntil: Date,
    now: Date,
  ): Promise<void> {
    await this.db.manager.query(
      `UPDATE users SET
         failed_logins = CASE WHEN locked_until IS NOT NULL AND locked_until <= $4 THEN 1 ELSE failed_logins + 1 END,
         locked_until = CASE
           WHEN (CASE WHEN locked_until IS NOT NULL AND locked_until <= $4 THEN 1 ELSE failed_logins + 1 END) >= $2 THEN $3::timestamptz
           WHEN locked_until IS NOT NULL AND locked_until <= $4 THEN NULL
           ELSE locked_until END
       WHERE id = $1`,
      [userId, threshold, lockUntil, now],
    );
  }

  async clearPasswordFailures(userId: string): Promise<void> {
    await this.db.manager.query(
      'UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1 AND (failed_logins <> 0 OR locked_until IS NOT NULL)',
      [userId],
    );
  }

  /**
   * Counts a second-factor attempt before it is checked, in one statement: false (not to be
   * checked) while the second factor is locked, after `lockThreshold` failures in a row, or — for a
   * TOTP code — while TOTP is locked or `totpThreshold` failures are counted. A lock that has run out
   * starts the count afresh. The attempt stays counted unless it succeeds (clearTfaFailures).
   */
  async reserveTfaAttempt(
    userId: string,
    totp: boolean,
    totpThreshold: number,
    lockThreshold: number,
    now: Date,
  ): Promise<boolean> {
    const [rows]: [unknown[], number] = await this.db.manager.query(
      `UPDATE users SET
         tfa_failures = (CASE WHEN tfa_locked_until <= $2 THEN 0 ELSE tfa_failures END) + 1,
         tfa_locked_until = CASE WHEN tfa_locked_until <= $2 THEN NULL ELSE tfa_locked_until END
       WHERE id = $1
         AND (tfa_locked_until IS NULL OR tfa_locked_until <= $2)
         AND (CASE WHEN tfa_locked_until <= $2 THEN 0 ELSE tfa_failures END) < $4
         AND (NOT $3 OR (NOT totp_locked AND (CASE WHEN tfa_locked_until <= $2 THEN 0 ELSE tfa_failures END) < $5))
       RETURNING tfa_failures`,
      [userId, now, totp, lockThreshold, totpThreshold],
    );
    return rows.length > 0;
  }

  /**
   * After a failed second-factor attempt (already counted by reserveTfaAttempt): TOTP locks at
   * `totpThreshold` failures, the whole second factor until `lockUntil` at `lockThreshold`.
   */
  async recordTfaFailure(
    userId: string,
    totpThreshold: number,
    lockThreshold: number,
    lockUntil: Date,
  ): Promise<void> {
    await this.db.manager.query(
      `UPDATE users SET
         totp_locked = totp_locked OR tfa_failures >= $2,
         tfa_locked_until = CASE WHEN tfa_failures >= $3 THEN $4::timestamptz ELSE tfa_locked_until END
       WHERE id = $1`,
      [userId, totpThreshold, lockThreshold, lockUntil],
    );
  }

  /** After a successful second factor: counters reset; a recovery code also unlocks TOTP. */
  async clearTfaFailures(userId: string, unlockTotp: boolean): Promise<void> {
    await this.db.manager.query(
      `UPDATE users SET tfa_failures = 0, tfa_locked_until = NULL, totp_locked = CASE WHEN $2 THEN false ELSE totp_locked END WHERE id = $1`,
      [userId, unlockTotp],
    );
  }

  /**
   * Clears every password and second-factor lock and counter of the user; answers its account
   * (`<realm>:<user name>`, case folded, as login throttles name it), or null for an unknown user.
   */
  async unlockLogins(id: string): Promise<string | null> {
    const [rows]: [{ account: string }[], number] = await this.db.manager.query(
      `UPDATE users SET totp_locked = false, tfa_failures = 0, tfa_locked_until = NULL, failed_logins = 0, locked_until = NULL
       WHERE id = $1 RETURNING lower(realm_id || ':' || username) AS account`,
      [id],
    );
    return rows[0]?.account ?? null;
  }

  /** Clears the user's second-factor lock and counters (its factors were removed). */
  async clearTfaLocks(id: string): Promise<void> {
    await this.db.manager.query(
      'UPDATE users SET totp_locked = false, tfa_failures = 0, tfa_locked_until = NULL WHERE id = $1',
      [id],
    );
  }

  /** Removes a user (sessions, memberships and second factors go by cascade). False when absent. */
  async deleteUser(id: string): Promise<boolean> {
    const result = await this.db.manager.getRepository(UserEntity).delete({ id });
    return (result.affected ?? 0) > 0;
  }

  /** Enables again the realm's users among `ids` that a sync disabled (external id cleared). */
  async reenableSyncedUsers(realmId: string, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.db.manager.query(
      'UPDATE users SET enabled = true WHERE realm_id = $1 AND id = ANY($2::text[]) AND NOT enabled AND external_id IS NULL AND synced_at IS NOT NULL',
      [realmId, [...ids]],
    );
  }

  /**
   * Creates the realm's directory users or updates them (display name, email, external id, synced
   * at; `enabled` stays). Answers how many were created.
   */
  async upsertDirectoryUsers(
    realmId: string,
    at: Date,
    users: readonly DirectoryUser[],
  ): Promise<number> {
    if (users.length === 0) return 0;
    const rows: { inserted: boolean }[] = await this.db.manager.query(
      `INSERT INTO users (id, realm_id, username, display_name, email, external_id, synced_at, created_at)
       SELECT u.id, $1, u.username, u.display_name, u.email, u.external_id, $2, $2
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS u(id, username, display_name, email, external_id)
       ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name, email = EXCLUDED.email,
         external_id = EXCLUDED.external_id, synced_at = EXCLUDED.synced_at
       RETURNING (xmax = 0) AS inserted`,
      [
        realmId,
        at,
        users.map((u) => u.id),
        users.map((u) => u.username),
        users.map((u) => u.displayName),
        users.map((u) => u.email),
        users.map((u) => u.externalId),
      ],
    );
    return rows.filter((r) => r.inserted).length;
  }

  /**
   * Disables the realm's enabled users among `ids` as a sync does (external id cleared: "disabled
   * by the sync"). Answers how many were disabled.
   */
  async disableSyncedUsers(realmId: string, ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const disabled: [{ id: string }[], number] = await this.db.manager.query(
      `UPDATE users SET enabled = false, external_id = NULL
        WHERE realm_id = $1 AND id = ANY($2::text[]) AND enabled RETURNING id`,
      [realmId, [...ids]],
    );
    return disabled[1];
  }
}
