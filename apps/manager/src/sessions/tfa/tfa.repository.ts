import { Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { UnitOfWork } from '../../database/unit-of-work.repository';
import { isUniqueViolation } from '../../database/unique-violation';
import { LoginRepository } from '../login.repository';
import { RealmEntity } from '../../realms/realm.entity';
import { RecoveryCodeEntity } from './recovery-code.entity';
import { SessionEntity } from '../session.entity';
import { TotpDeviceEntity } from './totp-device.entity';
import { UserEntity } from '../../users/user.entity';
import { WebauthnCredentialEntity } from './webauthn-credential.entity';

/** A recovery code as stored: only its hash. */
export interface StoredRecoveryCode {
  readonly id: string;
  readonly codeHash: string;
}

export type ConfirmResult =
  /** The device is confirmed; `first` when the user had no other confirmed device (the recovery codes were replaced). */
  | { readonly confirmed: true; readonly first: boolean; readonly sessionUpgraded: boolean }
  /** Gone, confirmed meanwhile, or the code's step was used meanwhile: nothing changed. */
  | { readonly confirmed: false };

export type WebauthnAddResult =
  /** Stored; `first` when the user had no other second factor (the recovery codes were replaced). */
  | { readonly added: true; readonly first: boolean; readonly sessionUpgraded: boolean }
  /** The user has a credential of that name, or the credential is registered already: nothing changed. */
  | { readonly added: false };

/**
 * What managing second factors reads and writes: TOTP devices, recovery codes. The caller's session
 * moves from `setup` to `active` through its owner, LoginRepository, in the same transaction.
 */
@Injectable()
export class TfaRepository {
  constructor(
    private readonly db: UnitOfWork,
    private readonly sessions: LoginRepository,
  ) {}

  findUser(id: string): Promise<UserEntity | null> {
    return this.db.manager.getRepository(UserEntity).findOneBy({ id });
  }

  findRealm(id: string): Promise<RealmEntity | null> {
    return this.db.manager.getRepository(RealmEntity).findOneBy({ id });
  }

  findSession(id: string): Promise<SessionEntity | null> {
    return this.db.manager.getRepository(SessionEntity).findOneBy({ id });
  }

  devices(userId: string): Promise<TotpDeviceEntity[]> {
    return this.db.manager
      .getRepository(TotpDeviceEntity)
      .find({ where: { userId }, order: { createdAt: 'ASC', name: 'ASC' } });
  }

  device(userId: string, id: string): Promise<TotpDeviceEntity | null> {
    return this.db.manager.getRepository(TotpDeviceEntity).findOneBy({ id, userId });
  }

  async unusedRecoveryCodes(userId: string): Promise<number> {
    const [row]: { count: string }[] = await this.db.manager.query(
      'SELECT count(*) AS count FROM tfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL',
      [userId],
    );
    return Number(row.count);
  }

  /** Adds an unconfirmed device; false when the user has one of that name already (unique index). */
  async createDevice(device: TotpDeviceEntity): Promise<boolean> {
    try {
      await this.db.manager.getRepository(TotpDeviceEntity).insert(device);
      return true;
    } catch (error) {
      if (isUniqueViolation(error)) return false;
      throw error;
    }
  }

  /**
   * In one transaction, serialized per user: confirms the unconfirmed device and moves its last
   * accepted step to `step` (only when still before it, so that one code confirms once); when the
   * user has no other confirmed device, replaces their recovery codes with `recoveryCodes`; and
   * turns the caller's session from stage `setup` into `active`.
   */
  async confirmDevice(input: {
    userId: string;
    deviceId: string;
    step: number;
    recoveryCodes: readonly StoredRecoveryCode[];
    sessionId: string | null;
    now: Date;
  }): Promise<ConfirmResult> {
    return this.db.run(async () => {
      const tx = this.db.manager;
      await lockUser(tx, input.userId);
      const [, confirmed]: [unknown[], number] = await tx.query(
        `UPDATE tfa_totp_devices SET confirmed = true, last_step = $3
         WHERE id = $1 AND user_id = $2 AND NOT confirmed AND (last_step IS NULL OR last_step < $3)`,
        [input.deviceId, input.userId, input.step],
      );
      if (confirmed !== 1) return { confirmed: false };
      return { confirmed: true, ...(await this.factorAdded(tx, input, { totp: input.deviceId })) };
    });
  }

  webauthnCredentials(userId: string): Promise<WebauthnCredentialEntity[]> {
    return this.db.manager
      .getRepository(WebauthnCredentialEntity)
      .find({ where: { userId }, order: { createdAt: 'ASC', name: 'ASC' } });
  }

  /**
   * In one transaction, serialized per user: stores a verified WebAuthn credential; when the user
   * had no other second factor, replaces their recovery codes with `recoveryCodes`; and turns the
   * caller's session from stage `setup` into `active`. Not added when the name or the credential is
   * taken (unique indexes).
   */
  async addWebauthnCredential(input: {
    credential: WebauthnCredentialEntity;
    recoveryCodes: readonly StoredRecoveryCode[];
    sessionId: string | null;
    now: Date;
  }): Promise<WebauthnAddResult> {
    try {
      return await this.db.run(async () => {
        const tx = this.db.manager;
        const userId = input.credential.userId;
        await lockUser(tx, userId);
        await tx.getRepository(WebauthnCredentialEntity).insert(input.credential);
        return {
          added: true as const,
          ...(await this.factorAdded(tx, { ...input, userId }, { webauthn: input.credential.id })),
        };
      });
    } catch (error) {
      if (isUniqueViolation(error)) return { added: false };
      throw error;
    }
  }

  /** Removes a WebAuthn credential of the user; with the last second factor, the recovery codes go too. False when there was none. */
  async deleteWebauthnCredential(userId: string, id: string): Promise<boolean> {
    return this.db.run(async () => {
      const tx = this.db.manager;
      await lockUser(tx, userId);
      const result = await tx.getRepository(WebauthnCredentialEntity).delete({ id, userId });
      if ((result.affected ?? 0) === 0) return false;
      if (!(await hasSecondFactor(tx, userId, {})))
        await tx.getRepository(RecoveryCodeEntity).delete({ userId });
      return true;
    });
  }

  /**
   * Removes a device of the user; when no confirmed device is left, the recovery codes go too (they
   * belong to the second factor that is now gone). False when there was no such device.
   */
  async deleteDevice(userId: string, deviceId: string): Promise<boolean> {
    return this.db.run(async () => {
      const tx = this.db.manager;
      await lockUser(tx, userId);
      const result = await tx.getRepository(TotpDeviceEntity).delete({ id: deviceId, userId });
      if ((result.affected ?? 0) === 0) return false;
      if (!(await hasSecondFactor(tx, userId, {})))
        await tx.getRepository(RecoveryCodeEntity).delete({ userId });
      return true;
    });
  }

  /**
   * Replaces the user's recovery codes, only while the user has a confirmed device (checked in the
   * same transaction). False when there is none.
   */
  async replaceRecoveryCodes(
    userId: string,
    codes: readonly StoredRecoveryCode[],
    now: Date,
  ): Promise<boolean> {
    return this.db.run(async () => {
      const tx = this.db.manager;
      await lockUser(tx, userId);
      if (!(await hasSecondFactor(tx, userId, {}))) return false;
      await replaceCodes(tx, userId, codes, now);
      return true;
    });
  }

  /** Stores a user's one-time enrolment code (replacing any earlier one); false for an unknown user. */
  async setEnrolmentCode(
    userId: string,
    codeHash: string,
    expiresAt: Date,
    at: Date,
  ): Promise<boolean> {
    const rows: unknown[] = await this.db.manager.query(
      `INSERT INTO tfa_enrolment_codes (user_id, code_hash, expires_at, created_at)
       SELECT id, $2, $3, $4 FROM users WHERE id = $1
       ON CONFLICT (user_id) DO UPDATE SET code_hash = $2, expires_at = $3, created_at = $4
       RETURNING user_id`,
      [userId, codeHash, expiresAt, at],
    );
    return rows.length > 0;
  }

  /** Spends the user's enrolment code if it is `codeHash` and has not expired, in one statement; true when it was. */
  async takeEnrolmentCode(userId: string, codeHash: string, now: Date): Promise<boolean> {
    const [rows]: [unknown[], number] = await this.db.manager.query(
      'DELETE FROM tfa_enrolment_codes WHERE user_id = $1 AND code_hash = $2 AND expires_at > $3 RETURNING user_id',
      [userId, codeHash, now],
    );
    return rows.length > 0;
  }

  /** Removes all TOTP devices, WebAuthn credentials and recovery codes of the user; false for an unknown user. */
  async removeAllFactors(userId: string): Promise<boolean> {
    return this.db.run(async () => {
      const tx = this.db.manager;
      if (!(await lockUser(tx, userId))) return false;
      await tx.getRepository(TotpDeviceEntity).delete({ userId });
      await tx.getRepository(WebauthnCredentialEntity).delete({ userId });
      await tx.getRepository(RecoveryCodeEntity).delete({ userId });
      return true;
    });
  }

  /**
   * After a second factor was added (inside its transaction): when it is the user's first, the
   * recovery codes are replaced; the caller's `setup` session becomes `active` (through its owner).
   */
  private async factorAdded(
    tx: EntityManager,
    input: {
      userId: string;
      recoveryCodes: readonly StoredRecoveryCode[];
      sessionId: string | null;
      now: Date;
    },
    added: { totp?: string; webauthn?: string },
  ): Promise<{ first: boolean; sessionUpgraded: boolean }> {
    const first = !(await hasSecondFactor(tx, input.userId, added));
    if (first) await replaceCodes(tx, input.userId, input.recoveryCodes, input.now);
    const sessionUpgraded =
      !!input.sessionId &&
      (await this.sessions.activateSetupSession(input.sessionId, input.userId));
    return { first, sessionUpgraded };
  }
}

/** Serializes second-factor changes of one user (row lock until the transaction ends); false when there is no such user. */
async function lockUser(tx: EntityManager, userId: string): Promise<boolean> {
  const rows: unknown[] = await tx.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [userId]);
  return rows.length > 0;
}

/** True when the user has a confirmed TOTP device or a WebAuthn credential, other than the ones in `except`. */
async function hasSecondFactor(
  tx: EntityManager,
  userId: string,
  except: { totp?: string; webauthn?: string },
): Promise<boolean> {
  const rows: unknown[] = await tx.query(
    `SELECT 1 FROM tfa_totp_devices WHERE user_id = $1 AND confirmed AND id IS DISTINCT FROM $2::uuid
     UNION ALL SELECT 1 FROM tfa_webauthn_credentials WHERE user_id = $1 AND id IS DISTINCT FROM $3::uuid LIMIT 1`,
    [userId, except.totp ?? null, except.webauthn ?? null],
  );
  return rows.length > 0;
}

async function replaceCodes(
  tx: EntityManager,
  userId: string,
  codes: readonly StoredRecoveryCode[],
  now: Date,
): Promise<void> {
  const repository = tx.getRepository(RecoveryCodeEntity);
  await repository.delete({ userId });
  if (codes.length > 0)
    await repository.insert(
      codes.map((c) => ({ id: c.id, userId, codeHash: c.codeHash, usedAt: null, createdAt: now })),
    );
}
