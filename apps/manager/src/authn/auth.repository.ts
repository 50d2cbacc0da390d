import { Injectable } from '@nestjs/common';
import { In } from 'typeorm';
import { AclEntryEntity, type PrincipalType } from '../acl/acl-entry.entity';
import { fromAclRow, type AclRow } from '../acl/acl.repository';
import { ApiTokenEntity } from '../tokens/api-token.entity';
import { GroupEntity } from '../groups/group.entity';
import { RealmEntity } from '../realms/realm.entity';
import { SessionEntity } from '../sessions/session.entity';
import { UserEntity } from '../users/user.entity';
import { VmOwnershipEntity } from '../groups/vm-ownership.entity';
import { RemoteGroupEntryEntity } from '../remote-groups/remote-group-entry.entity';
import { SystemSettingEntity } from '../database/system-setting.entity';
import { UnitOfWork } from '../database/unit-of-work.repository';

const BOOTSTRAP_SETTING = 'auth.bootstrap';

/** The groups of a user, with what matters for access: tenancy and the second-factor rule. */
export interface MembershipRow {
  readonly id: string;
  readonly tenant: boolean;
  readonly requireTfa: boolean;
}

/** What authentication and authorization read from PostgreSQL: tokens, sessions, users, groups, ACL entries. */
@Injectable()
export class AuthRepository {
  constructor(private readonly db: UnitOfWork) {}

  findToken(id: string): Promise<ApiTokenEntity | null> {
    return this.db.manager.getRepository(ApiTokenEntity).findOneBy({ id });
  }

  findSession(id: string): Promise<SessionEntity | null> {
    return this.db.manager.getRepository(SessionEntity).findOneBy({ id });
  }

  findUser(id: string): Promise<UserEntity | null> {
    return this.db.manager.getRepository(UserEntity).findOneBy({ id });
  }

  findRealm(id: string): Promise<RealmEntity | null> {
    return this.db.manager.getRepository(RealmEntity).findOneBy({ id });
  }

  findGroup(id: string): Promise<GroupEntity | null> {
    return this.db.manager.getRepository(GroupEntity).findOneBy({ id });
  }

  async groupsOf(userId: string): Promise<MembershipRow[]> {
    const rows: { id: string; tenant: boolean; require_tfa: boolean }[] =
      await this.db.manager.query(
        'SELECT g.id, g.tenant, g.require_tfa FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.user_id = $1 ORDER BY g.id',
        [userId],
      );
    return rows.map((r) => ({ id: r.id, tenant: r.tenant, requireTfa: r.require_tfa }));
  }

  /** The ACL entries of several principals in one query. */
  async aclEntriesOf(
    principals: readonly { type: PrincipalType; id: string }[],
  ): Promise<AclEntryEntity[]> {
    if (principals.length === 0) return [];
    const params: string[] = [];
    const clauses = principals.map(
      (p) => `(principal_type = $${params.push(p.type)} AND principal = $${params.push(p.id)})`,
    );
    const rows: AclRow[] = await this.db.manager.query(
      `SELECT * FROM acl_entries WHERE ${clauses.join(' OR ')} ORDER BY path`,
      params,
    );
    return rows.map(fromAclRow);
  }

  /** VM uuids owned by each of `groups`. */
  async vmsOwnedBy(groups: readonly string[]): Promise<Map<string, Set<string>>> {
    const owned = new Map<string, Set<string>>(groups.map((g) => [g, new Set<string>()]));
    if (groups.length === 0) return owned;
    const rows = await this.db.manager
      .getRepository(VmOwnershipEntity)
      .find({ where: { tenantGroup: In([...groups]) } });
    for (const row of rows) owned.get(row.tenantGroup)?.add(row.vmUuid);
    return owned;
  }

  /** For each remote group: remote id → credential id. */
  async remoteGroupEntries(groups: readonly string[]): Promise<Map<string, Map<string, string>>> {
    const entries = new Map<string, Map<string, string>>(
      groups.map((g) => [g, new Map<string, string>()]),
    );
    if (groups.length === 0) return entries;
    const rows = await this.db.manager
      .getRepository(RemoteGroupEntryEntity)
      .find({ where: { groupId: In([...groups]) } });
    for (const row of rows) entries.get(row.groupId)?.set(row.remoteId, row.credentialId);
    return entries;
  }

  async isBootstrapped(): Promise<boolean> {
    return (
      (await this.db.manager
        .getRepository(SystemSettingEntity)
        .countBy({ key: BOOTSTRAP_SETTING })) > 0
    );
  }

  /**
   * Marks the manager bootstrapped (the first administrator's user and token); false when another
   * instance did so first. The caller stores the administrator in the same unit of work.
   */
  async markBootstrapped(user: string, tokenId: string, at: Date): Promise<boolean> {
    const inserted: unknown[] = await this.db.manager.query(
      'INSERT INTO system_settings (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING RETURNING key',
      [BOOTSTRAP_SETTING, JSON.stringify({ tokenId, user }), at],
    );
    return inserted.length > 0;
  }
}
