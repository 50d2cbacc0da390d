import { Injectable } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { insertedUnlessTaken } from '../database/unique-violation';
import { RealmEntity } from '../realms/realm.entity';
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

/** The owner of `users`: the only code that writes them. */
@Injectable()
export class UsersRepository {
  constructor(private readonly db: UnitOfWork) {}

  findRealm(id: string): Promise<RealmEntity | null> {
    return this.db.manager.getRepository(RealmEntity).findOneBy({ id });
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
}
