import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { Strategy } from 'passport-custom';
import { CSRF_HEADER, SESSION_COOKIE, cookieValue } from '../../sessions/session-secrets';
import { AuthService, type AuthenticatedCaller } from '../auth.service';
import { privateRegistry, type CallerStrategy } from './caller-strategy';

export const SESSION_COOKIE_STRATEGY = 'session-cookie';

/** Methods that change nothing, and so need no CSRF token. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * The login session's cookie, with the session's CSRF token in X-CSRF-Token for anything but a
 * safe method. It judges every request that presents no other credentials: one with no cookie
 * either is refused with the 401 that says how to authenticate.
 */
@Injectable()
export class SessionCookieStrategy
  extends PassportStrategy(Strategy, SESSION_COOKIE_STRATEGY)
  implements CallerStrategy
{
  readonly method = 'session';

  constructor(private readonly auth: AuthService) {
    super();
  }

  presentedBy(): boolean {
    return true;
  }

  validate(request: Request): Promise<AuthenticatedCaller> {
    const csrf = request.headers[CSRF_HEADER];
    return this.auth.authenticate({
      sessionSecret: cookieValue(request.headers.cookie, SESSION_COOKIE),
      csrfToken: typeof csrf === 'string' ? csrf : undefined,
      safeMethod: SAFE_METHODS.has(request.method),
    });
  }

  getPassportInstance() {
    return privateRegistry();
  }
}
