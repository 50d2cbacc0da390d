import { aclPathAncestors, resolveAclPath, roleGrants, ROLES, type Privilege, type Role } from '@debvisor/permissions';
import { Injectable } from '@nestjs/common';
import { ClockRepository } from '../common/clock.repository';
import { DomainError, PermissionDenied } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { OperatorConsoleRepository } from '../common/operator-console.repository';
import { RandomRepository } from '../common/random.repository';
import { formatApiToken, hashTokenSecret, parseApiToken, sameHash } from './api-token';
import type { Caller } from './caller';
import type { RouteRequirement } from './privilege.decorator';
import { TokensRepository } from './tokens.repository';

/** The principal of the bootstrap token: the installation's first administrator. */
export const BOOTSTRAP_PRINCIPAL = 'root@local';
/** Last-used times are written at most this often per token. */
const TOUCH_INTERVAL_MS = 60_000;
/** Compared against when a token id is unknown, so that unknown and wrong tokens take the same time. */
const DUMMY_HASH = hashTokenSecret('debvisor-no-such-token');

@Injectable()
export class AuthService {
  constructor(
    private readonly tokens: TokensRepository,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    private readonly console: OperatorConsoleRepository,
  ) {}

  /** The caller behind an `Authorization` header; 401 for a missing, malformed, unknown, expired or revoked token. */
  async authenticate(authorization: string | undefined): Promise<Caller> {
    if (!authorization) {
      throw new DomainError(ErrorCode.Unauthenticated, 'authentication required: send Authorization: Bearer <API token>');
    }
    const match = /^Bearer +(\S+)\s*$/i.exec(authorization);
    const parsed = match ? parseApiToken(match[1]) : undefined;
    if (!parsed) throw new DomainError(ErrorCode.Unauthenticated, 'the Authorization header does not hold a Bearer API token (dvdm_…)');
    const token = await this.tokens.findToken(parsed.id);
    const presented = hashTokenSecret(parsed.secret);
    const matches = sameHash(presented, token?.secretHash ?? DUMMY_HASH);
    const now = this.clock.now();
    if (!token || !matches || token.revokedAt || (token.expiresAt && token.expiresAt <= now)) {
      throw new DomainError(ErrorCode.Unauthenticated, 'invalid, expired or revoked API token');
    }
    if (!token.lastUsedAt || now.getTime() - token.lastUsedAt.getTime() >= TOUCH_INTERVAL_MS) {
      await this.tokens.touchToken(token.id, now);
    }
    const acl = (await this.tokens.aclEntriesOf(token.principal)).filter((entry) => (ROLES as readonly string[]).includes(entry.role));
    return {
      principal: token.principal,
      tokenId: token.id,
      tokenName: token.name,
      display: `${token.principal}!${token.name}`,
      acl: acl.map((entry) => ({ path: entry.path, role: entry.role })),
    };
  }

  /** Throws 403 unless the caller holds the route's privilege on its ACL path (filled from `params`). */
  authorize(caller: Caller, requirement: RouteRequirement, params: Record<string, string | undefined>): void {
    const path = resolveAclPath(requirement.path, params);
    const allowed = requirement.partial
      ? this.holdsAtOrBelow(caller, requirement.privilege, path)
      : this.holds(caller, requirement.privilege, path);
    if (!allowed) {
      throw new PermissionDenied(requirement, params, `permission denied: needs ${requirement.privilege} on ${path}`);
    }
  }

  /** True when one of the caller's roles on `path` or above grants `privilege`. */
  holds(caller: Caller, privilege: Privilege, path: string): boolean {
    const ancestors = new Set(aclPathAncestors(path));
    return caller.acl.some((entry) => ancestors.has(entry.path) && roleGrants(entry.role, privilege));
  }

  /** The subset of `remoteIds` on which the caller holds `privilege` (one pass, no query per item). */
  allowedRemotes(caller: Caller, privilege: Privilege, remoteIds: Iterable<string>): Set<string> {
    const allowed = new Set<string>();
    for (const id of remoteIds) if (this.holds(caller, privilege, `/remotes/${encodeURIComponent(id)}`)) allowed.add(id);
    return allowed;
  }

  /**
   * Where the caller holds `privilege` among remotes: everywhere (granted on `/` or `/remotes`), or
   * the set of remote ids granted on `/remotes/{id}` itself — for filtering collections in SQL.
   * (Grants on single VMs do not open the remote's collections.)
   */
  remoteScope(caller: Caller, privilege: Privilege): 'all' | Set<string> {
    if (this.holds(caller, privilege, '/remotes')) return 'all';
    const ids = new Set<string>();
    for (const entry of caller.acl) {
      const match = /^\/remotes\/([^/]+)$/.exec(entry.path);
      if (match && roleGrants(entry.role, privilege)) ids.add(decodeURIComponent(match[1]));
    }
    return ids;
  }

  private holdsAtOrBelow(caller: Caller, privilege: Privilege, path: string): boolean {
    if (this.holds(caller, privilege, path)) return true;
    const prefix = path === '/' ? '/' : `${path}/`;
    return caller.acl.some((entry) => entry.path.startsWith(prefix) && roleGrants(entry.role, privilege));
  }

  /**
   * On the first start only: creates the bootstrap admin token (Admin on `/`) and prints it once to
   * the operator's console. Later starts (and a second instance racing this one) do nothing.
   */
  async bootstrap(): Promise<void> {
    if (await this.tokens.isBootstrapped()) return;
    const id = this.random.bytes(8).toString('hex');
    const secret = this.random.bytes(32).toString('base64url');
    const now = this.clock.now();
    const role: Role = 'Admin';
    const created = await this.tokens.saveBootstrap(
      {
        id,
        principal: BOOTSTRAP_PRINCIPAL,
        name: 'bootstrap',
        secretHash: hashTokenSecret(secret),
        createdAt: now,
        lastUsedAt: null,
        expiresAt: null,
        revokedAt: null,
      },
      { id: this.random.uuid(), path: '/', principal: BOOTSTRAP_PRINCIPAL, role, createdAt: now },
    );
    if (!created) return;
    const token = formatApiToken(id, secret);
    const rule = '='.repeat(100);
    this.console.print(
      [
        rule,
        'DebVisor Datacenter Manager: first start.',
        `bootstrap admin token: ${token}`,
        `It acts as ${BOOTSTRAP_PRINCIPAL} with the Admin role on /. It is shown only this once and stored only as a hash:`,
        'keep it in a password manager. Use it as "Authorization: Bearer <token>".',
        rule,
      ].join('\n'),
    );
  }
}
