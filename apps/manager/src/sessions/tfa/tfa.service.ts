import { Inject, Injectable } from '@nestjs/common';
import { AuditService } from '../../audit/audit.service';
import type { RequestOrigin } from '../../audit/request-origin';
import { CallerCache } from '../../authz/caller-cache';
import { UnitOfWork } from '../../database/unit-of-work.repository';
import { LoginRepository } from '../login.repository';
import { UsersService } from '../../users/users.service';
import type { AuthenticatedCaller, Caller } from '../../authz/caller';
import { RateLimiterService } from '../../authz/rate-limiter.service';
import { sha256Hex } from '../session-secrets';
import { ClockRepository } from '../../common/clock.repository';
import { DomainError } from '../../common/domain-error';
import { ErrorCode } from '../../common/error-code';
import { RandomRepository } from '../../common/random.repository';
import { MANAGER_CONFIG, type ManagerConfig } from '../../config/manager-config';
import { SecretBox } from '../../pki/secret-box';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../../pki/state-dir.repository';
import { PasswordHasherRepository } from '../../users/password-hasher.repository';
import { RealmsService } from '../../realms/realms.service';
import { generateRecoveryCodes, hashRecoveryCode, normalizeRecoveryCode } from './recovery-codes';
import { generateTotpSecret, matchTotp, TOTP_SECRET_BYTES, totpQrCodePng, totpUri } from './totp';
import { TfaRepository, type StoredRecoveryCode } from './tfa.repository';
import type { UserEntity } from '../../users/user.entity';

/** The issuer authenticator apps show next to the account. */
export const TOTP_ISSUER = 'DebVisor';
/** Devices (confirmed or not) a user may have; abandoned enrolments count until removed. */
export const MAX_TOTP_DEVICES = 20;
/** How long an administrator's enrolment code stays usable. */
export const ENROLMENT_CODE_SECONDS = 24 * 3600;
/** Users without a password (OpenID Connect) prove themselves again by a login at most this long ago. */
export const REAUTH_SECONDS = 5 * 60;

const WRONG_PASSWORD = 'wrong password: this change needs your current password';

/**
 * A user's own second factors (TOTP devices, WebAuthn credentials (see WebauthnService) and recovery codes) and their administration. Every
 * change to a user's factors needs a fresh proof of the first factor, so that a session left open
 * (or stolen) cannot replace or remove the second factor. Confirming the first device turns a
 * session in stage `setup` into an `active` one.
 */
@Injectable()
export class TfaService {
  private readonly box: SecretBox;

  constructor(
    private readonly repository: TfaRepository,
    private readonly users: UsersService,
    private readonly passwords: PasswordHasherRepository,
    private readonly realms: RealmsService,
    private readonly callers: CallerCache,
    private readonly limits: RateLimiterService,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    @Inject(MANAGER_IDENTITY) identity: ManagerIdentity,
    private readonly logins: LoginRepository,
    private readonly db: UnitOfWork,
  ) {
    this.box = new SecretBox(identity.secretKey);
  }

  async overview(caller: Caller) {
    const user = await this.sessionUser(caller);
    const [devices, webauthn, recoveryCodesLeft] = await Promise.all([
      this.repository.devices(user.id),
      this.repository.webauthnCredentials(user.id),
      this.repository.unusedRecoveryCodes(user.id),
    ]);
    const now = this.clock.now();
    return {
      devices: devices.map((d) => ({
        id: d.id,
        name: d.name,
        confirmed: d.confirmed,
        createdAt: d.createdAt.toISOString(),
      })),
      webauthn: webauthn.map((c) => ({
        id: c.id,
        name: c.name,
        createdAt: c.createdAt.toISOString(),
        lastUsedAt: c.lastUsedAt?.toISOString() ?? null,
      })),
      recoveryCodesLeft,
      totpLocked: user.totpLocked,
      lockedUntil:
        user.tfaLockedUntil && user.tfaLockedUntil > now ? user.tfaLockedUntil.toISOString() : null,
    };
  }

  /** A new, unconfirmed TOTP device; its secret is answered only now. */
  async enrol(
    caller: Caller,
    input: { name: string; password?: string; enrolmentCode?: string },
    origin: RequestOrigin,
  ) {
    const user = await this.sessionUser(caller);
    await this.freshCheck(caller, user, input.password, origin);
    await this.approveRequiredEnrolment(caller, user, input.enrolmentCode);
    const devices = await this.repository.devices(user.id);
    if (devices.some((d) => d.name === input.name)) throw nameTaken(input.name);
    if (devices.length >= MAX_TOTP_DEVICES) {
      throw new DomainError(
        ErrorCode.Conflict,
        `you have ${MAX_TOTP_DEVICES} devices already: remove one (unconfirmed ones too) before adding another`,
      );
    }
    const id = this.random.uuid();
    const secret = generateTotpSecret(this.random.bytes(TOTP_SECRET_BYTES));
    const created = await this.repository.createDevice({
      id,
      userId: user.id,
      name: input.name,
      sealedSecret: this.box.seal(secret, `totp:${id}`),
      confirmed: false,
      lastStep: null,
      createdAt: this.clock.now(),
    });
    if (!created) throw nameTaken(input.name);
    this.audit.note({ device: id, name: input.name });
    const uri = totpUri({ secret, issuer: TOTP_ISSUER, account: user.id });
    return { id, uri, qrCode: await totpQrCodePng(uri), secret };
  }

  /**
   * Confirms a device with a code it shows. The first confirmed device brings 10 recovery codes
   * (answered only now) and makes a `setup` session `active`.
   */
  async confirm(caller: Caller, deviceId: string, code: string) {
    const user = await this.sessionUser(caller);
    const device = await this.repository.device(user.id, deviceId);
    if (!device) throw DomainError.notFound('TOTP device');
    if (device.confirmed)
      throw new DomainError(ErrorCode.Conflict, 'this TOTP device is confirmed already');
    const now = this.clock.now();
    const step = matchTotp(
      this.box.open(device.sealedSecret, `totp:${device.id}`),
      code,
      now,
      device.lastStep,
    );
    if (step === null) {
      throw new DomainError(
        ErrorCode.ValidationFailed,
        'code: wrong code; check that the device shows the time right and enter the code it shows now',
      );
    }
    const codes = this.newRecoveryCodes();
    const result = await this.repository.confirmDevice({
      userId: user.id,
      deviceId: device.id,
      step,
      recoveryCodes: codes.stored,
      sessionId: caller.sessionId,
      now,
    });
    if (!result.confirmed) {
      throw new DomainError(
        ErrorCode.Conflict,
        'the device was confirmed or removed meanwhile, or this code was used already: wait for the next code',
      );
    }
    if (result.sessionUpgraded) this.callers.invalidate();
    this.audit.note({
      device: device.id,
      firstFactor: result.first,
      sessionActivated: result.sessionUpgraded,
    });
    return {
      id: device.id,
      confirmed: true as const,
      recoveryCodes: result.first ? codes.shown : null,
      stage: stageAfterEnrolment(caller, result.sessionUpgraded),
    };
  }

  /** Removes one of the caller's devices (with the last confirmed one, the recovery codes go too). */
  async removeDevice(
    caller: Caller,
    deviceId: string,
    password: string | undefined,
    origin: RequestOrigin,
  ): Promise<void> {
    const user = await this.sessionUser(caller);
    await this.freshCheck(caller, user, password, origin);
    if (!(await this.repository.deleteDevice(user.id, deviceId)))
      throw DomainError.notFound('TOTP device');
    this.audit.note({ device: deviceId });
  }

  /** New recovery codes instead of the old ones (used or not); answered only now. */
  async regenerateRecoveryCodes(
    caller: Caller,
    password: string | undefined,
    origin: RequestOrigin,
  ) {
    const user = await this.sessionUser(caller);
    await this.freshCheck(caller, user, password, origin);
    const codes = this.newRecoveryCodes();
    if (!(await this.repository.replaceRecoveryCodes(user.id, codes.stored, this.clock.now()))) {
      throw new DomainError(
        ErrorCode.Conflict,
        'recovery codes back up a second factor: enrol one first (POST /api/v1/access/tfa/totp or POST /api/v1/access/tfa/webauthn/options)',
      );
    }
    return { recoveryCodes: codes.shown };
  }

  /**
   * An administrator issues the one-time code with which a user who must use a second factor and
   * has none enrols it (DEBVISOR_TFA_ENROLMENT=admin-approval); answered once, stored as its hash.
   */
  async issueEnrolmentCode(userId: string): Promise<{ code: string; expiresAt: string }> {
    const code = this.random.bytes(24).toString('base64url');
    const now = this.clock.now();
    const expiresAt = new Date(now.getTime() + ENROLMENT_CODE_SECONDS * 1000);
    if (!(await this.repository.setEnrolmentCode(userId, sha256Hex(code), expiresAt, now)))
      throw DomainError.notFound(`user ${userId}`);
    this.audit.note({ user: userId, expiresAt: expiresAt.toISOString() });
    return { code, expiresAt: expiresAt.toISOString() };
  }

  /**
   * A session in stage `setup` (a second factor is required and none is enrolled) enrols its first
   * one only with the one-time code an administrator issued, unless DEBVISOR_TFA_ENROLMENT=password:
   * otherwise whoever learnt the password alone could attach their own authenticator to the
   * account. The code is spent by this attempt.
   */
  async approveRequiredEnrolment(
    caller: Caller,
    user: UserEntity,
    enrolmentCode: string | undefined,
  ): Promise<void> {
    if ((caller as AuthenticatedCaller).sessionStage !== 'setup') return;
    if (this.config.access.tfaEnrolment === 'password') return;
    if (enrolmentCode === undefined)
      throw new DomainError(
        ErrorCode.Forbidden,
        'your account must use a second factor and has none: enrolling it needs the one-time enrolment code an administrator issues for you (enrolmentCode)',
      );
    if (
      !(await this.repository.takeEnrolmentCode(
        user.id,
        sha256Hex(enrolmentCode.trim()),
        this.clock.now(),
      ))
    )
      throw new DomainError(
        ErrorCode.Forbidden,
        'wrong, used or expired enrolment code: ask an administrator for a new one',
      );
  }

  /** An administrator clears every password and second-factor lock of a user. */
  async unlock(userId: string): Promise<void> {
    const unlocked = await this.db.run(async () => {
      const account = await this.users.unlockLogins(userId);
      if (account === null) return false;
      // The account's login throttles from every address go too (login-throttle.entity.ts).
      await this.logins.clearThrottlesOf(account);
      return true;
    });
    if (!unlocked) throw DomainError.notFound(`user ${userId}`);
    this.callers.invalidate();
    this.audit.note({ user: userId });
  }

  /** An administrator removes every second factor of a user (a lost phone); the next login enrols again if required. */
  async removeAll(userId: string): Promise<void> {
    const removed = await this.db.run(async () => {
      if (!(await this.repository.removeAllFactors(userId))) return false;
      await this.users.clearTfaLocks(userId);
      return true;
    });
    if (!removed) throw DomainError.notFound(`user ${userId}`);
    this.callers.invalidate();
    this.audit.note({ user: userId });
  }

  /** 10 new recovery codes: as shown (once) and as stored (hashes). */
  newRecoveryCodes(): { shown: string[]; stored: StoredRecoveryCode[] } {
    const shown = generateRecoveryCodes((n) => this.random.bytes(n));
    const stored = shown.map((code) => ({
      id: this.random.uuid(),
      codeHash: hashRecoveryCode(normalizeRecoveryCode(code)!),
    }));
    return { shown, stored };
  }

  /** The user behind a session (self-service routes are session-only). */
  async sessionUser(caller: Caller): Promise<UserEntity> {
    const user =
      caller.kind === 'session' && caller.principalType === 'user'
        ? await this.repository.findUser(caller.principal)
        : null;
    if (!user?.enabled)
      throw new DomainError(ErrorCode.Unauthenticated, 'the session has ended: log in again');
    return user;
  }

  /**
   * A fresh proof of the first factor: the password (local users: argon2; directory users: their
   * directory), or for users without a password (OpenID Connect) a login within the last minutes.
   * Counted like login attempts (per source address, and wrong passwords towards the account lock).
   */
  async freshCheck(
    caller: Caller,
    user: UserEntity,
    password: string | undefined,
    origin: RequestOrigin,
  ): Promise<void> {
    const realm = await this.repository.findRealm(user.realmId);
    if (!realm)
      throw new DomainError(ErrorCode.Unauthenticated, 'the session has ended: log in again');
    const now = this.clock.now();
    if (realm.type === 'openid') {
      const session = caller.sessionId ? await this.repository.findSession(caller.sessionId) : null;
      if (!session || now.getTime() - session.createdAt.getTime() > REAUTH_SECONDS * 1000) {
        throw new DomainError(
          ErrorCode.Forbidden,
          `your account has no password to confirm this change with: log in again through your identity provider, then retry within ${REAUTH_SECONDS / 60} minutes`,
        );
      }
      return;
    }
    if (password === undefined)
      throw new DomainError(
        ErrorCode.ValidationFailed,
        'password: this change needs your current password',
      );
    await this.limits.loginAttempt(origin.source ?? 'unknown');
    if (user.lockedUntil && user.lockedUntil > now) {
      throw new DomainError(
        ErrorCode.Forbidden,
        'your account refuses passwords for a while after repeated wrong ones: retry later',
      );
    }
    let correct: boolean;
    if (realm.type === 'local') {
      correct =
        user.passwordHash !== null && (await this.passwords.verify(user.passwordHash, password));
    } else {
      let verified;
      try {
        verified = await this.realms.verifyDirectoryPassword(realm, user.username, password);
      } catch (error) {
        if (error instanceof DomainError) throw error;
        throw new DomainError(
          ErrorCode.RealmUnavailable,
          `cannot check your password with the directory of realm ${realm.id}: retry later`,
          { cause: error },
        );
      }
      correct = typeof verified === 'object' && verified.userId === user.id;
    }
    if (!correct) {
      const lockUntil = new Date(now.getTime() + this.config.access.lockSeconds * 1000);
      await this.users.recordPasswordFailure(
        user.id,
        this.config.access.loginFailuresBeforeLock,
        lockUntil,
        now,
      );
      throw new DomainError(ErrorCode.Forbidden, WRONG_PASSWORD);
    }
    await this.users.clearPasswordFailures(user.id);
  }
}

/** The caller's session stage after a second factor was added: `active` unless it is a `setup` session that was not upgraded. */
export function stageAfterEnrolment(caller: Caller, sessionUpgraded: boolean): 'setup' | 'active' {
  return sessionUpgraded || (caller as AuthenticatedCaller).sessionStage !== 'setup'
    ? 'active'
    : 'setup';
}

function nameTaken(name: string): DomainError {
  return new DomainError(ErrorCode.Conflict, `you have a device named "${name}" already`);
}
