import { ALL_PRIVILEGES } from '@debvisor/permissions';
import { Injectable } from '@nestjs/common';
import { AccessPolicy } from '../authz/access-policy.service';
import type { AuthenticatedCaller } from '../authn/auth.service';
import { AuthService } from '../authn/auth.service';
import { LoginRepository } from './login.repository';
import type { Caller } from '../authz/caller';
import type { TfaMethod } from './login.service';

/** Answers about the caller itself: who it is and what it may do (for the web UI's gating). */
@Injectable()
export class AccessService {
  constructor(
    private readonly auth: AuthService,
    private readonly policy: AccessPolicy,
    private readonly logins: LoginRepository,
  ) {}

  async describeCaller(caller: Caller) {
    const authenticated = caller as AuthenticatedCaller;
    const pending = authenticated.sessionStage === 'tfa';
    const methods: TfaMethod[] = [];
    if (pending && (await this.logins.confirmedTotpDevices(caller.principal)).length > 0)
      methods.push('totp');
    if (pending && (await this.logins.webauthnCredentials(caller.principal)).length > 0)
      methods.push('webauthn');
    if (pending && (await this.logins.unusedRecoveryCodes(caller.principal)) > 0)
      methods.push('recovery');
    return {
      user: caller.display,
      kind: caller.kind,
      stage: authenticated.sessionStage ?? null,
      csrfToken: caller.sessionId ? this.auth.csrfTokenFor(caller.sessionId) : null,
      groups: pending ? [] : [...caller.groups],
      methods,
      privileges: pending ? [] : ALL_PRIVILEGES.filter((p) => this.policy.holds(caller, p, '/')),
    };
  }
}
