import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, In } from 'typeorm';
import { AclEntryEntity, type PrincipalType } from '../acl/acl-entry.entity';
import { ApiTokenEntity } from '../tokens/api-token.entity';
import { GroupEntity } from '../groups/group.entity';
import { RealmEntity } from '../realms/realm.entity';
import { SessionEntity } from '../sessions/session.entity';
import { UserEntity } from '../users/user.entity';
import { VmOwnershipEntity } from '../acl/vm-ownership.entity';
import { RemoteGroupEntryEntity } from '../remote-groups/remote-group-entry.entity';
import { SystemSettingEntity } from '../database/system-setting.entity';

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
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  findToken(id: string): Promise<ApiTokenEntity | null> {
    return this.dataSource.getRepository(ApiTokenEntity).findOneBy({ id });
  }

  async touchToken(id: string, at: Date): Promise<void> {
    await this.dataSource.getRepository(ApiTokenEntity).update({ id }, { lastUsedAt: at });
  }

  findSession(id: string): Promise<SessionEntity | null> {
    return this.dataSource.getRepository(SessionEntity).findOneBy({ id });
  }

  async touchSession(id: string, at: Date): Promise<void> {
    await this.dataSource.getRepository(SessionEntity).update({ id }, { lastSeenAt: at });
  }

  findUser(id: string): Promise<UserEntity | null> {
    return this.dataSource.getRepository(UserEntity).findOneBy({ id });
  }

  findRealm(id: string): Promise<RealmEntity | null> {
    return this.dataSource.getRepository(RealmEntity).findOneBy({ id });
  }

  findGroup(id: string): Promise<GroupEntity | null> {
    return this.dataSource.getRepository(GroupEntity).findOneBy({ id });
  }

  async groupsOf(userId: string): Promise<MembershipRow[]> {
    const rows: { id: string; tenant: boolean; require_tfa: boolean }[] =
      await this.dataSource.query(
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
    const rows: {
      id: string;
      path: string;
      principal_type: PrincipalType;
      principal: string;
      role: AclEntryEntity['role'];
      propagate: boolean;
      created_at: Date;
    }[] = await this.dataSource.query(
      `SELECT * FROM acl_entries WHERE ${clauses.join(' OR ')} ORDER BY path`,
      params,
    );
    return rows.map((r) => ({
      id: r.id,
      path: r.path,
      principalType: r.principal_type,
      principal: r.principal,
      role: r.role,
      propagate: r.propagate,
      createdAt: r.created_at,
    }));
  }

  /** VM uuids owned by each of `groups`. */
  async vmsOwnedBy(groups: readonly string[]): Promise<Map<string, Set<string>>> {
    const owned = new Map<string, Set<string>>(groups.map((g) => [g, new Set<string>()]));
    if (groups.length === 0) return owned;
    const rows = await this.dataSource
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
    const rows = await this.dataSource
      .getRepository(RemoteGroupEntryEntity)
      .find({ where: { groupId: In([...groups]) } });
    for (const row of rows) entries.get(row.groupId)?.set(row.remoteId, row.credentialId);
    return entries;
  }

  async isBootstrapped(): Promise<boolean> {
    return (
      (await this.dataSource
        .getRepository(SystemSettingEntity)
        .countBy({ key: BOOTSTRAP_SETTING })) > 0
    );
  }

  /**
   * The first administrator, in one transaction: the user (with its password hash), its Admin entry
   * on `/`, its bootstrap token, and the marker. Answers false (and stores nothing) when another
   * instance bootstrapped first.
   */
  async saveBootstrap(
    user: UserEntity,
    token: ApiTokenEntity,
    acl: AclEntryEntity,
  ): Promise<boolean> {
    return this.dataSource.transaction(async (tx) => {
      const inserted: unknown[] = await tx.query(
        'INSERT INTO system_settings (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING RETURNING key',
        [BOOTSTRAP_SETTING, JSON.stringify({ tokenId: token.id, user: user.id }), token.createdAt],
      );
      if (inserted.length === 0) return false;
      await tx.createQueryBuilder().insert().into(UserEntity).values(user).orIgnore().execute();
      await tx.getRepository(ApiTokenEntity).insert(token);
      await tx.createQueryBuilder().insert().into(AclEntryEntity).values(acl).orIgnore().execute();
      return true;
    });
  }
}
