import { Injectable } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { GroupEntity } from '../groups/group.entity';
import { RealmEntity } from '../realms/realm.entity';
import { SessionEntity } from './session.entity';
import { TotpDeviceEntity } from './tfa/totp-device.entity';
import { UserEntity } from '../users/user.entity';
import { WebauthnCredentialEntity } from './tfa/webauthn-credential.entity';

/**
 * What logging in reads and writes: the owner of `sessions` and `login_throttles` (the only code
 * that writes them); users' counters and locks; second factors.
 */
@Injectable()
export class LoginRepository {
  constructor(private readonly db: UnitOfWork) {}

  findRealm(id: string): Promise<RealmEntity | null> {
    return this.db.manager.getRepository(RealmEntity).findOneBy({ id });
  }

  findUser(id: string): Promise<UserEntity | null> {
    return this.db.manager.getRepository(UserEntity).findOneBy({ id });
  }

  /** True when a group of the user requires a second factor. */
  async groupRequiresTfa(userId: string): Promise<boolean> {
    const rows: unknown[] = await this.db.manager.query(
      'SELECT 1 FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.user_id = $1 AND g.require_tfa LIMIT 1',
      [userId],
    );
    return rows.length > 0;
  }

  /**
   * Counts a password attempt of `account` from `source` before the password is checked, in one
   * statement: false (not to be checked) while that source must wait. The attempt that reaches
   * `threshold` failures sets the wait at once — 30 s, doubled with each further failure, at most
   * `maxWaitSeconds` — so parallel attempts cannot all be checked before the first failure counts.
   * A count older than `maxWaitSeconds` starts afresh.
   */
  async reservePasswordAttempt(
    account: string,
    source: string,
    threshold: number,
    maxWaitSeconds: number,
    now: Date,
  ): Promise<boolean> {
    const rows: unknown[] = await this.db.manager.query(
      `INSERT INTO login_throttles AS t (account, source, failures, blocked_until, updated_at)
       VALUES ($1, $2, 1, CASE WHEN 1 >= $3 THEN $5::timestamptz + make_interval(secs => LEAST($4, 30)) END, $5)
       ON CONFLICT (account, source) DO UPDATE SET
         failures = (CASE WHEN t.updated_at <= $5::timestamptz - make_interval(secs => $4) THEN 0 ELSE t.failures END) + 1,
         blocked_until = CASE
           WHEN (CASE WHEN t.updated_at <= $5::timestamptz - make_interval(secs => $4) THEN 0 ELSE t.failures END) + 1 >= $3
           THEN $5::timestamptz + make_interval(secs => LEAST($4, 30 * power(2, (CASE WHEN t.updated_at <= $5::timestamptz - make_interval(secs => $4) THEN 0 ELSE t.failures END) + 1 - $3)))
           END,
         updated_at = $5
       WHERE t.blocked_until IS NULL OR t.blocked_until <= $5
       RETURNING failures`,
      [account, source, threshold, maxWaitSeconds, now],
    );
    return rows.length > 0;
  }

  /** The throttles of an account from every address (an administrator unlocked it). */
  async clearThrottlesOf(account: string): Promise<void> {
    await this.db.manager.query('DELETE FROM login_throttles WHERE account = $1', [account]);
  }

  /** After a successful login: the account's count from that source is forgotten. */
  async clearPasswordAttempts(account: string, source: string): Promise<void> {
    await this.db.manager.query('DELETE FROM login_throttles WHERE account = $1 AND source = $2', [
      account,
      source,
    ]);
  }

  confirmedTotpDevices(userId: string): Promise<TotpDeviceEntity[]> {
    return this.db.manager
      .getRepository(TotpDeviceEntity)
      .find({ where: { userId, confirmed: true }, order: { createdAt: 'ASC' } });
  }

  async unusedRecoveryCodes(userId: string): Promise<number> {
    const [row]: { count: string }[] = await this.db.manager.query(
      'SELECT count(*) AS count FROM tfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL',
      [userId],
    );
    return Number(row.count);
  }

  /**
   * Moves a device's last accepted step forward to `step` — only if it is still before it, in one
   * statement, so that two parallel logins cannot both use one code. True when this call won.
   */
  async advanceTotpStep(deviceId: string, step: number): Promise<boolean> {
    const result: [unknown[], number] = await this.db.manager.query(
      'UPDATE tfa_totp_devices SET last_step = $2 WHERE id = $1 AND (last_step IS NULL OR last_step < $2)',
      [deviceId, step],
    );
    return result[1] === 1;
  }

  /** Marks an unused recovery code of the user used; true when it existed and was unused. */
  async useRecoveryCode(userId: string, codeHash: string, at: Date): Promise<boolean> {
    const result: [unknown[], number] = await this.db.manager.query(
      'UPDATE tfa_recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL',
      [userId, codeHash, at],
    );
    return result[1] === 1;
  }

  webauthnCredentials(userId: string): Promise<WebauthnCredentialEntity[]> {
    return this.db.manager
      .getRepository(WebauthnCredentialEntity)
      .find({ where: { userId }, order: { createdAt: 'ASC', name: 'ASC' } });
  }

  /** Opens a WebAuthn challenge on the session (replacing any open one); `pendingName` names a credential being enrolled. */
  async setWebauthnChallenge(
    sessionId: string,
    challenge: string,
    expiresAt: Date,
    pendingName: string | null,
  ): Promise<void> {
    await this.db.manager.query(
      'UPDATE sessions SET webauthn_challenge = $2, webauthn_challenge_expires_at = $3, webauthn_pending_name = $4 WHERE id = $1',
      [sessionId, challenge, expiresAt, pendingName],
    );
  }

  /** Takes the session's open WebAuthn challenge, clearing it in the same statement (single use); null when none is open. */
  async takeWebauthnChallenge(
    sessionId: string,
  ): Promise<{ challenge: string; expiresAt: Date; pendingName: string | null } | null> {
    const [rows]: [{ challenge: string; expires_at: Date; pending_name: string | null }[], number] =
      await this.db.manager.query(
        `UPDATE sessions s SET webauthn_challenge = NULL, webauthn_challenge_expires_at = NULL, webauthn_pending_name = NULL
       FROM (SELECT id, webauthn_challenge, webauthn_challenge_expires_at, webauthn_pending_name FROM sessions WHERE id = $1 FOR UPDATE) old
       WHERE s.id = old.id AND old.webauthn_challenge IS NOT NULL
       RETURNING old.webauthn_challenge AS challenge, old.webauthn_challenge_expires_at AS expires_at, old.webauthn_pending_name AS pending_name`,
        [sessionId],
      );
    const row = rows[0];
    return row
      ? {
          challenge: row.challenge,
          expiresAt: new Date(row.expires_at),
          pendingName: row.pending_name,
        }
      : null;
  }

  /**
   * Records a use of a WebAuthn credential with the authenticator's new signature counter — only
   * when it is above the stored one (or both are 0: authenticators without a counter), in one
   * statement, so that a cloned or replayed authenticator state loses. True when this call won.
   */
  async useWebauthnCredential(id: string, counter: number, at: Date): Promise<boolean> {
    const result: [unknown[], number] = await this.db.manager.query(
      'UPDATE tfa_webauthn_credentials SET counter = $2, last_used_at = $3 WHERE id = $1 AND (counter < $2 OR (counter = 0 AND $2 = 0))',
      [id, counter, at],
    );
    return result[1] === 1;
  }

  async createSession(session: SessionEntity): Promise<void> {
    await this.db.manager.getRepository(SessionEntity).insert(session);
  }

  findSession(id: string): Promise<SessionEntity | null> {
    return this.db.manager.getRepository(SessionEntity).findOneBy({ id });
  }

  async deleteSession(id: string): Promise<boolean> {
    const result = await this.db.manager.getRepository(SessionEntity).delete({ id });
    return (result.affected ?? 0) > 0;
  }

  /** Removes every session of the user, or every one but `except`. */
  async deleteSessionsOf(userId: string, except?: string): Promise<void> {
    if (except === undefined) await this.db.manager.getRepository(SessionEntity).delete({ userId });
    else
      await this.db.manager.query('DELETE FROM sessions WHERE user_id = $1 AND id <> $2', [
        userId,
        except,
      ]);
  }

  /** Turns the user's session from stage `setup` into `active`; false when it is not in `setup`. */
  async activateSetupSession(id: string, userId: string): Promise<boolean> {
    const [, upgraded]: [unknown[], number] = await this.db.manager.query(
      `UPDATE sessions SET stage = 'active' WHERE id = $1 AND user_id = $2 AND stage = 'setup'`,
      [id, userId],
    );
    return upgraded === 1;
  }

  async touchSession(id: string, at: Date): Promise<void> {
    await this.db.manager.getRepository(SessionEntity).update({ id }, { lastSeenAt: at });
  }

  /**
   * Removes the sessions that have ended (housekeeping): past their absolute end, or without a
   * request for `idleSeconds` (the rules AuthService applies when a session is presented).
   */
  async deleteEndedSessions(now: Date, idleSeconds: number): Promise<number> {
    const result: [unknown[], number] = await this.db.manager.query(
      `DELETE FROM sessions
       WHERE expires_at <= $1 OR last_seen_at <= $1::timestamptz - make_interval(secs => $2)`,
      [now, idleSeconds],
    );
    return result[1];
  }

  /**
   * Removes the login throttles that no longer hold anything back (housekeeping): no wait in force,
   * and their count older than `windowSeconds`, so the next attempt would start afresh anyway
   * (reservePasswordAttempt's rule).
   */
  async deleteStaleLoginThrottles(now: Date, windowSeconds: number): Promise<number> {
    const result: [unknown[], number] = await this.db.manager.query(
      `DELETE FROM login_throttles
       WHERE updated_at <= $1::timestamptz - make_interval(secs => $2)
         AND (blocked_until IS NULL OR blocked_until <= $1)`,
      [now, windowSeconds],
    );
    return result[1];
  }

  group(id: string): Promise<GroupEntity | null> {
    return this.db.manager.getRepository(GroupEntity).findOneBy({ id });
  }
}
