import { Injectable } from '@nestjs/common';
import { createHash, timingSafeEqual } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { OidcCodeFlowStrategy } from './oidc-code-flow.strategy';
import type { OidcRealmSettings } from './oidc-settings';

// openid-client is ESM-only and the manager compiles to CommonJS: TypeScript (module node20) keeps
// this `import()` a real dynamic import, which Node can load from CommonJS. Types only at compile time.
type OpenIdClient = typeof import('openid-client');
type ServerMetadata = import('openid-client').ServerMetadata;
type Configuration = import('openid-client').Configuration;
type CustomFetch = import('openid-client').CustomFetch;

let openIdClient: Promise<OpenIdClient> | undefined;
const loadOpenIdClient = (): Promise<OpenIdClient> => (openIdClient ??= import('openid-client'));

/** Who the identity provider says logged in, read from the validated ID token (and userinfo). */
export interface OidcIdentity {
  /** The `sub` claim: stable per user at this issuer. */
  subject: string;
  username: string;
  /** Null when absent, or when the provider marks it unverified (`email_verified: false`). */
  email: string | null;
  displayName: string | null;
  groups: string[];
}

/** What beginLogin hands out; the caller keeps state, nonce and codeVerifier server-side for completeLogin. */
export interface OidcLoginStart {
  authorizationUrl: string;
  state: string;
  nonce: string;
  codeVerifier: string;
}

export interface OidcLoginChecks {
  state: string;
  nonce: string;
  codeVerifier: string;
}

const DISCOVERY_TTL_MS = 5 * 60_000;
const MAX_DISCOVERY_ENTRIES = 64;
const MAX_RESPONSE_BYTES = 1024 * 1024;
const MAX_USERNAME_LENGTH = 200;
const MAX_ATTRIBUTE_LENGTH = 255;
/** openid-client codes for answers that are not a protocol answer at all (an HTML error page, a 502 …). */
const UNEXPECTED_ANSWER_CODES = new Set([
  'OAUTH_RESPONSE_IS_NOT_CONFORM',
  'OAUTH_RESPONSE_IS_NOT_JSON',
  'OAUTH_TIMEOUT',
  'OAUTH_ABORT',
]);
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/** The HTTP exchange with the issuer failed (network, TLS, timeout): the realm is unavailable. */
class IssuerTransportError extends Error {
  constructor(
    readonly reason: string,
    cause: unknown,
  ) {
    super(reason, { cause });
    this.name = 'IssuerTransportError';
  }
}

type Phase = 'discovery' | 'token' | 'userinfo';

/**
 * The client side of an OpenID Connect realm (authorization code flow with PKCE S256, state and
 * nonce), over openid-client. All HTTP to the issuer goes through one fetch built on node:https:
 * TLS is always verified (against the realm's caPem alone when set, else the system roots), every
 * request has the realm's timeout and answers are bounded in size. Discovered issuer metadata is
 * cached per issuer, client and CA for a few minutes; client secrets are never cached or logged.
 */
@Injectable()
export class OidcClientRepository {
  private readonly discovered = new Map<
    string,
    { expiresAt: number; metadata: Promise<ServerMetadata> }
  >();

  /**
   * Discovery, then the authorization URL to send the browser to, with fresh state, nonce and PKCE
   * verifier — made by openid-client's passport strategy (OidcCodeFlowStrategy).
   */
  async beginLogin(
    settings: OidcRealmSettings,
    clientSecret: string,
    redirectUri: string,
  ): Promise<OidcLoginStart> {
    const client = await loadOpenIdClient();
    const config = await this.configuration(client, settings, clientSecret);
    const state = client.randomState();
    const nonce = client.randomNonce();
    const strategy = await OidcCodeFlowStrategy.create(
      config,
      { redirectUri, scope: settings.scopes.join(' '), state, nonce },
      () => undefined,
    );
    const outcome = await strategy.begin();
    if (!('redirect' in outcome) || !outcome.checks?.code_verifier) {
      throw unavailable(
        settings,
        'its discovery document has no usable authorization endpoint',
        'error' in outcome ? outcome.error : undefined,
      );
    }
    return {
      authorizationUrl: outcome.redirect,
      state,
      nonce,
      codeVerifier: outcome.checks.code_verifier,
    };
  }

  /**
   * Checks the callback against the login attempt (state), then lets openid-client's passport
   * strategy redeem the code (PKCE verifier, client secret) and validate the ID token (issuer,
   * audience, expiry, nonce); its verify step reads the identity from the claims, asking the
   * userinfo endpoint for the username or groups claim when the ID token lacks it.
   */
  async completeLogin(
    settings: OidcRealmSettings,
    clientSecret: string,
    redirectUri: string,
    callbackUrl: URL,
    expected: OidcLoginChecks,
  ): Promise<OidcIdentity> {
    const state = callbackUrl.searchParams.get('state');
    if (state === null || !constantTimeEqual(state, expected.state)) {
      throw unauthenticated(
        'the login response does not belong to this login attempt (state mismatch)',
      );
    }
    const refusal = callbackUrl.searchParams.get('error');
    if (refusal !== null)
      throw unauthenticated(`the identity provider refused the login (${oauthErrorCode(refusal)})`);

    const client = await loadOpenIdClient();
    const config = await this.configuration(client, settings, clientSecret);
    // The token request's redirect_uri is the configured one (the strategy's callbackURL), not
    // whatever the callback arrived on; only the callback's query is taken from it.
    const strategy = await OidcCodeFlowStrategy.create(
      config,
      { redirectUri, scope: settings.scopes.join(' ') },
      (tokens, verified) => {
        this.identityOf(client, config, settings, tokens).then(
          (identity) => verified(null, identity),
          (error: unknown) => verified(error),
        );
      },
    );
    const outcome = await strategy.complete(`/${callbackUrl.search}`, {
      code_verifier: expected.codeVerifier,
      state: expected.state,
      nonce: expected.nonce,
    });
    if ('user' in outcome) return outcome.user as OidcIdentity;
    if ('error' in outcome) throw translate(client, outcome.error, settings, 'token');
    // A callback without a code (the strategy would start a login again) or one it refused.
    throw unauthenticated('the login response or its ID token failed validation');
  }

  /** The identity in the validated tokens: the ID token's claims, completed from userinfo when they lack some. */
  private async identityOf(
    client: OpenIdClient,
    config: Configuration,
    settings: OidcRealmSettings,
    tokens: Awaited<ReturnType<OpenIdClient['authorizationCodeGrant']>>,
  ): Promise<OidcIdentity> {
    const idToken = tokens.claims();
    if (!idToken) throw unauthenticated('the identity provider issued no ID token');
    const accepted = new Set([settings.clientId, ...(settings.audiences ?? [])]);
    const audiences = Array.isArray(idToken.aud) ? idToken.aud : [idToken.aud];
    if (audiences.some((audience) => !accepted.has(audience))) {
      throw unauthenticated('the ID token is also meant for an audience this realm does not trust');
    }

    let claims: Record<string, unknown> = idToken;
    const lacksClaims =
      idToken[settings.usernameClaim] === undefined || idToken[settings.groupsClaim] === undefined;
    if (lacksClaims && tokens.access_token && config.serverMetadata().userinfo_endpoint) {
      try {
        const userinfo = await client.fetchUserInfo(config, tokens.access_token, idToken.sub);
        claims = { ...userinfo, ...idToken };
      } catch (error) {
        throw translate(client, error, settings, 'userinfo');
      }
    }
    return identityFrom(claims, idToken.sub, settings);
  }

  /** A Configuration for this realm and secret over the (cached) discovered metadata. */
  private async configuration(
    client: OpenIdClient,
    settings: OidcRealmSettings,
    clientSecret: string,
  ): Promise<Configuration> {
    const fetch = tlsFetch(settings.caPem, settings.timeoutMs);
    const metadata = await this.discover(client, settings, fetch);
    const methods = metadata.token_endpoint_auth_methods_supported;
    let auth: ReturnType<OpenIdClient['ClientSecretBasic']>;
    // Discovery 1.0: an absent list means client_secret_basic only.
    if (!methods || methods.includes('client_secret_basic'))
      auth = client.ClientSecretBasic(clientSecret);
    else if (methods.includes('client_secret_post')) auth = client.ClientSecretPost(clientSecret);
    else
      throw unavailable(
        settings,
        'it supports neither client_secret_basic nor client_secret_post',
        undefined,
      );
    const config = new client.Configuration(metadata, settings.clientId, undefined, auth);
    config[client.customFetch] = fetch;
    // openid-client's own per-request timeout (seconds) stays above ours, which tlsFetch enforces.
    config.timeout = Math.ceil(settings.timeoutMs / 1000) + 1;
    return config;
  }

  private discover(
    client: OpenIdClient,
    settings: OidcRealmSettings,
    fetch: CustomFetch,
  ): Promise<ServerMetadata> {
    const key = JSON.stringify([
      settings.issuerUrl,
      settings.clientId,
      settings.caPem ? sha256(settings.caPem) : null,
    ]);
    const now = Date.now();
    const cached = this.discovered.get(key);
    if (cached && cached.expiresAt > now) return cached.metadata;

    for (const [entry, value] of this.discovered)
      if (value.expiresAt <= now) this.discovered.delete(entry);
    if (this.discovered.size >= MAX_DISCOVERY_ENTRIES)
      this.discovered.delete(this.discovered.keys().next().value!);

    const metadata = client
      .discovery(new URL(settings.issuerUrl), settings.clientId, undefined, client.None(), {
        [client.customFetch]: fetch,
        timeout: Math.ceil(settings.timeoutMs / 1000) + 1,
      })
      .then((config) => config.serverMetadata())
      .catch((error: unknown) => {
        this.discovered.delete(key);
        throw translate(client, error, settings, 'discovery');
      });
    this.discovered.set(key, { expiresAt: now + DISCOVERY_TTL_MS, metadata });
    return metadata;
  }
}

function identityFrom(
  claims: Record<string, unknown>,
  subject: string,
  settings: OidcRealmSettings,
): OidcIdentity {
  const username = claims[settings.usernameClaim];
  if (typeof username !== 'string' || username.trim() === '') {
    throw unauthenticated(
      `the identity provider did not supply the username claim "${settings.usernameClaim}"`,
    );
  }
  if (username.length > MAX_USERNAME_LENGTH || /\p{Cc}/u.test(username)) {
    throw unauthenticated(
      `the username claim "${settings.usernameClaim}" is not a usable user name`,
    );
  }
  const email = claims.email_verified === false ? null : attribute(claims.email);
  return {
    subject,
    username,
    email,
    displayName: attribute(claims.name),
    groups: groupsFrom(claims[settings.groupsClaim]),
  };
}

function attribute(value: unknown): string | null {
  return typeof value === 'string' && value !== '' && value.length <= MAX_ATTRIBUTE_LENGTH
    ? value
    : null;
}

/** An array of strings, or one string as one group; anything else (or missing) is no groups. */
function groupsFrom(value: unknown): string[] {
  const values = typeof value === 'string' ? [value] : Array.isArray(value) ? value : [];
  return [
    ...new Set(
      values.filter((group): group is string => typeof group === 'string' && group !== ''),
    ),
  ];
}

function translate(
  client: OpenIdClient,
  error: unknown,
  settings: OidcRealmSettings,
  phase: Phase,
): unknown {
  if (error instanceof DomainError) return error;
  const transport = findTransportError(error);
  if (transport) return unavailable(settings, transport.reason, error);
  if (phase === 'discovery')
    return unavailable(settings, 'its discovery document is missing or invalid', error);
  if (error instanceof client.AuthorizationResponseError) {
    return unauthenticated(
      `the identity provider refused the login (${oauthErrorCode(error.error)})`,
      error,
    );
  }
  if (error instanceof client.ResponseBodyError) {
    if (phase === 'token' && error.error === 'invalid_grant') {
      return unauthenticated(
        'the authorization code was refused: it is invalid, expired or already used',
        error,
      );
    }
    if (error.error === 'invalid_client' || error.error === 'unauthorized_client') {
      return unavailable(settings, "it refused the manager's client credentials", error);
    }
    return unavailable(
      settings,
      `it answered the ${phase} request with an error (${oauthErrorCode(error.error)})`,
      error,
    );
  }
  if (error instanceof client.WWWAuthenticateChallengeError) {
    return unavailable(
      settings,
      phase === 'token'
        ? "it refused the manager's client credentials"
        : 'it refused the access token it issued',
      error,
    );
  }
  if (error instanceof client.ClientError) {
    if (error.code && UNEXPECTED_ANSWER_CODES.has(error.code)) {
      return unavailable(settings, `it answered the ${phase} request unexpectedly`, error);
    }
    return unauthenticated(
      phase === 'token'
        ? 'the login response or its ID token failed validation'
        : "the identity provider's userinfo answer failed validation",
      error,
    );
  }
  return error;
}

function findTransportError(error: unknown): IssuerTransportError | undefined {
  for (
    let current = error, depth = 0;
    current instanceof Error && depth < 8;
    current = current.cause, depth++
  ) {
    if (current instanceof IssuerTransportError) return current;
  }
  return undefined;
}

function unauthenticated(message: string, cause?: unknown): DomainError {
  return new DomainError(ErrorCode.Unauthenticated, `OpenID login failed: ${message}`, { cause });
}

function unavailable(settings: OidcRealmSettings, reason: string, cause: unknown): DomainError {
  return new DomainError(
    ErrorCode.RealmUnavailable,
    `the OpenID provider ${settings.issuerUrl} is unavailable: ${reason}`,
    { cause },
  );
}

/** An OAuth error code as it may be shown: the registry's shape, nothing else the provider sent. */
function oauthErrorCode(value: string): string {
  return /^[a-z0-9_]{1,64}$/.test(value) ? value : 'unknown error';
}

function constantTimeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/**
 * A fetch for openid-client over node:https: `ca` (when given) is the only trust anchor,
 * certificate verification stays on, the request is aborted after `timeoutMs`, redirects are not
 * followed and the answer is limited to 1 MiB. Any failure surfaces as IssuerTransportError.
 */
function tlsFetch(ca: string | undefined, timeoutMs: number): CustomFetch {
  return (url, options) =>
    new Promise<Response>((resolve, reject) => {
      const target = new URL(url);
      if (target.protocol !== 'https:') {
        reject(new IssuerTransportError('it named an endpoint that is not https', undefined));
        return;
      }
      let body: Buffer | undefined;
      try {
        body = requestBody(options.body);
      } catch (error) {
        reject(error);
        return;
      }
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
      const headers: Record<string, string> = { ...options.headers };
      if (body) headers['content-length'] = String(body.length);
      const fail = (error: unknown) =>
        reject(
          new IssuerTransportError(
            describeTransportError(error, timeout.aborted, timeoutMs),
            error,
          ),
        );

      const request = httpsRequest(
        target,
        { method: options.method, headers, ca, rejectUnauthorized: true, agent: false, signal },
        (response: IncomingMessage) => {
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) {
              response.destroy();
              reject(new IssuerTransportError('its answer exceeds 1 MiB', undefined));
              return;
            }
            chunks.push(chunk);
          });
          response.once('error', fail);
          response.once('end', () => {
            const status = response.statusCode ?? 500;
            const responseHeaders = new Headers();
            for (let i = 0; i + 1 < response.rawHeaders.length; i += 2) {
              responseHeaders.append(response.rawHeaders[i]!, response.rawHeaders[i + 1]!);
            }
            try {
              resolve(
                new Response(NULL_BODY_STATUSES.has(status) ? null : Buffer.concat(chunks), {
                  status,
                  statusText: response.statusMessage,
                  headers: responseHeaders,
                }),
              );
            } catch (error) {
              fail(error);
            }
          });
        },
      );
      request.once('error', fail);
      request.end(body);
    });
}

function requestBody(body: unknown): Buffer | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof URLSearchParams) return Buffer.from(body.toString());
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  throw new TypeError('unsupported request body type');
}

const TLS_CODES =
  /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH)/;

function describeTransportError(error: unknown, timedOut: boolean, timeoutMs: number): string {
  if (timedOut) return `it did not answer within ${timeoutMs} ms`;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (TLS_CODES.test(code)) return `its TLS certificate is not trusted (${code})`;
    switch (code) {
      case 'ECONNREFUSED':
        return 'connection refused';
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return 'its host name does not resolve';
      case 'ECONNRESET':
        return 'the connection was reset';
      case 'ETIMEDOUT':
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
        return `its host is unreachable (${code})`;
      case 'ABORT_ERR':
        return 'the request was aborted';
    }
    if (/^[A-Z0-9_]{1,64}$/.test(code)) return `network error (${code})`;
  }
  return 'network error';
}
