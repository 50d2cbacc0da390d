import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, type EntityManager } from 'typeorm';
import { RealmEntity } from './realm.entity';
import { RecoveryCodeEntity } from './recovery-code.entity';
import { SessionEntity } from './session.entity';
import { TotpDeviceEntity } from './totp-device.entity';
import { UserEntity } from './user.entity';

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

/** What managing second factors reads and writes: TOTP devices, recovery codes, users' second-factor locks. */
@Injectable()
export class TfaRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  findUser(id: string): Promise<UserEntity | null> {
    return this.dataSource.getRepository(UserEntity).findOneBy({ id });
  }

  findRealm(id: string): Promise<RealmEntity | null> {
    return this.dataSource.getRepository(RealmEntity).findOneBy({ id });
  }

  findSession(id: string): Promise<SessionEntity | null> {
    return this.dataSource.getRepository(SessionEntity).findOneBy({ id });
  }

  devices(userId: string): Promise<TotpDeviceEntity[]> {
    return this.dataSource.getRepository(TotpDeviceEntity).find({ where: { userId }, order: { createdAt: 'ASC', name: 'ASC' } });
  }

  device(userId: string, id: string): Promise<TotpDeviceEntity | null> {
    return this.dataSource.getRepository(TotpDeviceEntity).findOneBy({ id, userId });
  }

  async unusedRecoveryCodes(userId: string): Promise<number> {
    const [row]: { count: string }[] = await this.dataSource.query('SELECT count(*) AS count FROM tfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL', [
      userId,
    ]);
    return Number(row.count);
  }

  /** Adds an unconfirmed device; false when the user has one of that name already (unique index). */
  async createDevice(device: TotpDeviceEntity): Promise<boolean> {
    try {
      await this.dataSource.getRepository(TotpDeviceEntity).insert(device);
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
    return this.dataSource.transaction(async (tx) => {
      await lockUser(tx, input.userId);
      const [, confirmed]: [unknown[], number] = await tx.query(
        `UPDATE tfa_totp_devices SET confirmed = true, last_step = $3
         WHERE id = $1 AND user_id = $2 AND NOT confirmed AND (last_step IS NULL OR last_step < $3)`,
        [input.deviceId, input.userId, input.step],
      );
      if (confirmed !== 1) return { confirmed: false };
      const others: unknown[] = await tx.query('SELECT 1 FROM tfa_totp_devices WHERE user_id = $1 AND confirmed AND id <> $2 LIMIT 1', [
        input.userId,
        input.deviceId,
      ]);
      const first = others.length === 0;
      if (first) await replaceCodes(tx, input.userId, input.recoveryCodes, input.now);
      let sessionUpgraded = false;
      if (input.sessionId) {
        const [, upgraded]: [unknown[], number] = await tx.query(`UPDATE sessions SET stage = 'active' WHERE id = $1 AND user_id = $2 AND stage = 'setup'`, [
          input.sessionId,
          input.userId,
        ]);
        sessionUpgraded = upgraded === 1;
      }
      return { confirmed: true, first, sessionUpgraded };
    });
  }

  /**
   * Removes a device of the user; when no confirmed device is left, the recovery codes go too (they
   * belong to the second factor that is now gone). False when there was no such device.
   */
  async deleteDevice(userId: string, deviceId: string): Promise<boolean> {
    return this.dataSource.transaction(async (tx) => {
      await lockUser(tx, userId);
      const result = await tx.getRepository(TotpDeviceEntity).delete({ id: deviceId, userId });
      if ((result.affected ?? 0) === 0) return false;
      const left: unknown[] = await tx.query('SELECT 1 FROM tfa_totp_devices WHERE user_id = $1 AND confirmed LIMIT 1', [userId]);
      if (left.length === 0) await tx.getRepository(RecoveryCodeEntity).delete({ userId });
      return true;
    });
  }

  /**
   * Replaces the user's recovery codes, only while the user has a confirmed device (checked in the
   * same transaction). False when there is none.
   */
  async replaceRecoveryCodes(userId: string, codes: readonly StoredRecoveryCode[], now: Date): Promise<boolean> {
    return this.dataSource.transaction(async (tx) => {
      await lockUser(tx, userId);
      const devices: unknown[] = await tx.query('SELECT 1 FROM tfa_totp_devices WHERE user_id = $1 AND confirmed LIMIT 1', [userId]);
      if (devices.length === 0) return false;
      await replaceCodes(tx, userId, codes, now);
      return true;
    });
  }

  /** Clears every password and second-factor lock and counter of the user; false for an unknown user. */
  async unlock(userId: string): Promise<boolean> {
    const [, affected]: [unknown[], number] = await this.dataSource.query(
      `UPDATE users SET totp_locked = false, tfa_failures = 0, tfa_locked_until = NULL, failed_logins = 0, locked_until = NULL WHERE id = $1`,
      [userId],
    );
    return affected === 1;
  }

  /** Removes all TOTP devices and recovery codes of the user, and its TOTP lock; false for an unknown user. */
  async removeAllFactors(userId: string): Promise<boolean> {
    return this.dataSource.transaction(async (tx) => {
      if (!(await lockUser(tx, userId))) return false;
      await tx.getRepository(TotpDeviceEntity).delete({ userId });
      await tx.getRepository(RecoveryCodeEntity).delete({ userId });
      await tx.query('UPDATE users SET totp_locked = false, tfa_failures = 0, tfa_locked_until = NULL WHERE id = $1', [userId]);
      return true;
    });
  }
}

/** Serializes second-factor changes of one user (row lock until the transaction ends); false when there is no such user. */
async function lockUser(tx: EntityManager, userId: string): Promise<boolean> {
  const rows: unknown[] = await tx.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [userId]);
  return rows.length > 0;
}

async function replaceCodes(tx: EntityManager, userId: string, codes: readonly StoredRecoveryCode[], now: Date): Promise<void> {
  const repository = tx.getRepository(RecoveryCodeEntity);
  await repository.delete({ userId });
  if (codes.length > 0) await repository.insert(codes.map((c) => ({ id: c.id, userId, codeHash: c.codeHash, usedAt: null, createdAt: now })));
}

function isUniqueViolation(error: unknown): boolean {
  const cause = (error as { driverError?: { code?: unknown }; code?: unknown } | null) ?? {};
  return cause.code === '23505' || cause.driverError?.code === '23505';
}
