import { Inject, Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { formatApiToken, hashTokenSecret } from './api-token';
import { CallerCache } from '../authz/caller-cache';
import { tokenDisplay, type Caller } from '../authz/caller';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { RandomRepository } from '../common/random.repository';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';
import { AclService, aclEntryView } from '../acl/acl.service';
import type { AclEntryView } from '../acl/acl.dto';
import type { ApiTokenEntity, TokenOwnerType } from './api-token.entity';
import type {
  CreatedTokenView,
  CreateOwnTokenInput,
  CreateTokenInput,
  OwnTokenAclInput,
  TokenView,
  UpdateTokenInput,
} from './tokens.dto';
import { TokensRepository, type TokenPatch } from './tokens.repository';

interface NewToken {
  readonly ownerType: TokenOwnerType;
  readonly owner: string;
  readonly name: string;
  readonly comment: string;
  readonly expiresAt?: Date;
  readonly limited: boolean;
}

/**
 * API tokens: users create and manage their own through a login session; administrators those of
 * any user and of groups. The secret is answered once, at creation, and stored only as its
 * SHA-256. A user's token never exceeds its owner: unlimited it holds exactly the owner's rights,
 * limited only what both the owner and its own ACL entries grant (AuthService evaluates that).
 */
@Injectable()
export class TokensService {
  constructor(
    private readonly repository: TokensRepository,
    private readonly acl: AclService,
    private readonly callers: CallerCache,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
    private readonly random: RandomRepository,
    @Inject(MANAGER_CONFIG) private readonly config: ManagerConfig,
  ) {}

  async list(filter: {
    ownerType?: TokenOwnerType;
    owner?: string;
  }): Promise<{ items: TokenView[] }> {
    return { items: (await this.repository.listTokens(filter)).map(tokenView) };
  }

  async listMine(caller: Caller): Promise<{ items: TokenView[] }> {
    return {
      items: (await this.repository.listTokens({ ownerType: 'user', owner: ownUser(caller) })).map(
        tokenView,
      ),
    };
  }

  /** A token of the caller's own user. */
  createMine(caller: Caller, input: CreateOwnTokenInput): Promise<CreatedTokenView> {
    return this.createToken({ ownerType: 'user', owner: ownUser(caller), ...input });
  }

  /** An administrator creates a token for a user or a group (which must exist). */
  async create(input: CreateTokenInput): Promise<CreatedTokenView> {
    if (!(await this.acl.principalExists(input.ownerType, input.owner)))
      throw DomainError.notFound(`${input.ownerType} ${input.owner}`);
    return this.createToken(input);
  }

  async updateMine(caller: Caller, id: string, input: UpdateTokenInput): Promise<TokenView> {
    return this.updateToken(await this.requireOwn(caller, id), input);
  }

  async update(id: string, input: UpdateTokenInput): Promise<TokenView> {
    return this.updateToken(await this.require(id), input);
  }

  async revokeMine(caller: Caller, id: string): Promise<void> {
    await this.revokeToken(await this.requireOwn(caller, id));
  }

  async revoke(id: string): Promise<void> {
    await this.revokeToken(await this.require(id));
  }

  // --- a user's own limited token's ACL entries ----------------------------------------------------

  async listMineAcl(caller: Caller, id: string): Promise<{ items: AclEntryView[] }> {
    const token = await this.requireOwn(caller, id);
    return {
      items: (await this.acl.entriesOf('token', token.id)).map(aclEntryView),
    };
  }

  /**
   * Grants the caller's own limited token a role on a path. This can never give the token more than
   * its owner holds: a limited token holds the intersection of the owner's rights and its entries.
   */
  async putMineAcl(caller: Caller, id: string, input: OwnTokenAclInput): Promise<AclEntryView> {
    const token = await this.requireOwn(caller, id);
    this.requireUsable(token);
    if (!token.limited) {
      throw new DomainError(
        ErrorCode.Conflict,
        `token ${token.name} is not limited: it holds exactly your rights and its own ACL entries would have no effect; make it limited first`,
      );
    }
    const stored = await this.acl.grant({
      path: input.path,
      principalType: 'token',
      principal: token.id,
      role: input.role,
      propagate: input.propagate,
    });
    this.audit.note({
      tokenId: token.id,
      path: stored.path,
      role: stored.role,
      propagate: stored.propagate,
    });
    return aclEntryView(stored);
  }

  async deleteMineAcl(caller: Caller, id: string, path: string): Promise<void> {
    const token = await this.requireOwn(caller, id);
    if (!(await this.acl.remove(path, 'token', token.id)))
      throw DomainError.notFound(`ACL entry of token ${token.name} on ${path}`);
    this.audit.note({ tokenId: token.id, path });
  }

  // --- for the features that own the tokens' owners ------------------------------------------------

  /** Removes every token of these users or groups with the tokens' ACL entries (the owners are being removed). */
  async removeOwnedBy(ownerType: TokenOwnerType, owners: readonly string[]): Promise<void> {
    const removed = await this.repository.deleteOwnedBy(ownerType, owners);
    await this.acl.removeGrantsOf('token', removed);
    if (removed.length > 0) this.callers.invalidate();
  }

  /** Stores the first start's administrator token as made (no per-owner checks, no audit entry). */
  async createBootstrapToken(token: ApiTokenEntity): Promise<void> {
    await this.repository.insert(token);
    this.callers.invalidate();
  }

  /** A token authenticated a request at `at` (written at most once a minute per token by the caller). */
  recordUse(id: string, at: Date): Promise<void> {
    return this.repository.touchToken(id, at);
  }

  // --- internals -------------------------------------------------------------------------------

  private async createToken(input: NewToken): Promise<CreatedTokenView> {
    const now = this.clock.now();
    if (input.expiresAt && input.expiresAt <= now)
      throw new DomainError(ErrorCode.ValidationFailed, 'expiresAt: must be in the future');
    const id = this.random.bytes(8).toString('hex');
    const secret = this.random.bytes(32).toString('base64url');
    const token: ApiTokenEntity = {
      id,
      ownerType: input.ownerType,
      principal: input.owner,
      name: input.name,
      comment: input.comment,
      limited: input.limited,
      secretHash: hashTokenSecret(secret),
      createdAt: now,
      lastUsedAt: null,
      expiresAt: input.expiresAt ?? null,
      revokedAt: null,
    };
    const cap = this.config.access.tokensPerOwner;
    const inserted = await this.repository.insertToken(token, cap);
    if (inserted === 'taken') {
      throw new DomainError(
        ErrorCode.Conflict,
        `${tokenDisplay(input.ownerType, input.owner, input.name)} already exists: token names are unique per owner (revoked tokens keep theirs)`,
      );
    }
    if (inserted === 'full') {
      throw new DomainError(
        ErrorCode.Conflict,
        `${input.ownerType} ${input.owner} holds ${cap} tokens already, the most one owner may hold (DEBVISOR_TOKENS_PER_OWNER; at most ${cap}): revoke one first`,
      );
    }
    this.callers.invalidate();
    this.audit.note({
      tokenId: id,
      token: tokenDisplay(input.ownerType, input.owner, input.name),
      limited: input.limited,
      expiresAt: token.expiresAt?.toISOString() ?? null,
    });
    return { ...tokenView(token), token: formatApiToken(id, secret) };
  }

  private async updateToken(token: ApiTokenEntity, input: UpdateTokenInput): Promise<TokenView> {
    this.requireUsable(token);
    const patch: TokenPatch = {};
    if (input.comment !== undefined) patch.comment = input.comment;
    if (input.limited !== undefined) patch.limited = input.limited;
    if (input.expiresAt !== undefined) {
      if (input.expiresAt !== null && input.expiresAt <= this.clock.now())
        throw new DomainError(ErrorCode.ValidationFailed, 'expiresAt: must be in the future');
      patch.expiresAt = input.expiresAt;
    }
    await this.repository.updateToken(token.id, patch);
    this.callers.invalidate();
    this.audit.note({ tokenId: token.id, changed: Object.keys(patch) });
    return tokenView({ ...token, ...patch });
  }

  /** Revoking is final; revoking a revoked token changes nothing. */
  private async revokeToken(token: ApiTokenEntity): Promise<void> {
    const revoked = await this.repository.revokeToken(token.id, this.clock.now());
    this.callers.invalidate();
    this.audit.note({
      tokenId: token.id,
      token: tokenDisplay(token.ownerType, token.principal, token.name),
      alreadyRevoked: !revoked,
    });
  }

  private requireUsable(token: ApiTokenEntity): void {
    if (token.revokedAt)
      throw new DomainError(ErrorCode.Conflict, `token ${token.name} is revoked: create a new one`);
  }

  private async require(id: string): Promise<ApiTokenEntity> {
    const token = await this.repository.findToken(id);
    if (!token) throw DomainError.notFound(`token ${id}`);
    return token;
  }

  /** The caller's own token; another's answers 404 as if it did not exist. */
  private async requireOwn(caller: Caller, id: string): Promise<ApiTokenEntity> {
    const token = await this.repository.findToken(id);
    if (!token || token.ownerType !== 'user' || token.principal !== ownUser(caller))
      throw DomainError.notFound(`token ${id}`);
    return token;
  }
}

/** The user behind a self-service call (always a session of a user: the guard lets nothing else through). */
function ownUser(caller: Caller): string {
  if (caller.principalType !== 'user')
    throw new DomainError(ErrorCode.Forbidden, 'only users have tokens of their own');
  return caller.principal;
}

export function tokenView(token: ApiTokenEntity): TokenView {
  return {
    id: token.id,
    name: token.name,
    ownerType: token.ownerType,
    owner: token.principal,
    display: tokenDisplay(token.ownerType, token.principal, token.name),
    comment: token.comment,
    limited: token.limited,
    createdAt: token.createdAt.toISOString(),
    lastUsedAt: token.lastUsedAt?.toISOString() ?? null,
    expiresAt: token.expiresAt?.toISOString() ?? null,
    revokedAt: token.revokedAt?.toISOString() ?? null,
  };
}
