import type { Request } from 'express';
import passport from 'passport';
import type { AuthenticatedCaller } from '../auth.service';

/** How the caller of an API request authenticated: the `method` label of auth_attempts_total. */
export type CallerMethod = 'token' | 'session';

/**
 * A way a caller authenticates an API request, as a passport strategy the guard runs
 * (CallerAuthenticator): a new way is one more class of this shape. The strategy only says who
 * calls; what the caller may do is the guard's decision alone.
 */
export interface CallerStrategy extends passport.Strategy {
  readonly method: CallerMethod;
  /** Whether the request presents this strategy's credentials (the first strategy that does decides). */
  presentedBy(request: Request): boolean;
  /** The caller the request's credentials stand for; throws the 401 (or 403) to answer. */
  validate(request: Request): Promise<AuthenticatedCaller>;
}

/**
 * Where @nestjs/passport's PassportStrategy registers a strategy by name: a registry of its own,
 * never passport's global one, because the guard runs its strategies by instance and several
 * managers (each with its own services) may live in one process, as in tests.
 */
export function privateRegistry(): passport.Authenticator {
  return new passport.Authenticator();
}
