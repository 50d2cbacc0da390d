import { ROLES, type Role } from '@debvisor/permissions';
import { Inject, Injectable } from '@nestjs/common';
import type { AclEntryEntity } from '../acl/acl-entry.entity';
import { AclService } from '../acl/acl.service';
import { PasswordHasherRepository } from '../users/password-hasher.repository';
import { newUser, type UserEntity } from '../users/user.entity';
import { UsersService } from '../users/users.service';
import { SessionsService } from '../sessions/sessions.service';
import { ClockRepository } from '../common/clock.repository';
import { DomainError, PermissionDenied } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { OperatorConsoleRepository } from '../common/operator-console.repository';
import { RandomRepository } from '../common/random.repository';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../pki/state-dir.repository';
import { formatApiToken, hashTokenSecret, parseApiToken, sameHash } from '../tokens/api-token';
import type { ApiTokenEntity } from '../tokens/api-token.entity';
import { TokensService } from '../tokens/tokens.service';
import { AuthRepository } from './auth.repository';
import { parseRemoteGroupAclPath } from '../authz/acl-paths';
import { CallerCache } from '../authz/caller-cache';
import { tokenDisplay, type AuthenticatedCaller } from '../authz/caller';
import type { AccessView, Grant } from '../authz/grants';
import { CsrfTokens, sha256Hex } from '../sessions/session-secrets';

/** The first administrator, created on the first start. */
export const BOOTSTRAP_USER = 'admin@local';
/** Last-used times are written at most this often per token or session. */
const TOUCH_INTERVAL_MS = 60_000;
/** Compared against when a token id is unknown, so that unknown and wrong tokens take the same time. */
const DUMMY_HASH = hashTokenSecret('debvisor-no-such-token');

/** What a request presented: a bearer token, or a session cookie (and, for writes, the CSRF header). */
export interface PresentedCredentials {
  readonly authorization?: string;
  readonly sessionSecret?: string;
  readonly csrfToken?: string;
  /** GET, HEAD and OPTIONS need no CSRF token. */
  readonly safeMethod: boolean;
}

export type { AuthenticatedCaller };

const UNAUTHENTICATED =
  'authentication required: log in (POST /api/v1/auth/login) or send Authorization: Bearer <API token>';

@Injectable()
export class AuthService {
  private readonly csrf: CsrfTokens;

  constructor(
    private readonly repository: AuthRepository,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    private readonly console: OperatorConsoleRepository,
    private readonly passwords: PasswordHasherRepository,
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
    @Inject(MANAGER_IDENTITY) identity: ManagerIdentity,
    private readonly callers: CallerCache,
    private readonly users: UsersService,
    private readonly tokens: TokensService,
    private readonly sessions: SessionsService,
    private readonly acl: AclService,
    private readonly db: UnitOfWork,
  ) {
    this.csrf = new CsrfTokens(identity.secretKey);
  }

  /** Forget every cached caller (CallerCache.invalidate, which features call). */
  invalidate(): void {
    this.callers.invalidate();
  }

  csrfTokenFor(sessionId: string): string {
    return this.csrf.tokenFor(sessionId);
  }

  csrfMatches(sessionId: string, presented: string | undefined): boolean {
    return this.csrf.matches(sessionId, presented);
  }

  /** The caller behind a request; 401 for anything missing, malformed, unknown, expired, revoked or disabled. */
  async authenticate(presented: PresentedCredentials): Promise<AuthenticatedCaller> {
    if (presented.authorization !== undefined)
      return this.authenticateToken(presented.authorization);
    if (presented.sessionSecret !== undefined) {
      const caller = await this.authenticateSession(presented.sessionSecret);
      if (!presented.safeMethod && !this.csrf.matches(caller.sessionId!, presented.csrfToken)) {
        throw new PermissionDenied(
          undefined,
          {},
          "this write needs the session's CSRF token in the X-CSRF-Token header (GET /api/v1/auth/session answers it)",
        );
      }
      return caller;
    }
    throw new DomainError(ErrorCode.Unauthenticated, UNAUTHENTICATED);
  }

  private async authenticateToken(authorization: string): Promise<AuthenticatedCaller> {
    const match = /^Bearer +(\S+)\s*$/i.exec(authorization);
    const parsed = match ? parseApiToken(match[1]) : undefined;
    if (!parsed)
      throw new DomainError(
        ErrorCode.Unauthenticated,
        'the Authorization header does not hold a Bearer API token (dvdm_…)',
      );
    const presentedHash = hashTokenSecret(parsed.secret);
    const cacheKey = `t:${parsed.id}:${presentedHash}`;
    const cached = this.callers.get<AuthenticatedCaller>(cacheKey);
    if (cached) return cached;
    const version = this.callers.version;
    const token = await this.repository.findToken(parsed.id);
    const matches = sameHash(presentedHash, token?.secretHash ?? DUMMY_HASH);
    const now = this.clock.now();
    const invalid = new DomainError(
      ErrorCode.Unauthenticated,
      'invalid, expired or revoked API token',
    );
    if (!token || !matches || token.revokedAt || (token.expiresAt && token.expiresAt <= now))
      throw invalid;
    if (!token.lastUsedAt || now.getTime() - token.lastUsedAt.getTime() >= TOUCH_INTERVAL_MS)
      await this.tokens.recordUse(token.id, now);
    let groups: { id: string; tenant: boolean }[];
    if (token.ownerType === 'group') {
      const group = await this.repository.findGroup(token.principal);
      if (!group) throw invalid;
      groups = [{ id: group.id, tenant: group.tenant }];
    } else {
      const user = await this.repository.findUser(token.principal);
      if (!user?.enabled) throw invalid;
      groups = await this.repository.groupsOf(user.id);
    }
    const view = await this.loadView(
      token.ownerType,
      token.principal,
      groups,
      token.limited ? token.id : null,
    );
    const caller: AuthenticatedCaller = {
      ...view,
      kind: 'token',
      principal: token.principal,
      principalType: token.ownerType,
      groups: groups.map((g) => g.id),
      tokenId: token.id,
      tokenName: token.name,
      sessionId: null,
      sessionStage: null,
      display: tokenDisplay(token.ownerType, token.principal, token.name),
    };
    return this.callers.remember(cacheKey, caller, version);
  }

  private async authenticateSession(secret: string): Promise<AuthenticatedCaller> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(secret))
      throw new DomainError(ErrorCode.Unauthenticated, 'invalid session: log in again');
    const id = sha256Hex(secret);
    const cacheKey = `s:${id}`;
    const cached = this.callers.get<AuthenticatedCaller>(cacheKey);
    if (cached) return cached;
    const version = this.callers.version;
    const session = await this.repository.findSession(id);
    const now = this.clock.now();
    const expired = new DomainError(
      ErrorCode.Unauthenticated,
      'the session has ended: log in again',
    );
    // A session waiting for its second factor authenticates too, but the guard lets it reach only
    // the routes that say so (the session itself, logout).
    if (!session) throw expired;
    const idleEnd = session.lastSeenAt.getTime() + this.config.access.sessionIdleSeconds * 1000;
    if (session.expiresAt <= now || idleEnd <= now.getTime()) throw expired;
    const user = await this.repository.findUser(session.userId);
    if (!user?.enabled || (user.sessionsValidAfter && session.createdAt < user.sessionsValidAfter))
      throw expired;
    // Written at most once a minute, and often enough (a quarter of the idle time) that activity keeps the session alive.
    const touchEvery = Math.min(
      TOUCH_INTERVAL_MS,
      (this.config.access.sessionIdleSeconds * 1000) / 4,
    );
    if (now.getTime() - session.lastSeenAt.getTime() >= touchEvery)
      await this.sessions.recordUse(id, now);
    const groups = await this.repository.groupsOf(user.id);
    const view = await this.loadView('user', user.id, groups, null);
    const caller: AuthenticatedCaller = {
      ...view,
      kind: 'session',
      principal: user.id,
      principalType: 'user',
      groups: groups.map((g) => g.id),
      tokenId: null,
      tokenName: null,
      sessionId: id,
      sessionStage: session.stage,
      display: user.id,
    };
    return this.callers.remember(cacheKey, caller, version);
  }

  /** The grants of a principal and its groups (and a limited token's own entries), with what they refer to. */
  private async loadView(
    type: 'user' | 'group',
    principal: string,
    groups: readonly { id: string; tenant: boolean }[],
    limitedTokenId: string | null,
  ): Promise<AccessView> {
    const tenantGroups = new Set(groups.filter((g) => g.tenant).map((g) => g.id));
    const principals = [
      ...(type === 'user' ? [{ type: 'user' as const, id: principal }] : []),
      ...groups.map((g) => ({ type: 'group' as const, id: g.id })),
      ...(limitedTokenId ? [{ type: 'token' as const, id: limitedTokenId }] : []),
    ];
    const entries = (await this.repository.aclEntriesOf(principals)).filter((e) =>
      (ROLES as readonly string[]).includes(e.role),
    );
    const toGrant = (e: AclEntryEntity): Grant => ({
      path: e.path,
      role: e.role,
      propagate: e.propagate,
      tenantGroup:
        e.principalType === 'group' && tenantGroups.has(e.principal) ? e.principal : null,
    });
    const grants = entries.filter((e) => e.principalType !== 'token').map(toGrant);
    const limit = limitedTokenId
      ? entries.filter((e) => e.principalType === 'token').map(toGrant)
      : null;
    const remoteGroupIds = [
      ...new Set(
        [...grants, ...(limit ?? [])]
          .map((g) => parseRemoteGroupAclPath(g.path))
          .filter((g) => g !== undefined),
      ),
    ];
    const usedTenants = [
      ...new Set(grants.map((g) => g.tenantGroup).filter((g): g is string => g !== null)),
    ];
    const [tenantVms, remoteGroups] = await Promise.all([
      this.repository.vmsOwnedBy(usedTenants),
      this.repository.remoteGroupEntries(remoteGroupIds),
    ]);
    return { grants, limit, tenantVms, remoteGroups };
  }

  /**
   * On the first start only: creates admin@local (Admin on `/`) with the configured or a generated
   * password, and a bootstrap API token of it that expires (DEBVISOR_BOOTSTRAP_TOKEN_HOURS, 24 by
   * default); prints the generated password, the token and its expiry once.
   * Later starts (and a second instance racing this one) do nothing.
   */
  async bootstrap(): Promise<void> {
    if (await this.repository.isBootstrapped()) return;
    const id = this.random.bytes(8).toString('hex');
    const secret = this.random.bytes(32).toString('base64url');
    const password =
      this.config.access.adminPassword ?? this.random.bytes(18).toString('base64url');
    const now = this.clock.now();
    const expiresAt = new Date(now.getTime() + this.config.access.bootstrapTokenSeconds * 1000);
    const role: Role = 'Admin';
    const created = await this.saveBootstrap(
      newUser({
        id: BOOTSTRAP_USER,
        realmId: 'local',
        username: 'admin',
        displayName: 'Administrator',
        passwordHash: await this.passwords.hash(password),
        passwordChangedAt: now,
        createdAt: now,
      }),
      {
        id,
        ownerType: 'user',
        principal: BOOTSTRAP_USER,
        name: 'bootstrap',
        comment: 'created on the first start',
        limited: false,
        secretHash: hashTokenSecret(secret),
        createdAt: now,
        lastUsedAt: null,
        expiresAt,
        revokedAt: null,
      },
      {
        id: this.random.uuid(),
        path: '/',
        principalType: 'user',
        principal: BOOTSTRAP_USER,
        role,
        propagate: true,
        createdAt: now,
      },
    );
    if (!created) return;
    const rule = '='.repeat(100);
    this.console.print(
      [
        rule,
        'DebVisor Datacenter Manager: first start.',
        this.config.access.adminPassword
          ? `administrator: ${BOOTSTRAP_USER} with the password from DEBVISOR_ADMIN_PASSWORD`
          : `administrator: ${BOOTSTRAP_USER} password: ${password}`,
        `bootstrap admin token: ${formatApiToken(id, secret)}`,
        `It expires at ${expiresAt.toISOString()} (DEBVISOR_BOOTSTRAP_TOKEN_HOURS): create tokens of your own before then.`,
        `Both act as ${BOOTSTRAP_USER} with the Admin role on /. They are shown only this once and stored only as hashes:`,
        'keep them in a password manager, change the password after the first login, and enrol a second factor.',
        'Use the token as "Authorization: Bearer <token>".',
        rule,
      ].join('\n'),
    );
  }

  /**
   * The first administrator, in one transaction: the marker, the user (with its password hash),
   * its bootstrap token and its Admin entry on `/`, each through its owner. False (and nothing
   * stored) when another instance bootstrapped first.
   */
  private saveBootstrap(
    user: UserEntity,
    token: ApiTokenEntity,
    acl: AclEntryEntity,
  ): Promise<boolean> {
    return this.db.run(async () => {
      if (!(await this.repository.markBootstrapped(user.id, token.id, token.createdAt)))
        return false;
      await this.users.createUnlessPresent(user);
      await this.tokens.createBootstrapToken(token);
      await this.acl.grantUnlessPresent(acl);
      return true;
    });
  }
}
