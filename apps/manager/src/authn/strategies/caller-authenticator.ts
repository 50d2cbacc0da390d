import { Injectable } from '@nestjs/common';
import type { Request, Response } from 'express';
import passport from 'passport';
import { DomainError } from '../../common/domain-error';
import { ErrorCode } from '../../common/error-code';
import type { AuthenticatedCaller } from '../auth.service';
import { ApiTokenStrategy } from './api-token.strategy';
import type { CallerStrategy } from './caller-strategy';
import { SessionCookieStrategy } from './session-cookie.strategy';

/**
 * Runs the passport strategy that judges an API request, for the guard. The strategies are asked
 * in order and the first whose credentials the request presents decides alone (no falling back to
 * another one after a refusal). Passport here is this manager's own Authenticator: nothing is
 * registered globally and no passport session is used (the login session is ours).
 */
@Injectable()
export class CallerAuthenticator {
  private readonly passport = new passport.Authenticator();
  private readonly strategies: readonly CallerStrategy[];

  constructor(token: ApiTokenStrategy, session: SessionCookieStrategy) {
    // A new way to authenticate is one more strategy in this list.
    this.strategies = [token, session];
  }

  /** The strategy that judges the request. */
  strategyFor(request: Request): CallerStrategy {
    return this.strategies.find((strategy) => strategy.presentedBy(request))!;
  }

  /** The caller, or the strategy's refusal (a DomainError) as it threw it. */
  authenticate(
    strategy: CallerStrategy,
    request: Request,
    response: Response,
  ): Promise<AuthenticatedCaller> {
    return new Promise((resolve, reject) => {
      // passport binds its actions (success, fail, error) onto the strategy object it is given: a
      // fresh object per request, or concurrent requests would answer each other's callbacks.
      const middleware = this.passport.authenticate(
        Object.create(strategy) as CallerStrategy,
        { session: false },
        (error: unknown, caller: AuthenticatedCaller | false | undefined) => {
          if (error) reject(error instanceof Error ? error : new Error(String(error)));
          else if (!caller)
            reject(new DomainError(ErrorCode.Unauthenticated, 'authentication failed'));
          else resolve(caller);
        },
      ) as (req: Request, res: Response, next: (error?: unknown) => void) => void;
      middleware(request, response, reject);
    });
  }
}
