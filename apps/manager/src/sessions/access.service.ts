import { ALL_PRIVILEGES } from '@debvisor/permissions';
import { Injectable } from '@nestjs/common';
import { AccessPolicy } from '../authz/access-policy.service';
import { LoginRepository } from './login.repository';
import type { AuthenticatedCaller, Caller } from '../authz/caller';
import { CsrfTokens } from './session-secrets';
import type { TfaMethod } from './login.service';

/** Answers about the caller itself: who it is and what it may do (for the web UI's gating). */
@Injectable()
export class AccessService {
  constructor(
    private readonly csrf: CsrfTokens,
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
      csrfToken: caller.sessionId ? this.csrf.tokenFor(caller.sessionId) : null,
      groups: pending ? [] : [...caller.groups],
      methods,
      privileges: pending ? [] : ALL_PRIVILEGES.filter((p) => this.policy.holds(caller, p, '/')),
    };
  }
}
