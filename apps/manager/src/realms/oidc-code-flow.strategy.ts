import type { Request as ExpressRequest } from 'express';
import passport from 'passport';

// openid-client is ESM-only and the manager compiles to CommonJS: a real dynamic import (see
// oidc-client.repository.ts). Types only at compile time.
type OpenIdPassport = typeof import('openid-client/passport');
type Configuration = import('openid-client').Configuration;
type VerifyFunction = import('openid-client/passport').VerifyFunction;
type AuthenticateOptions = import('openid-client/passport').AuthenticateOptions;

let openIdPassport: Promise<OpenIdPassport> | undefined;
const loadOpenIdPassport = (): Promise<OpenIdPassport> =>
  (openIdPassport ??= import('openid-client/passport'));

/** Where the strategy keeps its checks between the redirect and the callback (see OidcCodeFlowChecks). */
const SESSION_KEY = 'oidc';

/** What the strategy must find again at the callback: openid-client's own record of the attempt. */
export interface OidcCodeFlowChecks {
  readonly code_verifier: string;
  readonly state?: string;
  readonly nonce?: string;
}

/** How one run of the strategy ended (passport's actions). */
export type OidcCodeFlowOutcome =
  | { readonly redirect: string; readonly checks: OidcCodeFlowChecks }
  | { readonly user: unknown }
  | { readonly failure: string }
  | { readonly error: unknown };

/**
 * openid-client's passport strategy for the authorization code flow of one realm login: PKCE S256
 * as the strategy does it, and — whatever the provider advertises — state and nonce too. The
 * strategy keeps its checks in `req.session`; the manager has no server-side session for a login
 * in progress, so the caller carries them (in its sealed attempt cookie) from begin() to complete().
 * Each run gets its own Authenticator: nothing is registered in passport's global registry.
 */
export class OidcCodeFlowStrategy {
  private constructor(private readonly strategy: import('openid-client/passport').Strategy) {}

  static async create(
    config: Configuration,
    options: { redirectUri: string; scope: string; state?: string; nonce?: string },
    verify: VerifyFunction,
  ): Promise<OidcCodeFlowStrategy> {
    const { Strategy } = await loadOpenIdPassport();
    class AlwaysStateAndNonce extends Strategy {
      override authorizationRequestParams<T extends AuthenticateOptions>(
        req: ExpressRequest,
        authenticateOptions: T,
      ) {
        const params = new URLSearchParams(
          super.authorizationRequestParams(req, authenticateOptions),
        );
        if (options.state) params.set('state', options.state);
        if (options.nonce) params.set('nonce', options.nonce);
        return params;
      }
    }
    return new OidcCodeFlowStrategy(
      new AlwaysStateAndNonce(
        { config, callbackURL: options.redirectUri, scope: options.scope, sessionKey: SESSION_KEY },
        verify,
      ),
    );
  }

  /** The redirect to the identity provider, and the checks the callback needs. */
  async begin(): Promise<OidcCodeFlowOutcome> {
    const session: Record<string, unknown> = {};
    const outcome = await this.run(request('/', session));
    if (!('redirect' in outcome)) return outcome;
    return { redirect: outcome.redirect, checks: session[SESSION_KEY] as OidcCodeFlowChecks };
  }

  /** The callback (`requestTarget`: its path and query as received) checked against `checks`. */
  complete(requestTarget: string, checks: OidcCodeFlowChecks): Promise<OidcCodeFlowOutcome> {
    return this.run(request(requestTarget, { [SESSION_KEY]: { ...checks } }));
  }

  private run(req: object): Promise<OidcCodeFlowOutcome> {
    return new Promise((resolve) => {
      let location = '';
      // passport's redirect action writes the answer; only its Location matters here.
      const res = {
        statusCode: 0,
        setHeader: (name: string, value: string) => {
          if (name.toLowerCase() === 'location') location = value;
        },
        end: () => resolve({ redirect: location, checks: { code_verifier: '' } }),
      };
      // passport binds its actions onto the strategy object it is given: one object per run.
      const middleware = new passport.Authenticator().authenticate(
        Object.create(this.strategy) as passport.Strategy,
        { session: false },
        (error: unknown, user: unknown, info: { message?: string } | undefined) => {
          if (error) resolve({ error });
          else if (user) resolve({ user });
          else resolve({ failure: info?.message ?? 'refused' });
        },
      ) as (req: object, res: object, next: (error?: unknown) => void) => void;
      middleware(req, res, (error) => resolve({ error }));
    });
  }
}

/**
 * The request the strategy looks at: a GET of `target` with `session`. Its host is never used —
 * the strategy builds the token request's redirect_uri from the configured callbackURL.
 */
function request(target: string, session: Record<string, unknown>): object {
  return {
    method: 'GET',
    url: target,
    originalUrl: target,
    protocol: 'https',
    headers: {},
    session,
    get: (name: string) => (name.toLowerCase() === 'host' ? 'manager.invalid' : undefined),
    app: { get: () => () => false },
  };
}
