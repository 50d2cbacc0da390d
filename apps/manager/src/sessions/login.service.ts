import { Inject, Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { AuditService } from '../audit/audit.service';
import type { RequestOrigin } from '../audit/request-origin';
import { CallerCache } from '../authz/caller-cache';
import { UsersService } from '../users/users.service';
import { RateLimiterService } from '../authz/rate-limiter.service';
import { CsrfTokens, sha256Hex } from './session-secrets';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { RandomRepository } from '../common/random.repository';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { MetricsService } from '../health/metrics.service';
import { SecretBox } from '../pki/secret-box';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../pki/state-dir.repository';
import { LoginRepository } from './login.repository';
import { PasswordHasherRepository } from '../users/password-hasher.repository';
import { formatUserId } from '../common/principal';
import { RealmsService } from '../realms/realms.service';
import type { RealmEntity } from '../realms/realm.entity';
import type { SessionStage } from './session.entity';
import { SessionsService } from './sessions.service';
import { hashRecoveryCode, normalizeRecoveryCode } from './tfa/recovery-codes';
import { matchTotp } from './tfa/totp';
import type { UserEntity } from '../users/user.entity';
import {
  relyingParty,
  WEBAUTHN_CHALLENGE_BYTES,
  WEBAUTHN_CHALLENGE_SECONDS,
} from './tfa/webauthn-rp';
import { WebauthnVerifierRepository } from './tfa/webauthn-verifier.repository';

/** Wrong TOTP codes in a row before TOTP is locked (until a recovery code or an admin unlocks it). */
export const TOTP_FAILURES_BEFORE_LOCK = 5;
/** Wrong second-factor answers of any kind in a row before the second factor refuses everything for a while. */
export const TFA_FAILURES_BEFORE_LOCK = 10;
export const TFA_LOCK_SECONDS = 15 * 60;
/** How long the half-authenticated state between password and second factor lasts. */
export const TFA_STAGE_SECONDS = 5 * 60;

/** The same answer for unknown users, wrong passwords, disabled and locked accounts. */
const LOGIN_FAILED = 'invalid username or password';
const TFA_FAILED = 'invalid or already used code';

/** What the second step of a login accepts. */
export type TfaMethod = 'totp' | 'webauthn' | 'recovery';

/** The answer to the second step: exactly one of these. */
export interface TfaAnswer {
  readonly code?: string;
  readonly recoveryCode?: string;
  /** The browser's PublicKeyCredential.toJSON() of navigator.credentials.get() (shape checked by the DTO). */
  readonly webauthn?: { readonly id: string };
}

/** A new session, as the controller hands it to the browser. */
export interface LoginOutcome {
  readonly stage: SessionStage;
  readonly user: string;
  /** The cookie secret (never stored, never logged). */
  readonly sessionSecret: string;
  readonly csrfToken: string;
  readonly expiresAt: Date;
  /** For stage `tfa`: what the second step accepts. */
  readonly methods: readonly TfaMethod[];
}

export interface PasswordLogin {
  readonly username: string;
  readonly password: string;
  readonly realm?: string;
}

/**
 * The login state machine: password (local or directory) → second factor when required → session.
 * The second step is reached only through the server's half-authenticated session (stage `tfa`),
 * never through a client-chosen parameter; completing it replaces that session with a new one.
 */
@Injectable()
export class LoginService {
  private readonly box: SecretBox;

  constructor(
    private readonly repository: LoginRepository,
    private readonly passwords: PasswordHasherRepository,
    private readonly realms: RealmsService,
    private readonly csrf: CsrfTokens,
    private readonly limits: RateLimiterService,
    private readonly audit: AuditService,
    private readonly metrics: MetricsService,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    private readonly webauthn: WebauthnVerifierRepository,
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    @Inject(MANAGER_IDENTITY) identity: ManagerIdentity,
    private readonly logger: PinoLogger,
    private readonly sessions: SessionsService,
    private readonly callers: CallerCache,
    private readonly users: UsersService,
  ) {
    this.box = new SecretBox(identity.secretKey);
  }

  /**
   * A password login. Each attempt is counted against the account and the source address before
   * the password is checked (UPDATE … RETURNING): after DEBVISOR_LOGIN_FAILURES_BEFORE_LOCK
   * failures that source waits, twice as long after each further one — a throttle per account and
   * source rather than a lock that anyone could trigger for everyone. The account key is the name
   * as the login gave it, normalised, so case variants of a directory user name count together.
   */
  async passwordLogin(input: PasswordLogin, origin: RequestOrigin): Promise<LoginOutcome> {
    const source = origin.source ?? 'unknown';
    await this.limits.loginAttempt(source);
    const { username, realmId } = splitLogin(input.username, input.realm);
    const claimed = formatUserId(username, realmId);
    const account = throttleAccount(username, realmId);
    const fail = async (reason: string): Promise<never> => {
      this.metrics.rpc.authAttempt('password', 'failure');
      await this.audit.authentication(
        { outcome: 'failure', method: 'password', realm: realmId, principal: claimed, reason },
        origin,
      );
      throw new DomainError(ErrorCode.Unauthenticated, LOGIN_FAILED);
    };
    const now = this.clock.now();
    const { loginFailuresBeforeLock, lockSeconds } = this.config.access;
    if (
      !(await this.repository.reservePasswordAttempt(
        account,
        source,
        loginFailuresBeforeLock,
        lockSeconds,
        now,
      ))
    ) {
      await this.passwords.burn(input.password);
      return fail('too many failed logins from this address: waiting');
    }
    const realm = await this.repository.findRealm(realmId);
    if (!realm || realm.type === 'openid') {
      await this.passwords.burn(input.password);
      return fail(realm ? 'the realm logs in through its identity provider' : 'unknown realm');
    }
    let user: UserEntity | null;
    if (realm.type === 'local') {
      user = await this.repository.findUser(claimed);
      // locked_until is set only by wrong current passwords in the account's own sessions (re-checks).
      const locked = user?.lockedUntil && user.lockedUntil > now;
      if (!user?.passwordHash || locked) {
        await this.passwords.burn(input.password);
        return fail(
          !user
            ? 'unknown user'
            : locked
              ? 'account locked after repeated failures'
              : 'the user has no password',
        );
      }
      if (!(await this.passwords.verify(user.passwordHash, input.password)))
        return fail('wrong password');
    } else {
      const verified = await this.verifyDirectoryPassword(realm, username, input.password, origin);
      if (verified === 'unknown') return fail('unknown user');
      if (verified === 'wrong') return fail('wrong password');
      user = await this.repository.findUser(verified.userId);
      if (user?.lockedUntil && user.lockedUntil > now)
        return fail('account locked after repeated failures');
    }
    if (!user?.enabled) return fail('account disabled');
    await this.repository.clearPasswordAttempts(account, source);
    return this.afterFirstFactor(user, realm.requireTfa, 'password', origin);
  }

  /**
   * The directory's answer to a password. When the directory cannot be used, the anonymous caller
   * learns only that (503): the reason — which names the directory's URL and service account — goes
   * to the log with the request's trace id, for the administrator.
   */
  private async verifyDirectoryPassword(
    realm: RealmEntity,
    username: string,
    password: string,
    origin: RequestOrigin,
  ) {
    try {
      return await this.realms.verifyDirectoryPassword(realm, username, password);
    } catch (error) {
      if (!(error instanceof DomainError) || error.code !== ErrorCode.RealmUnavailable) throw error;
      this.logger.warn(
        { traceId: origin.traceId, realm: realm.id, reason: error.message },
        'a login could not reach its directory',
      );
      await this.audit.authentication(
        {
          outcome: 'failure',
          method: 'password',
          realm: realm.id,
          principal: formatUserId(username, realm.id),
          reason: 'directory unavailable',
        },
        origin,
      );
      throw new DomainError(
        ErrorCode.RealmUnavailable,
        `the directory of realm ${realm.id} cannot be used right now; try again later or ask an administrator (trace id ${origin.traceId ?? 'unknown'})`,
      );
    }
  }

  /**
   * After the first factor (a password, or an identity provider for OIDC realms): a session, or the
   * half-authenticated state when a second factor is required.
   */
  async afterFirstFactor(
    user: UserEntity,
    realmRequiresTfa: boolean,
    method: string,
    origin: RequestOrigin,
  ): Promise<LoginOutcome> {
    const devices = await this.repository.confirmedTotpDevices(user.id);
    const credentials = await this.repository.webauthnCredentials(user.id);
    const recovery = await this.repository.unusedRecoveryCodes(user.id);
    const required =
      user.requireTfa || realmRequiresTfa || (await this.repository.groupRequiresTfa(user.id));
    this.metrics.rpc.authAttempt(method, 'success');
    await this.audit.authentication(
      {
        outcome: 'success',
        method,
        realm: user.realmId,
        principal: user.id,
        reason:
          devices.length || credentials.length || recovery ? 'second factor follows' : undefined,
      },
      origin,
    );
    if (devices.length > 0 || credentials.length > 0 || recovery > 0) {
      const methods: TfaMethod[] = [];
      if (devices.length > 0) methods.push('totp');
      if (credentials.length > 0) methods.push('webauthn');
      if (recovery > 0) methods.push('recovery');
      return this.createSession(user.id, 'tfa', TFA_STAGE_SECONDS, origin, methods);
    }
    return this.createSession(
      user.id,
      required ? 'setup' : 'active',
      this.config.access.sessionMaxSeconds,
      origin,
      [],
    );
  }

  /**
   * WebAuthn authentication options for the login waiting for its second factor (cookie and CSRF
   * token of the first step); the challenge is stored on that half-authenticated session, for 2
   * minutes and one answer.
   */
  async webauthnOptions(
    sessionSecret: string | undefined,
    csrfToken: string | undefined,
    host: string | undefined,
    origin: RequestOrigin,
  ) {
    await this.limits.loginAttempt(origin.source ?? 'unknown');
    const { sessionId, user, now } = await this.pendingLogin(sessionSecret, csrfToken);
    const rp = relyingParty(this.config.publicUrl, host);
    const credentials = await this.repository.webauthnCredentials(user.id);
    if (credentials.length === 0)
      throw new DomainError(
        ErrorCode.Conflict,
        'you have no WebAuthn credential: use another second factor',
      );
    const options = await this.webauthn.authenticationOptions({
      rp,
      challenge: this.random.bytes(WEBAUTHN_CHALLENGE_BYTES),
      allow: credentials,
    });
    await this.repository.setWebauthnChallenge(
      sessionId,
      options.challenge,
      new Date(now.getTime() + WEBAUTHN_CHALLENGE_SECONDS * 1000),
      null,
    );
    return options;
  }

  /** The second step: a TOTP code, a WebAuthn assertion or a recovery code, with the half-authenticated session. */
  async secondFactor(
    sessionSecret: string | undefined,
    csrfToken: string | undefined,
    answer: TfaAnswer,
    origin: RequestOrigin,
    host?: string,
  ): Promise<LoginOutcome> {
    await this.limits.loginAttempt(origin.source ?? 'unknown');
    const { sessionId, user, now } = await this.pendingLogin(sessionSecret, csrfToken);
    const fail = async (reason: string): Promise<never> => {
      await this.users.recordTfaFailure(
        user.id,
        TOTP_FAILURES_BEFORE_LOCK,
        TFA_FAILURES_BEFORE_LOCK,
        new Date(now.getTime() + TFA_LOCK_SECONDS * 1000),
      );
      this.metrics.rpc.authAttempt('tfa', 'failure');
      await this.audit.authentication(
        { outcome: 'failure', method: 'tfa', realm: user.realmId, principal: user.id, reason },
        origin,
      );
      throw new DomainError(ErrorCode.Unauthenticated, TFA_FAILED);
    };
    if (user.tfaLockedUntil && user.tfaLockedUntil > now) {
      this.metrics.rpc.authAttempt('tfa', 'failure');
      await this.audit.authentication(
        {
          outcome: 'failure',
          method: 'tfa',
          realm: user.realmId,
          principal: user.id,
          reason: 'second factor locked',
        },
        origin,
      );
      throw new DomainError(
        ErrorCode.Unauthenticated,
        `too many failed attempts: the second factor is locked until ${user.tfaLockedUntil.toISOString()}`,
      );
    }
    if (
      answer.webauthn === undefined &&
      answer.recoveryCode === undefined &&
      answer.code === undefined
    )
      throw new DomainError(
        ErrorCode.ValidationFailed,
        'send one of code (TOTP), webauthn or recoveryCode',
      );
    const totp = answer.webauthn === undefined && answer.recoveryCode === undefined;
    // Counted before it is checked, so that parallel wrong answers cannot all be evaluated.
    if (
      !(await this.users.reserveTfaAttempt(
        user.id,
        totp,
        TOTP_FAILURES_BEFORE_LOCK,
        TFA_FAILURES_BEFORE_LOCK,
        now,
      ))
    ) {
      this.metrics.rpc.authAttempt('tfa', 'failure');
      await this.audit.authentication(
        {
          outcome: 'failure',
          method: 'tfa',
          realm: user.realmId,
          principal: user.id,
          reason: totp ? 'TOTP locked after repeated failures' : 'second factor locked',
        },
        origin,
      );
      throw new DomainError(ErrorCode.Unauthenticated, TFA_FAILED);
    }
    let usedRecovery = false;
    let method = 'totp';
    if (answer.webauthn !== undefined) {
      method = 'webauthn';
      const refused = await this.acceptWebauthn(sessionId, user.id, answer.webauthn, host, now);
      if (refused) return fail(refused);
    } else if (answer.recoveryCode !== undefined) {
      const normalized = normalizeRecoveryCode(answer.recoveryCode);
      if (
        !normalized ||
        !(await this.repository.useRecoveryCode(user.id, hashRecoveryCode(normalized), now))
      )
        return fail('wrong or used recovery code');
      usedRecovery = true;
      method = 'recovery_code';
    } else if (!(await this.acceptTotp(user.id, answer.code!, now))) {
      return fail('wrong or replayed TOTP code');
    }
    await this.users.clearTfaFailures(user.id, usedRecovery);
    await this.repository.deleteSession(sessionId);
    this.metrics.rpc.authAttempt('tfa', 'success');
    await this.audit.authentication(
      { outcome: 'success', method, realm: user.realmId, principal: user.id },
      origin,
    );
    return this.createSession(user.id, 'active', this.config.access.sessionMaxSeconds, origin, []);
  }

  /**
   * Checks a WebAuthn assertion against the challenge of the pending session (spent by this attempt,
   * whatever its outcome) and the user's credential, and records its counter atomically. Undefined
   * when accepted, else the reason for the audit log.
   */
  private async acceptWebauthn(
    sessionId: string,
    userId: string,
    response: { readonly id: string },
    host: string | undefined,
    now: Date,
  ): Promise<string | undefined> {
    const stored = await this.repository.takeWebauthnChallenge(sessionId);
    if (!stored || stored.pendingName !== null)
      return 'no WebAuthn challenge was asked for, or it was answered already';
    if (stored.expiresAt <= now) return 'the WebAuthn challenge expired';
    const credential = (await this.repository.webauthnCredentials(userId)).find(
      (c) => c.credentialId === response.id,
    );
    if (!credential) return 'unknown WebAuthn credential';
    const verified = await this.webauthn.verifyAuthentication({
      response,
      challenge: stored.challenge,
      rp: relyingParty(this.config.publicUrl, host),
      credential,
    });
    if (!verified.ok) return `WebAuthn assertion refused: ${verified.reason}`;
    if (!(await this.repository.useWebauthnCredential(credential.id, verified.newCounter, now)))
      return 'WebAuthn signature counter did not increase (cloned authenticator or replay)';
    return undefined;
  }

  /** The login waiting for its second factor: the session of the cookie in stage `tfa`, with its CSRF token, of an enabled user. */
  private async pendingLogin(
    sessionSecret: string | undefined,
    csrfToken: string | undefined,
  ): Promise<{ sessionId: string; user: UserEntity; now: Date }> {
    const noPending = new DomainError(
      ErrorCode.Unauthenticated,
      'no login is waiting for a second factor: log in with your password first',
    );
    if (!sessionSecret || !/^[A-Za-z0-9_-]{43}$/.test(sessionSecret)) throw noPending;
    const sessionId = sha256Hex(sessionSecret);
    const pending = await this.repository.findSession(sessionId);
    const now = this.clock.now();
    if (!pending || pending.stage !== 'tfa' || pending.expiresAt <= now) throw noPending;
    if (!this.csrf.matches(sessionId, csrfToken))
      throw new DomainError(
        ErrorCode.Forbidden,
        'the second step needs the CSRF token of the login answer in the X-CSRF-Token header',
      );
    const user = await this.repository.findUser(pending.userId);
    // A pending login voided with the user's other sessions (log out everywhere, disabling) cannot complete.
    if (!user?.enabled || (user.sessionsValidAfter && pending.createdAt < user.sessionsValidAfter))
      throw noPending;
    return { sessionId, user, now };
  }

  /** True when `code` is valid for one of the user's devices and its step was not used before (atomically). */
  async acceptTotp(userId: string, code: string, now: Date): Promise<boolean> {
    for (const device of await this.repository.confirmedTotpDevices(userId)) {
      const secret = this.box.open(device.sealedSecret, `totp:${device.id}`);
      const step = matchTotp(secret, code, now, device.lastStep);
      if (step !== null && (await this.repository.advanceTotpStep(device.id, step))) return true;
    }
    return false;
  }

  async logout(sessionId: string, origin: RequestOrigin, caller: string): Promise<void> {
    await this.repository.deleteSession(sessionId);
    this.callers.invalidate();
    await this.audit.authentication(
      { outcome: 'success', method: 'logout', principal: caller },
      origin,
    );
  }

  /** "Log out everywhere": ends every session of the user on every manager instance. */
  async logoutEverywhere(userId: string, origin: RequestOrigin): Promise<void> {
    await this.sessions.end(userId, { all: this.clock.now() });
    await this.audit.authentication(
      { outcome: 'success', method: 'logout_everywhere', principal: userId },
      origin,
    );
  }

  private async createSession(
    userId: string,
    stage: SessionStage,
    lifetimeSeconds: number,
    origin: RequestOrigin,
    methods: TfaMethod[],
  ): Promise<LoginOutcome> {
    const secret = this.random.bytes(32).toString('base64url');
    const id = sha256Hex(secret);
    const now = this.clock.now();
    const expiresAt = new Date(now.getTime() + lifetimeSeconds * 1000);
    await this.repository.createSession({
      id,
      userId,
      stage,
      createdAt: now,
      lastSeenAt: now,
      expiresAt,
      sourceIp: origin.source,
    });
    return {
      stage,
      user: userId,
      sessionSecret: secret,
      csrfToken: this.csrf.tokenFor(id),
      expiresAt,
      methods,
    };
  }
}

/**
 * The account a login attempt counts against: realm and user name, case-folded, in Unicode NFKC
 * form and with runs of spaces made one — the variants a directory treats as the same user.
 */
export function throttleAccount(username: string, realmId: string): string {
  const name = username.normalize('NFKC').trim().replace(/\s+/g, ' ').toLowerCase();
  return `${realmId}:${name}`;
}

/** `alice`, `alice@corp` or `alice` with realm `corp` → username and realm (default `local`). */
export function splitLogin(
  login: string,
  realm: string | undefined,
): { username: string; realmId: string } {
  if (realm) return { username: login, realmId: realm };
  const at = login.lastIndexOf('@');
  return at > 0
    ? { username: login.slice(0, at), realmId: login.slice(at + 1) }
    : { username: login, realmId: 'local' };
}
