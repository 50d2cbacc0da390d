import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, In, QueryFailedError, type EntityManager } from 'typeorm';
import { AclEntryEntity, type PrincipalType } from '../acl/acl-entry.entity';
import { ApiTokenEntity, type TokenOwnerType } from '../tokens/api-token.entity';
import { GroupMemberEntity } from '../groups/group-member.entity';
import { GroupEntity } from '../groups/group.entity';
import { RealmEntity } from '../realms/realm.entity';
import { SessionEntity } from '../sessions/session.entity';
import { UserEntity } from '../users/user.entity';
import { VmOwnershipEntity } from '../acl/vm-ownership.entity';

export type UserPatch = Partial<
  Pick<UserEntity, 'displayName' | 'email' | 'enabled' | 'requireTfa'>
>;
export type GroupPatch = Partial<Pick<GroupEntity, 'comment' | 'tenant' | 'requireTfa'>>;
export type TokenPatch = Partial<Pick<ApiTokenEntity, 'comment' | 'expiresAt' | 'limited'>>;

export interface Membership {
  readonly groupId: string;
  readonly userId: string;
  /** `local` or the realm id that manages it. */
  readonly source: string;
}

export interface GroupWithCount extends GroupEntity {
  readonly memberCount: number;
}

/** Which sessions of a user a change ends: all of them (and any a racing login inserts), or all but the caller's. */
export type EndSessions = { readonly all: Date } | { readonly except: string };

export interface AclFilter {
  readonly path?: string;
  readonly principalType?: PrincipalType;
  readonly principal?: string;
}

/**
 * The database side of administering identity and access: users, groups and their members, ACL
 * entries, API tokens and VM ownership. Inserts answer false instead of failing when the key is
 * taken; the services decide what that means.
 */
@Injectable()
export class AccessAdminRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  // --- realms and users ------------------------------------------------------------------------

  findRealm(id: string): Promise<RealmEntity | null> {
    return this.dataSource.getRepository(RealmEntity).findOneBy({ id });
  }

  listUsers(realm?: string): Promise<UserEntity[]> {
    return this.dataSource
      .getRepository(UserEntity)
      .find({ where: realm === undefined ? {} : { realmId: realm }, order: { id: 'ASC' } });
  }

  findUser(id: string): Promise<UserEntity | null> {
    return this.dataSource.getRepository(UserEntity).findOneBy({ id });
  }

  /** The ids among `ids` that are users. */
  async existingUsers(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows = await this.dataSource
      .getRepository(UserEntity)
      .find({ select: { id: true }, where: { id: In([...ids]) } });
    return new Set(rows.map((r) => r.id));
  }

  /** False when the id is taken. */
  insertUser(user: UserEntity): Promise<boolean> {
    return insertedUnlessTaken(() => this.dataSource.getRepository(UserEntity).insert(user));
  }

  /** Changes a user; with `endSessionsAt`, also ends every session of the user (one transaction). */
  async updateUser(id: string, patch: UserPatch, endSessionsAt?: Date): Promise<void> {
    await this.dataSource.transaction(async (tx) => {
      if (Object.keys(patch).length > 0) await tx.getRepository(UserEntity).update({ id }, patch);
      if (endSessionsAt) await endSessions(tx, id, { all: endSessionsAt });
    });
  }

  /** A new password hash (the lock-out counters reset), and the sessions it ends. */
  async setPassword(id: string, passwordHash: string, at: Date, end: EndSessions): Promise<void> {
    await this.dataSource.transaction(async (tx) => {
      await tx
        .getRepository(UserEntity)
        .update(
          { id },
          { passwordHash, passwordChangedAt: at, failedLogins: 0, lockedUntil: null },
        );
      await endSessions(tx, id, end);
    });
  }

  /**
   * Removes a user with everything that names it without a foreign key: its ACL entries, its tokens
   * and their ACL entries (sessions, memberships and second factors go by cascade). False when absent.
   */
  async deleteUser(id: string): Promise<boolean> {
    return this.dataSource.transaction(async (tx) => {
      await deletePrincipalGrants(tx, 'user', id);
      const result = await tx.getRepository(UserEntity).delete({ id });
      return (result.affected ?? 0) > 0;
    });
  }

  // --- groups and members ----------------------------------------------------------------------

  async listGroups(): Promise<GroupWithCount[]> {
    const groups = await this.dataSource.getRepository(GroupEntity).find({ order: { id: 'ASC' } });
    const counts: { group_id: string; count: string }[] = await this.dataSource.query(
      'SELECT group_id, count(*) AS count FROM group_members GROUP BY group_id',
    );
    const byGroup = new Map(counts.map((c) => [c.group_id, Number(c.count)]));
    return groups.map((g) => ({ ...g, memberCount: byGroup.get(g.id) ?? 0 }));
  }

  findGroup(id: string): Promise<GroupEntity | null> {
    return this.dataSource.getRepository(GroupEntity).findOneBy({ id });
  }

  insertGroup(group: GroupEntity): Promise<boolean> {
    return insertedUnlessTaken(() => this.dataSource.getRepository(GroupEntity).insert(group));
  }

  async updateGroup(id: string, patch: GroupPatch): Promise<void> {
    if (Object.keys(patch).length > 0)
      await this.dataSource.getRepository(GroupEntity).update({ id }, patch);
  }

  /**
   * Removes a group with its ACL entries, its tokens and their ACL entries (memberships and VM
   * ownership go by cascade). False when absent.
   */
  async deleteGroup(id: string): Promise<boolean> {
    return this.dataSource.transaction(async (tx) => {
      await deletePrincipalGrants(tx, 'group', id);
      const result = await tx.getRepository(GroupEntity).delete({ id });
      return (result.affected ?? 0) > 0;
    });
  }

  membersOf(groupId: string): Promise<Membership[]> {
    return this.dataSource.getRepository(GroupMemberEntity).find({
      select: { groupId: true, userId: true, source: true },
      where: { groupId },
      order: { userId: 'ASC' },
    });
  }

  /** The memberships of several users in one query. */
  async membershipsOf(userIds: readonly string[]): Promise<Membership[]> {
    if (userIds.length === 0) return [];
    return this.dataSource.getRepository(GroupMemberEntity).find({
      select: { groupId: true, userId: true, source: true },
      where: { userId: In([...userIds]) },
      order: { groupId: 'ASC' },
    });
  }

  /**
   * Makes `userIds` the group's locally managed members: local memberships of others are removed,
   * new ones added; memberships a realm manages stay as they are (and keep their source).
   */
  async replaceLocalMembers(groupId: string, userIds: readonly string[]): Promise<void> {
    await this.dataSource.transaction(async (tx) => {
      await tx.query(
        `DELETE FROM group_members WHERE group_id = $1 AND source = 'local' AND NOT (user_id = ANY($2::varchar[]))`,
        [groupId, [...userIds]],
      );
      if (userIds.length > 0) {
        await tx.query(
          `INSERT INTO group_members (group_id, user_id, source) SELECT $1, u, 'local' FROM unnest($2::varchar[]) AS u ON CONFLICT (group_id, user_id) DO NOTHING`,
          [groupId, [...userIds]],
        );
      }
    });
  }

  async countVmsOwnedBy(groupId: string): Promise<number> {
    return this.dataSource.getRepository(VmOwnershipEntity).countBy({ tenantGroup: groupId });
  }

  // --- ACL entries -----------------------------------------------------------------------------

  listAcl(filter: AclFilter): Promise<AclEntryEntity[]> {
    const where: Partial<Pick<AclEntryEntity, 'path' | 'principalType' | 'principal'>> = {};
    if (filter.path !== undefined) where.path = filter.path;
    if (filter.principalType !== undefined) where.principalType = filter.principalType;
    if (filter.principal !== undefined) where.principal = filter.principal;
    return this.dataSource
      .getRepository(AclEntryEntity)
      .find({ where, order: { path: 'ASC', principalType: 'ASC', principal: 'ASC' } });
  }

  /** Inserts the entry, or changes role and propagation of the one on the same path and principal; answers what is stored. */
  async upsertAcl(entry: AclEntryEntity): Promise<AclEntryEntity> {
    const rows: AclRow[] = await this.dataSource.query(
      `INSERT INTO acl_entries (id, path, principal_type, principal, role, propagate, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (path, principal_type, principal) DO UPDATE SET role = EXCLUDED.role, propagate = EXCLUDED.propagate
       RETURNING id, path, principal_type, principal, role, propagate, created_at`,
      [
        entry.id,
        entry.path,
        entry.principalType,
        entry.principal,
        entry.role,
        entry.propagate,
        entry.createdAt,
      ],
    );
    return fromAclRow(rows[0]);
  }

  async deleteAcl(path: string, principalType: PrincipalType, principal: string): Promise<boolean> {
    const result = await this.dataSource
      .getRepository(AclEntryEntity)
      .delete({ path, principalType, principal });
    return (result.affected ?? 0) > 0;
  }

  /** True when the principal an ACL entry would name exists (a token: revoked ones too). */
  async principalExists(type: PrincipalType, id: string): Promise<boolean> {
    switch (type) {
      case 'user':
        return this.dataSource.getRepository(UserEntity).existsBy({ id });
      case 'group':
        return this.dataSource.getRepository(GroupEntity).existsBy({ id });
      case 'token':
        return this.dataSource.getRepository(ApiTokenEntity).existsBy({ id });
    }
  }

  // --- API tokens ------------------------------------------------------------------------------

  listTokens(
    filter: { ownerType?: TokenOwnerType; owner?: string } = {},
  ): Promise<ApiTokenEntity[]> {
    const where: Partial<Pick<ApiTokenEntity, 'ownerType' | 'principal'>> = {};
    if (filter.ownerType !== undefined) where.ownerType = filter.ownerType;
    if (filter.owner !== undefined) where.principal = filter.owner;
    return this.dataSource.getRepository(ApiTokenEntity).find({
      where,
      order: { ownerType: 'ASC', principal: 'ASC', name: 'ASC' },
    });
  }

  findToken(id: string): Promise<ApiTokenEntity | null> {
    return this.dataSource.getRepository(ApiTokenEntity).findOneBy({ id });
  }

  /** False when the owner already has a token of that name (or, astronomically unlikely, the id is taken). */
  /**
   * Inserts the token unless its name is taken ('taken') or its owner already holds `cap` tokens
   * that are not revoked ('full'); the count and the insert hold the owner's lock, so parallel
   * creations cannot exceed the cap.
   */
  insertToken(token: ApiTokenEntity, cap: number): Promise<'inserted' | 'taken' | 'full'> {
    return this.dataSource.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [
        `api-tokens:${token.ownerType}:${token.principal}`,
      ]);
      const [{ count }]: { count: number }[] = await tx.query(
        'SELECT count(*)::int AS count FROM api_tokens WHERE owner_type = $1 AND principal = $2 AND revoked_at IS NULL',
        [token.ownerType, token.principal],
      );
      if (count >= cap) return 'full';
      const taken = await tx.query(
        'SELECT 1 FROM api_tokens WHERE owner_type = $1 AND principal = $2 AND name = $3',
        [token.ownerType, token.principal, token.name],
      );
      if (taken.length > 0) return 'taken';
      await tx.getRepository(ApiTokenEntity).insert(token);
      return 'inserted';
    });
  }

  async updateToken(id: string, patch: TokenPatch): Promise<void> {
    if (Object.keys(patch).length > 0)
      await this.dataSource.getRepository(ApiTokenEntity).update({ id }, patch);
  }

  /** Sets revoked_at unless it is already set; true when this call revoked it. */
  async revokeToken(id: string, at: Date): Promise<boolean> {
    const result: [unknown[], number] = await this.dataSource.query(
      'UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL',
      [id, at],
    );
    return result[1] === 1;
  }

  // --- VM ownership ----------------------------------------------------------------------------

  listVmOwners(group?: string): Promise<VmOwnershipEntity[]> {
    return this.dataSource.getRepository(VmOwnershipEntity).find({
      where: group === undefined ? {} : { tenantGroup: group },
      order: { tenantGroup: 'ASC', vmUuid: 'ASC' },
    });
  }

  /** Gives the VM to the group (taking it from another one); answers what is stored. */
  async setVmOwner(vmUuid: string, tenantGroup: string, at: Date): Promise<VmOwnershipEntity> {
    const rows: { vm_uuid: string; tenant_group: string; created_at: Date }[] =
      await this.dataSource.query(
        `INSERT INTO vm_ownership (vm_uuid, tenant_group, created_at) VALUES ($1, $2, $3)
       ON CONFLICT (vm_uuid) DO UPDATE SET tenant_group = EXCLUDED.tenant_group,
         created_at = CASE WHEN vm_ownership.tenant_group = EXCLUDED.tenant_group THEN vm_ownership.created_at ELSE EXCLUDED.created_at END
       RETURNING vm_uuid, tenant_group, created_at`,
        [vmUuid, tenantGroup, at],
      );
    return {
      vmUuid: rows[0].vm_uuid,
      tenantGroup: rows[0].tenant_group,
      createdAt: rows[0].created_at,
    };
  }

  async deleteVmOwner(vmUuid: string): Promise<boolean> {
    const result = await this.dataSource.getRepository(VmOwnershipEntity).delete({ vmUuid });
    return (result.affected ?? 0) > 0;
  }
}

interface AclRow {
  id: string;
  path: string;
  principal_type: PrincipalType;
  principal: string;
  role: AclEntryEntity['role'];
  propagate: boolean;
  created_at: Date;
}

function fromAclRow(row: AclRow): AclEntryEntity {
  return {
    id: row.id,
    path: row.path,
    principalType: row.principal_type,
    principal: row.principal,
    role: row.role,
    propagate: row.propagate,
    createdAt: row.created_at,
  };
}

async function endSessions(tx: EntityManager, userId: string, end: EndSessions): Promise<void> {
  if ('all' in end) {
    await tx.getRepository(UserEntity).update({ id: userId }, { sessionsValidAfter: end.all });
    await tx.getRepository(SessionEntity).delete({ userId });
  } else {
    await tx.query('DELETE FROM sessions WHERE user_id = $1 AND id <> $2', [userId, end.except]);
  }
}

/** The ACL entries of a user or group, its tokens and their ACL entries. */
async function deletePrincipalGrants(
  tx: EntityManager,
  type: 'user' | 'group',
  id: string,
): Promise<void> {
  await tx.query(
    `DELETE FROM acl_entries WHERE principal_type = 'token' AND principal IN (SELECT id FROM api_tokens WHERE owner_type = $1 AND principal = $2)`,
    [type, id],
  );
  await tx.query('DELETE FROM api_tokens WHERE owner_type = $1 AND principal = $2', [type, id]);
  await tx.query('DELETE FROM acl_entries WHERE principal_type = $1 AND principal = $2', [
    type,
    id,
  ]);
}

/** Runs an insert; false instead of an error when a unique key is taken. */
export async function insertedUnlessTaken(insert: () => Promise<unknown>): Promise<boolean> {
  try {
    await insert();
    return true;
  } catch (error) {
    if (
      error instanceof QueryFailedError &&
      (error.driverError as { code?: string }).code === '23505'
    )
      return false;
    throw error;
  }
}
