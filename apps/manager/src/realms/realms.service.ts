import { Inject, Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { z } from 'zod';
import { AclService } from '../acl/acl.service';
import { AuditService } from '../audit/audit.service';
import { CallerCache } from '../authz/caller-cache';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { describeZodError } from '../common/validation.pipe';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { SecretBox } from '../pki/secret-box';
import { MANAGER_IDENTITY, type ManagerIdentity } from '../pki/state-dir.repository';
import { mapGroups } from './group-mapping';
import { formatUserId, usernameSchema } from '../common/principal';
import type { RealmEntity, RealmType } from './realm.entity';
import { LdapBindStrategy } from './ldap-bind.strategy';
import { LdapDirectoryRepository } from './ldap-directory.repository';
import { ldapRealmSettingsSchema, type LdapRealmSettings } from './ldap-settings';
import {
  REALM_SETTINGS_SCHEMAS,
  type CreateRealmInput,
  type LoginRealmView,
  type RealmConnection,
  type RealmView,
  type SyncSummary,
  type UpdateRealmInput,
} from './realms.dto';
import { RealmSyncService, type IdentityWrite } from './realm-sync.service';
import { RealmsRepository, type RealmPatch } from './realms.repository';
import { TokensService } from '../tokens/tokens.service';
import { UserSessions } from '../users/user-sessions';
import type { UserEntity } from '../users/user.entity';

/** A user as a directory or identity provider describes it. */
export interface ExternalIdentity {
  readonly username: string;
  /** The LDAP DN or the OIDC subject. */
  readonly externalId: string;
  readonly displayName: string | null;
  readonly email: string | null;
  /** External group names, mapped to manager groups by the realm's group mappings. */
  readonly groups: readonly string[];
}

/** The result of checking a password against a directory realm. */
export type DirectoryPasswordCheck = { readonly userId: string } | 'unknown' | 'wrong';

/** How often the scheduler looks for realms whose sync is due. */
export const SYNC_TICK_MS = 60_000;
/** How long the login page's realm list is kept (realm changes on this instance forget it at once). */
export const LOGIN_CHOICES_TTL_MS = 10_000;

const MAX_TEXT = 255;

/**
 * Realms: their settings and sealed secrets, directory logins and syncs.
 *
 * Directory users are cached as manager users `username@realm` (external id = DN). A user the
 * directory no longer lists is disabled by the sync and its external id cleared; that pair — an
 * LDAP user once seen by its directory, disabled, without external id — is what "disabled by the
 * sync" means, and only such a user is enabled again when the directory lists it again (at a sync
 * or a login). A user an administrator disabled keeps its DN and so stays disabled.
 */
@Injectable()
export class RealmsService {
  private readonly box: SecretBox;
  /** The sync of each realm that is running on this instance (manual syncs queue behind it). */
  private readonly running = new Map<string, Promise<SyncSummary>>();
  /** When this instance last tried a scheduled sync of each realm (so that failures wait an interval too). */
  private readonly lastAttempt = new Map<string, number>();
  private ticking = false;
  private loginChoicesCache:
    { at: number; answer: Promise<{ items: LoginRealmView[] }> } | undefined;

  constructor(
    private readonly repository: RealmsRepository,
    private readonly ldap: LdapDirectoryRepository,
    private readonly callers: CallerCache,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
    private readonly logger: PinoLogger,
    @Inject(MANAGER_IDENTITY) identity: ManagerIdentity,
    private readonly ldapBind: LdapBindStrategy,
    private readonly tokens: TokensService,
    private readonly acl: AclService,
    private readonly db: UnitOfWork,
    private readonly userSessions: UserSessions,
    private readonly directory: RealmSyncService,
  ) {
    this.box = new SecretBox(identity.secretKey);
    logger.setContext(RealmsService.name);
  }

  // --- configuration -----------------------------------------------------------------------------

  async list(): Promise<{ items: RealmView[] }> {
    return { items: (await this.repository.list()).map(toView) };
  }

  /**
   * The realms a login page offers (id, type, comment): `local` first, then by id. Anyone may ask,
   * unauthenticated and unlimited, so the answer is kept until a realm changes here, or for
   * LOGIN_CHOICES_TTL_MS (another manager instance may have changed one).
   */
  loginChoices(): Promise<{ items: LoginRealmView[] }> {
    const now = this.clock.now().getTime();
    if (!this.loginChoicesCache || now - this.loginChoicesCache.at >= LOGIN_CHOICES_TTL_MS) {
      const answer = this.repository.list().then((realms) => {
        const ordered = [
          ...realms.filter((r) => r.id === 'local'),
          ...realms.filter((r) => r.id !== 'local'),
        ];
        return { items: ordered.map(({ id, type, comment }) => ({ id, type, comment })) };
      });
      // A failed read is not kept.
      answer.catch(() => {
        if (this.loginChoicesCache?.answer === answer) this.loginChoicesCache = undefined;
      });
      this.loginChoicesCache = { at: now, answer };
    }
    return this.loginChoicesCache.answer;
  }

  /** After a realm was added, changed or removed: callers and the login page's list are read afresh. */
  private realmsChanged(): void {
    this.callers.invalidate();
    this.loginChoicesCache = undefined;
  }

  async get(id: string): Promise<RealmView> {
    return toView(await this.require(id));
  }

  /** Adds an LDAP or OpenID Connect realm; an LDAP realm's connection is tested first (refused on failure unless `addAnyway`). */
  async create(input: CreateRealmInput): Promise<RealmView & { connection: RealmConnection }> {
    if (await this.repository.find(input.id))
      throw new DomainError(ErrorCode.Conflict, `realm ${input.id} already exists`);
    const secret = input.secret ?? null;
    const settings = parseSettings(input.type, input.settings);
    const connection =
      input.type === 'ldap' ? await this.testLdap(settings, secret, input.addAnyway) : null;
    const realm = await this.repository.create({
      id: input.id,
      type: input.type,
      comment: input.comment,
      settings,
      sealedSecret: secret === null ? null : this.box.seal(secret, sealContext(input.id)),
      requireTfa: input.requireTfa,
      groupMappings: input.groupMappings,
      syncIntervalMinutes: input.syncIntervalMinutes,
      createdAt: this.clock.now(),
    });
    this.realmsChanged();
    this.audit.note({
      type: realm.type,
      hasSecret: secret !== null,
      connection: connectionNote(connection),
      addAnyway: input.addAnyway,
    });
    return { ...toView(realm), connection };
  }

  /**
   * Changes a realm: absent fields stay. The local realm has only `comment` and `requireTfa`. A
   * change of type (LDAP ↔ OpenID Connect) needs the new type's settings and drops the old secret
   * unless a new one is given. An LDAP realm's connection is tested when its settings, secret or
   * type change.
   */
  async update(
    id: string,
    input: UpdateRealmInput,
  ): Promise<RealmView & { connection: RealmConnection }> {
    const realm = await this.require(id);
    const changed = (Object.keys(input) as (keyof UpdateRealmInput)[]).filter(
      (key) => key !== 'addAnyway' && input[key] !== undefined,
    );
    if (realm.type === 'local') {
      const refused = changed.filter(
        (key) =>
          !['comment', 'requireTfa', 'type'].includes(key) ||
          (key === 'type' && input.type !== 'local'),
      );
      if (refused.length > 0) {
        throw new DomainError(
          ErrorCode.ValidationFailed,
          `${refused.join(', ')}: the local realm has only comment and requireTfa to change`,
        );
      }
      const updated = await this.repository.update(id, {
        comment: input.comment,
        requireTfa: input.requireTfa,
      });
      this.realmsChanged();
      this.audit.note({ changed });
      return { ...toView(updated ?? realm), connection: null };
    }

    const type = input.type ?? realm.type;
    if (type === 'local')
      throw new DomainError(
        ErrorCode.ValidationFailed,
        'type: only the built-in realm local is of type local',
      );
    const typeChanged = type !== realm.type;
    if (typeChanged && input.settings === undefined) {
      throw new DomainError(
        ErrorCode.ValidationFailed,
        `settings: a realm changing to type ${type} needs all the settings of that type`,
      );
    }
    const settings =
      input.settings !== undefined ? parseSettings(type, input.settings) : realm.settings;
    // Absent: the stored secret stays (it is opened only when a connection test needs it); a change of type drops it.
    const keepSecret = input.secret === undefined && !typeChanged;
    const newSecret = input.secret ?? null;
    if (type === 'openid' && (keepSecret ? realm.sealedSecret === null : newSecret === null)) {
      throw new DomainError(
        ErrorCode.ValidationFailed,
        'secret: an OpenID Connect realm needs its client secret',
      );
    }
    const syncIntervalMinutes =
      input.syncIntervalMinutes !== undefined
        ? input.syncIntervalMinutes
        : type === 'openid'
          ? null
          : realm.syncIntervalMinutes;
    if (type === 'openid' && syncIntervalMinutes !== null) {
      throw new DomainError(
        ErrorCode.ValidationFailed,
        'syncIntervalMinutes: only LDAP realms sync on a schedule',
      );
    }
    const connectionChanged =
      typeChanged || input.settings !== undefined || input.secret !== undefined;
    const connection =
      type === 'ldap' && connectionChanged
        ? await this.testLdap(
            settings,
            keepSecret ? this.secretOf(realm) : newSecret,
            input.addAnyway,
          )
        : null;

    const patch: RealmPatch = {
      type,
      comment: input.comment,
      settings: input.settings !== undefined ? settings : undefined,
      requireTfa: input.requireTfa,
      groupMappings: input.groupMappings,
      syncIntervalMinutes,
    };
    const sealedSecret = keepSecret
      ? undefined
      : newSecret === null
        ? null
        : this.box.seal(newSecret, sealContext(id));
    // null must reach the repository as a value (remove the secret), not as "unchanged".
    const updated = await this.repository.update(
      id,
      sealedSecret === undefined ? patch : { ...patch, sealedSecret },
    );
    if (!updated) throw DomainError.notFound(`realm ${id}`);
    this.realmsChanged();
    this.audit.note({
      changed,
      connection: connectionNote(connection),
      addAnyway: input.addAnyway,
    });
    return { ...toView(updated), connection };
  }

  /** Removes a realm with its users (their tokens, sessions, memberships and ACL entries). The local realm stays. */
  async delete(id: string): Promise<void> {
    if (id === 'local')
      throw new DomainError(ErrorCode.BadRequest, 'the local realm cannot be deleted');
    const deleted = await this.db.run(async () => {
      const users = (await this.repository.usersOfRealm(id)).map((u) => u.id);
      await this.tokens.removeOwnedBy('user', users);
      await this.acl.removeGrantsOf('user', users);
      return this.repository.delete(id);
    });
    if (!deleted) throw DomainError.notFound(`realm ${id}`);
    this.lastAttempt.delete(id);
    this.realmsChanged();
  }

  /**
   * The realm's secret (bind password, client secret) opened, or null when none is stored; for
   * the directory and identity-provider calls only, never for an answer or a log line.
   */
  secretOf(realm: RealmEntity): string | null {
    if (realm.sealedSecret === null) return null;
    try {
      return this.box.open(realm.sealedSecret, sealContext(realm.id));
    } catch (error) {
      throw new DomainError(
        ErrorCode.RealmUnavailable,
        `the stored secret of realm ${realm.id} cannot be opened (was the manager's key replaced?): set it again`,
        {
          cause: error,
        },
      );
    }
  }

  // --- logins ------------------------------------------------------------------------------------

  /**
   * Checks a password with a bind as the user. The DN comes from the manager's cache of the
   * directory (the user as the last sync or login saw it), so that a login needs no directory
   * search; an unknown user, or a cached DN the directory refuses, is looked up in the directory.
   * On success the user and its groups (read from the directory for this DN) are stored.
   * RealmUnavailable when the directory cannot be used.
   */
  async verifyDirectoryPassword(
    realm: RealmEntity,
    username: string,
    password: string,
  ): Promise<DirectoryPasswordCheck> {
    if (realm.type !== 'ldap') throw new Error(`realm ${realm.id} is not an LDAP realm`);
    if (!usernameSchema.safeParse(username).success) return 'unknown';
    const settings = ldapSettingsOf(realm);
    const cached = await this.repository.findUser(formatUserId(username, realm.id));
    const cachedDn = cached?.externalId ?? null;
    // The password is checked by the LDAP bind passport strategy.
    const bound = await this.ldapBind.bind({
      settings,
      bindPassword: this.secretOf(realm),
      username,
      password,
      knownDn: cachedDn,
    });
    if (bound === 'unknown' || bound === 'wrong') return bound;
    const entry = bound.entry;
    const identity = entry
      ? {
          username: entry.username,
          externalId: entry.dn,
          displayName: entry.displayName,
          email: entry.email,
        }
      : {
          username: cached!.username,
          externalId: cachedDn!,
          displayName: cached!.displayName,
          email: cached!.email,
        };
    const groups = await this.ldap.groupsOfUser(
      settings,
      this.secretOf(realm),
      identity.externalId,
    );
    const user = await this.applyExternalIdentity(realm, { ...identity, groups });
    return { userId: user.id };
  }

  /**
   * Stores a user as its realm describes it (one transaction): `username@realm` created or updated
   * (display name, email, external id, synced at — `enabled` stays as an administrator set it, see
   * the class comment), its external groups mapped through the realm's group mappings, missing
   * manager groups created, and its memberships sourced from this realm replaced by the mapped
   * ones (memberships an administrator added stay).
   */
  async applyExternalIdentity(realm: RealmEntity, identity: ExternalIdentity): Promise<UserEntity> {
    if (!usernameSchema.safeParse(identity.username).success) {
      throw new DomainError(
        ErrorCode.Unauthenticated,
        `the user name given by realm ${realm.id} cannot be a manager user name (letters, digits and . _ @ + - only)`,
      );
    }
    const id = formatUserId(identity.username, realm.id);
    const existing = await this.repository.findUser(id);
    // An OpenID Connect subject is the user's identity: another subject under a reused user name
    // must not take over the account.
    if (
      realm.type === 'openid' &&
      existing?.externalId &&
      existing.externalId !== identity.externalId
    ) {
      throw new DomainError(
        ErrorCode.Unauthenticated,
        `realm ${realm.id} names a different subject for user ${identity.username} than before: an administrator must remove the old user first`,
      );
    }
    await this.directory.apply({
      realmId: realm.id,
      at: this.clock.now(),
      users: [identityWrite(realm, identity, existing)],
    });
    this.callers.invalidate();
    const user = await this.repository.findUser(id);
    if (!user) throw new Error(`user ${id} vanished while it was stored`);
    return user;
  }

  // --- directory syncs ---------------------------------------------------------------------------

  /** Syncs an LDAP realm's users and groups now (after a sync of it that is already running). */
  async sync(id: string): Promise<SyncSummary> {
    const realm = await this.require(id);
    if (realm.type !== 'ldap') {
      throw new DomainError(
        ErrorCode.BadRequest,
        `realm ${id} is not an LDAP realm: only directories are synced (OpenID Connect users are updated at each login)`,
      );
    }
    const summary = await this.exclusive(id, () => this.syncRealm(id));
    this.audit.note({ ...summary });
    return summary;
  }

  /**
   * The scheduler's tick: syncs every LDAP realm whose interval has passed since its last sync
   * (or this instance's last attempt), one at a time. Never throws: failures are stored in the
   * realm's lastSyncError and logged.
   */
  async runDueSyncs(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const realms = await this.repository.scheduledRealms();
      for (const realm of realms) {
        const now = this.clock.now().getTime();
        const last = Math.max(
          realm.lastSyncAt?.getTime() ?? 0,
          this.lastAttempt.get(realm.id) ?? 0,
        );
        if (
          realm.syncIntervalMinutes === null ||
          this.running.has(realm.id) ||
          now - last < realm.syncIntervalMinutes * 60_000
        )
          continue;
        this.lastAttempt.set(realm.id, now);
        const target = `/access/realms/${realm.id}`;
        try {
          const summary = await this.exclusive(realm.id, () => this.syncRealm(realm.id));
          await this.audit.systemEvent({
            action: 'access.realm.sync',
            target,
            outcome: 'success',
            details: { scheduled: true, ...summary },
          });
        } catch (error) {
          // syncRealm stored and logged it; the audit log keeps that it failed.
          await this.audit.systemEvent({
            action: 'access.realm.sync',
            target,
            outcome: 'failure',
            details: {
              scheduled: true,
              error: error instanceof DomainError ? error.message : 'internal error',
            },
          });
        }
      }
    } catch (error) {
      this.logger.error({ err: error }, 'cannot look for realms to sync');
    } finally {
      this.ticking = false;
    }
  }

  /** Resolves once no sync is running on this instance (for shutdown). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.running.values()]);
  }

  private async syncRealm(id: string): Promise<SyncSummary> {
    try {
      // Read again: the settings may have changed while this sync waited for another.
      const realm = await this.require(id);
      if (realm.type !== 'ldap')
        throw new DomainError(ErrorCode.BadRequest, `realm ${id} is no longer an LDAP realm`);
      const directory = await this.ldap.fetchDirectory(ldapSettingsOf(realm), this.secretOf(realm));
      const existing = new Map(
        (await this.repository.usersOfRealm(id)).map((user) => [user.id, user]),
      );

      const groupsOf = new Map<string, string[]>();
      for (const group of directory.groups) {
        for (const username of group.memberUsernames)
          groupsOf.set(username, [...(groupsOf.get(username) ?? []), group.name]);
      }
      const writes: IdentityWrite[] = [];
      let skipped = 0;
      let updated = 0;
      for (const entry of directory.users) {
        if (!usernameSchema.safeParse(entry.username).success) {
          skipped++;
          continue;
        }
        const identity = {
          username: entry.username,
          externalId: entry.dn,
          displayName: entry.displayName,
          email: entry.email,
          groups: groupsOf.get(entry.username) ?? [],
        };
        const before = existing.get(formatUserId(entry.username, id)) ?? null;
        const write = identityWrite(realm, identity, before);
        if (
          before &&
          (write.reenable ||
            before.displayName !== write.displayName ||
            before.email !== write.email ||
            before.externalId !== write.externalId)
        )
          updated++;
        writes.push(write);
      }
      const listed = new Set(writes.map((w) => w.id));
      const vanished = [...existing.values()].filter((user) => !listed.has(user.id));
      const at = this.clock.now();
      const disable = vanished.filter((user) => user.enabled).map((user) => user.id);
      // The users disabled and their ended sessions are one change: the sessions end by the one
      // rule (sessions/), in the sync's transaction.
      const result = await this.db.run(async () => {
        const applied = await this.directory.apply({
          realmId: id,
          at,
          users: writes,
          sync: { disable, all: vanished.map((user) => user.id) },
        });
        for (const user of disable) await this.userSessions.end(user, { all: at });
        return applied;
      });
      this.callers.invalidate();
      const summary: SyncSummary = {
        users: { created: result.usersCreated, updated, disabled: result.usersDisabled, skipped },
        groups: { created: result.groupsCreated },
        memberships: { added: result.membershipsAdded, removed: result.membershipsRemoved },
      };
      this.logger.info({ realm: id, ...summary }, 'realm synced');
      return summary;
    } catch (error) {
      const message =
        error instanceof DomainError
          ? error.message
          : 'the sync failed unexpectedly (see the manager log)';
      if (error instanceof DomainError)
        this.logger.warn({ realm: id, error: message }, 'realm sync failed');
      else this.logger.error({ realm: id, err: error }, 'realm sync failed');
      if (!(error instanceof DomainError && error.code === ErrorCode.NotFound)) {
        await this.repository
          .recordSyncFailure(id, message)
          .catch((failure: unknown) =>
            this.logger.error({ realm: id, err: failure }, 'cannot record the sync failure'),
          );
      }
      throw error;
    }
  }

  /** Runs `work` after any sync of the realm this instance is running, as the realm's running sync. */
  private exclusive(id: string, work: () => Promise<SyncSummary>): Promise<SyncSummary> {
    const previous = this.running.get(id);
    const next = previous ? previous.then(work, work) : work();
    this.running.set(id, next);
    const forget = () => {
      if (this.running.get(id) === next) this.running.delete(id);
    };
    next.then(forget, forget);
    return next;
  }

  private async testLdap(
    settings: Record<string, unknown>,
    secret: string | null,
    addAnyway: boolean,
  ): Promise<RealmConnection> {
    try {
      await this.ldap.testConnection(ldapRealmSettingsSchema.parse(settings), secret);
      return { ok: true };
    } catch (error) {
      if (!(error instanceof DomainError) || !addAnyway) throw error;
      return { ok: false, error: { code: error.code, message: error.message } };
    }
  }

  private async require(id: string): Promise<RealmEntity> {
    const realm = await this.repository.find(id);
    if (!realm) throw DomainError.notFound(`realm ${id}`);
    return realm;
  }
}

/** What a realm's sealed secret is bound to: moved to another realm's row it does not open. */
function sealContext(realmId: string): string {
  return `realm:${realmId}`;
}

function toView(realm: RealmEntity): RealmView {
  return {
    id: realm.id,
    type: realm.type,
    comment: realm.comment,
    settings: realm.settings,
    hasSecret: realm.sealedSecret !== null,
    requireTfa: realm.requireTfa,
    groupMappings: realm.groupMappings.map((m) => ({
      pattern: m.pattern,
      ...(m.group !== undefined ? { group: m.group } : {}),
      ...(m.tenant !== undefined ? { tenant: m.tenant } : {}),
    })),
    syncIntervalMinutes: realm.syncIntervalMinutes,
    lastSyncAt: realm.lastSyncAt?.toISOString() ?? null,
    lastSyncError: realm.lastSyncError,
    createdAt: realm.createdAt.toISOString(),
  };
}

function parseSettings(
  type: Exclude<RealmType, 'local'>,
  settings: unknown,
): Record<string, unknown> {
  const result = z.object({ settings: REALM_SETTINGS_SCHEMAS[type] }).safeParse({ settings });
  if (!result.success)
    throw new DomainError(ErrorCode.ValidationFailed, describeZodError(result.error));
  return result.data.settings;
}

function ldapSettingsOf(realm: RealmEntity): LdapRealmSettings {
  const result = ldapRealmSettingsSchema.safeParse(realm.settings);
  if (!result.success) {
    throw new DomainError(
      ErrorCode.RealmUnavailable,
      `the stored settings of realm ${realm.id} are not valid LDAP settings (${describeZodError(result.error)}): set them again`,
    );
  }
  return result.data;
}

function identityWrite(
  realm: RealmEntity,
  identity: ExternalIdentity,
  existing: UserEntity | null,
): IdentityWrite {
  return {
    id: formatUserId(identity.username, realm.id),
    username: identity.username,
    displayName: clip(identity.displayName),
    email: clip(identity.email),
    externalId: identity.externalId,
    reenable:
      realm.type === 'ldap' &&
      existing !== null &&
      !existing.enabled &&
      existing.externalId === null &&
      existing.syncedAt !== null,
    groups: mapGroups(realm.groupMappings, identity.groups),
  };
}

function clip(value: string | null): string | null {
  return value === null ? null : value.slice(0, MAX_TEXT);
}

function connectionNote(connection: RealmConnection): string | undefined {
  if (!connection) return undefined;
  return connection.ok ? 'ok' : connection.error?.code;
}
