import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { AuditService } from '../audit/audit.service';
import type { RequestOrigin } from '../audit/request-origin';
import { RateLimiterService } from '../authz/rate-limiter.service';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { MetricsService } from '../health/metrics.service';
import { SecretBox } from '../pki/secret-box';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../pki/state-dir.repository';
import type { LoginOutcome } from './login.service';
import { hostAuthority } from '../common/host-authority';
import { LoginService } from './login.service';
import { OidcLoginRepository } from './oidc-login.repository';
import { formatUserId, realmIdSchema } from '../common/principal';
import type { RealmEntity } from '../realms/realm.entity';
import { OidcClientRepository } from '../realms/oidc-client.repository';
import { oidcRealmSettingsSchema, type OidcRealmSettings } from '../realms/oidc-settings';
import { RealmsService } from '../realms/realms.service';
import type { SessionStage } from './session.entity';
import type { UserEntity } from '../users/user.entity';

/** The cookie holding a login attempt between the redirect to the identity provider and its callback. */
export const OIDC_COOKIE = 'debvisor_oidc';
/** The cookie is sent only to the OpenID login routes. */
export const OIDC_COOKIE_PATH = '/api/v1/auth/oidc';
/** Where the identity provider sends the browser back: register `<public URL>` + this with the provider. */
export const OIDC_CALLBACK_PATH = `${OIDC_COOKIE_PATH}/callback`;
/** How long a login attempt may take at the identity provider. */
export const OIDC_LOGIN_SECONDS = 10 * 60;
/** The SecretBox context of the login attempt cookie. */
const COOKIE_CONTEXT = 'oidc-login';

/** Where the browser goes after the callback, by the stage of the new session. */
const NEXT_PAGE: Readonly<Record<SessionStage, string>> = {
  active: '/',
  tfa: '/?login=tfa',
  setup: '/?login=setup',
};

/** A login attempt as the sealed cookie carries it (nothing of it is secret from the browser's owner, but it must not be forged). */
const pendingLoginSchema = z.strictObject({
  v: z.literal(1),
  realm: realmIdSchema,
  state: z.string().min(1).max(512),
  nonce: z.string().min(1).max(512),
  codeVerifier: z.string().min(1).max(512),
  redirectUri: z.string().min(1).max(4096),
  /** Milliseconds since the epoch. */
  expiresAt: z.number().int(),
});
type PendingLogin = z.infer<typeof pendingLoginSchema>;

/** What the audit entry of a failed callback can tell, as far as the callback got. */
interface AttemptFacts {
  realm: string | undefined;
  principal: string | null;
}

/** The start of a login: where to send the browser, and the sealed cookie to set until `expiresAt`. */
export interface OidcLoginStart {
  readonly authorizationUrl: string;
  readonly cookie: string;
  readonly expiresAt: Date;
}

/** A completed login: the new session, and the page to send the browser to. */
export interface OidcLoginDone {
  readonly outcome: LoginOutcome;
  readonly redirectTo: string;
}

/**
 * Logging in through an OpenID Connect realm: the authorization code flow with state, nonce and
 * PKCE. The attempt lives in a sealed, short-lived cookie (no server-side state); the callback opens
 * it, lets the identity provider's answer be validated, turns the identity into the user
 * `name@realm` with the groups its claims map to, and continues like a password login (second
 * factor when required, then a session).
 */
@Injectable()
export class OidcLoginService {
  private readonly box: SecretBox;

  constructor(
    private readonly repository: OidcLoginRepository,
    private readonly oidc: OidcClientRepository,
    private readonly realms: RealmsService,
    private readonly login: LoginService,
    private readonly limits: RateLimiterService,
    private readonly audit: AuditService,
    private readonly metrics: MetricsService,
    private readonly clock: ClockRepository,
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    @Inject(MANAGER_IDENTITY) identity: ManagerIdentity,
  ) {
    this.box = new SecretBox(identity.secretKey);
  }

  /**
   * The authorization URL of the realm's identity provider and the sealed attempt. The redirect URI
   * is the configured public URL's callback, else the one at the Host the browser used (validated:
   * a host name or address and an optional port, nothing else).
   */
  async beginLogin(realmId: string, host: string | undefined): Promise<OidcLoginStart> {
    const realm = await this.repository.findRealm(realmId);
    if (!realm || realm.type !== 'openid') throw DomainError.notFound(`OpenID realm ${realmId}`);
    const redirectUri = `${this.publicBase(host)}${OIDC_CALLBACK_PATH}`;
    const client = this.clientOf(realm);
    const start = await this.oidc.beginLogin(client.settings, client.secret, redirectUri);
    const expiresAt = new Date(this.clock.now().getTime() + OIDC_LOGIN_SECONDS * 1000);
    const pending: PendingLogin = {
      v: 1,
      realm: realm.id,
      state: start.state,
      nonce: start.nonce,
      codeVerifier: start.codeVerifier,
      redirectUri,
      expiresAt: expiresAt.getTime(),
    };
    return {
      authorizationUrl: start.authorizationUrl,
      cookie: this.box.seal(JSON.stringify(pending), COOKIE_CONTEXT),
      expiresAt,
    };
  }

  /**
   * The identity provider's redirect back: `requestTarget` is the callback's path and query as
   * received, `cookie` the sealed attempt. Every refusal is audited (method `oidc`) and counted.
   */
  async completeLogin(
    cookie: string | undefined,
    requestTarget: string,
    origin: RequestOrigin,
  ): Promise<OidcLoginDone> {
    await this.limits.loginAttempt(origin.source ?? 'unknown');
    const attempt: AttemptFacts = { realm: undefined, principal: null };
    let verified: { realm: RealmEntity; user: UserEntity };
    try {
      verified = await this.verify(cookie, requestTarget, attempt);
    } catch (error) {
      this.metrics.rpc.authAttempt('oidc', 'failure');
      const reason = error instanceof DomainError ? error.message : 'internal error';
      await this.audit.authentication(
        {
          outcome: 'failure',
          method: 'oidc',
          realm: attempt.realm,
          principal: attempt.principal,
          reason,
        },
        origin,
      );
      throw error;
    }
    const outcome = await this.login.afterFirstFactor(
      verified.user,
      verified.realm.requireTfa,
      'oidc',
      origin,
    );
    return { outcome, redirectTo: NEXT_PAGE[outcome.stage] };
  }

  /** The callback checked against the attempt, the identity validated, and the user it stands for (enabled). */
  private async verify(
    cookie: string | undefined,
    requestTarget: string,
    attempt: AttemptFacts,
  ): Promise<{ realm: RealmEntity; user: UserEntity }> {
    const pending = this.openPending(cookie, attempt);
    const realm = await this.repository.findRealm(pending.realm);
    if (!realm || realm.type !== 'openid')
      throw unauthenticated(`the realm ${pending.realm} no longer logs in through OpenID Connect`);
    const client = this.clientOf(realm);
    const callbackUrl = new URL(pending.redirectUri);
    const query = requestTarget.indexOf('?');
    callbackUrl.search = query < 0 ? '' : requestTarget.slice(query);
    const identity = await this.oidc.completeLogin(
      client.settings,
      client.secret,
      pending.redirectUri,
      callbackUrl,
      pending,
    );
    attempt.principal = formatUserId(identity.username, realm.id);
    const user = await this.realms.applyExternalIdentity(realm, {
      username: identity.username,
      externalId: identity.subject,
      displayName: identity.displayName,
      email: identity.email,
      groups: identity.groups,
    });
    attempt.principal = user.id;
    if (!user.enabled) throw unauthenticated('the account is disabled');
    return { realm, user };
  }

  /** The attempt in the cookie: present, sealed by this manager for this purpose, well-formed and not expired. */
  private openPending(cookie: string | undefined, attempt: AttemptFacts): PendingLogin {
    if (!cookie) {
      throw unauthenticated(
        'no OpenID login is in progress in this browser (the debvisor_oidc cookie is missing): start again at /api/v1/auth/oidc/<realm>/login',
      );
    }
    let pending: PendingLogin;
    try {
      pending = pendingLoginSchema.parse(JSON.parse(this.box.open(cookie, COOKIE_CONTEXT)));
    } catch {
      throw unauthenticated(
        'the OpenID login cookie is invalid (altered, or from another manager): start the login again',
      );
    }
    attempt.realm = pending.realm;
    if (pending.expiresAt <= this.clock.now().getTime()) {
      throw unauthenticated(
        `the OpenID login took longer than ${OIDC_LOGIN_SECONDS / 60} minutes and expired: start the login again`,
      );
    }
    return pending;
  }

  /** The realm's validated settings and its client secret (sealed with the realm's context). */
  private clientOf(realm: RealmEntity): { settings: OidcRealmSettings; secret: string } {
    const parsed = oidcRealmSettingsSchema.safeParse(realm.settings);
    if (!parsed.success)
      throw misconfigured(realm, 'its settings are not valid OpenID Connect settings');
    if (!realm.sealedSecret) throw misconfigured(realm, 'it has no client secret');
    let secret: string;
    try {
      secret = this.box.open(realm.sealedSecret, `realm:${realm.id}`);
    } catch {
      throw misconfigured(
        realm,
        "its client secret cannot be opened with this manager's key: set it again",
      );
    }
    return { settings: parsed.data, secret };
  }

  /** `https://<host[:port]>` the browser reached the manager at, or the configured public URL. */
  private publicBase(host: string | undefined): string {
    if (this.config.publicUrl) return this.config.publicUrl;
    const authority = host === undefined ? undefined : hostAuthority(host);
    if (authority === undefined) {
      throw new DomainError(
        ErrorCode.BadRequest,
        'the Host header must be a host name or IP address with an optional port; when the manager is reached through a proxy, set DEBVISOR_PUBLIC_URL',
      );
    }
    return `https://${authority}`;
  }
}

function unauthenticated(message: string): DomainError {
  return new DomainError(ErrorCode.Unauthenticated, `OpenID login failed: ${message}`);
}

function misconfigured(realm: RealmEntity, reason: string): DomainError {
  return new DomainError(
    ErrorCode.RealmUnavailable,
    `the OpenID realm ${realm.id} cannot be used: ${reason}`,
  );
}
