import { Inject, Injectable } from '@nestjs/common';
import { AuditService } from '../../audit/audit.service';
import type { RequestOrigin } from '../../audit/request-origin';
import { CallerCache } from '../../authz/caller-cache';
import type { Caller } from '../../authz/caller';
import { ClockRepository } from '../../common/clock.repository';
import { DomainError } from '../../common/domain-error';
import { ErrorCode } from '../../common/error-code';
import { RandomRepository } from '../../common/random.repository';
import { MANAGER_CONFIG, type ManagerConfig } from '../../config/manager-config';
import { LoginRepository } from '../login.repository';
import { TfaRepository } from './tfa.repository';
import { stageAfterEnrolment, TfaService } from './tfa.service';
import { relyingParty, WEBAUTHN_CHALLENGE_BYTES, WEBAUTHN_CHALLENGE_SECONDS } from './webauthn-rp';
import { WebauthnVerifierRepository } from './webauthn-verifier.repository';

/** WebAuthn credentials a user may have. */
export const MAX_WEBAUTHN_CREDENTIALS = 20;

/**
 * A user's own WebAuthn credentials (security keys, platform authenticators): enrolment in two
 * steps (options with a fresh password check, then the browser's answer to the challenge stored on
 * the session) and removal. The first second factor brings the recovery codes and makes a `setup`
 * session `active`, as a first confirmed TOTP device does.
 */
@Injectable()
export class WebauthnService {
  constructor(
    private readonly tfa: TfaService,
    private readonly repository: TfaRepository,
    private readonly logins: LoginRepository,
    private readonly verifier: WebauthnVerifierRepository,
    private readonly callers: CallerCache,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
  ) {}

  /** Registration options for a new credential named `name`; the challenge is the session's for 2 minutes. */
  async registrationOptions(
    caller: Caller,
    input: { name: string; password?: string; enrolmentCode?: string },
    host: string | undefined,
    origin: RequestOrigin,
  ) {
    const user = await this.tfa.sessionUser(caller);
    if (!caller.sessionId)
      throw new DomainError(ErrorCode.Unauthenticated, 'the session has ended: log in again');
    const rp = relyingParty(this.config.publicUrl, host);
    await this.tfa.freshCheck(caller, user, input.password, origin);
    await this.tfa.approveRequiredEnrolment(caller, user, input.enrolmentCode);
    const existing = await this.repository.webauthnCredentials(user.id);
    if (existing.some((c) => c.name === input.name)) throw nameTaken(input.name);
    if (existing.length >= MAX_WEBAUTHN_CREDENTIALS) {
      throw new DomainError(
        ErrorCode.Conflict,
        `you have ${MAX_WEBAUTHN_CREDENTIALS} WebAuthn credentials already: remove one before adding another`,
      );
    }
    const options = await this.verifier.registrationOptions({
      rp,
      userName: user.id,
      userDisplayName: user.displayName ?? user.id,
      challenge: this.random.bytes(WEBAUTHN_CHALLENGE_BYTES),
      exclude: existing,
    });
    const expiresAt = new Date(this.clock.now().getTime() + WEBAUTHN_CHALLENGE_SECONDS * 1000);
    await this.logins.setWebauthnChallenge(
      caller.sessionId,
      options.challenge,
      expiresAt,
      input.name,
    );
    this.audit.note({ name: input.name, rpId: rp.id });
    return options;
  }

  /** Verifies the browser's answer to the session's registration challenge (spent either way) and stores the credential. */
  async register(caller: Caller, response: unknown, host: string | undefined) {
    const user = await this.tfa.sessionUser(caller);
    if (!caller.sessionId)
      throw new DomainError(ErrorCode.Unauthenticated, 'the session has ended: log in again');
    const rp = relyingParty(this.config.publicUrl, host);
    const pending = await this.logins.takeWebauthnChallenge(caller.sessionId);
    const now = this.clock.now();
    if (!pending?.pendingName || pending.expiresAt <= now) {
      throw new DomainError(
        ErrorCode.Conflict,
        'no WebAuthn enrolment is waiting, or it expired: ask for options again (POST /api/v1/access/tfa/webauthn/options)',
      );
    }
    const verified = await this.verifier.verifyRegistration({
      response,
      challenge: pending.challenge,
      rp,
    });
    if (!verified.ok)
      throw new DomainError(
        ErrorCode.ValidationFailed,
        `response: the authenticator's answer was refused: ${verified.reason}`,
      );
    const codes = this.tfa.newRecoveryCodes();
    const id = this.random.uuid();
    const result = await this.repository.addWebauthnCredential({
      credential: {
        id,
        userId: user.id,
        name: pending.pendingName,
        credentialId: verified.credential.credentialId,
        publicKey: verified.credential.publicKey,
        counter: verified.credential.counter,
        transports: [...verified.credential.transports],
        createdAt: now,
        lastUsedAt: null,
      },
      recoveryCodes: codes.stored,
      sessionId: caller.sessionId,
      now,
    });
    if (!result.added)
      throw new DomainError(
        ErrorCode.Conflict,
        `this authenticator is registered already, or you have a device named "${pending.pendingName}" already`,
      );
    if (result.sessionUpgraded) this.callers.invalidate();
    this.audit.note({
      credential: id,
      name: pending.pendingName,
      firstFactor: result.first,
      sessionActivated: result.sessionUpgraded,
    });
    return {
      id,
      name: pending.pendingName,
      recoveryCodes: result.first ? codes.shown : null,
      stage: stageAfterEnrolment(caller, result.sessionUpgraded),
    };
  }

  /** Removes one of the caller's credentials (with the last second factor, the recovery codes go too). */
  async remove(
    caller: Caller,
    id: string,
    password: string | undefined,
    origin: RequestOrigin,
  ): Promise<void> {
    const user = await this.tfa.sessionUser(caller);
    await this.tfa.freshCheck(caller, user, password, origin);
    if (!(await this.repository.deleteWebauthnCredential(user.id, id)))
      throw DomainError.notFound('WebAuthn credential');
    this.audit.note({ credential: id });
  }
}

function nameTaken(name: string): DomainError {
  return new DomainError(
    ErrorCode.Conflict,
    `you have a WebAuthn credential named "${name}" already`,
  );
}
