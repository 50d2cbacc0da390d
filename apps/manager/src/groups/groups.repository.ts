import { Injectable } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { insertedUnlessTaken } from '../database/unique-violation';
import { GroupMemberEntity } from './group-member.entity';
import { GroupEntity } from './group.entity';
import { VmOwnershipEntity } from './vm-ownership.entity';

export type GroupPatch = Partial<Pick<GroupEntity, 'comment' | 'tenant' | 'requireTfa'>>;

export interface Membership {
  readonly groupId: string;
  readonly userId: string;
  /** `local` or the realm id that manages it. */
  readonly source: string;
}

export interface GroupWithCount extends GroupEntity {
  readonly memberCount: number;
}

/**
 * The owner of `groups`, `group_members` and `vm_ownership` (tenant groups own VMs): the only code
 * that writes them. Inserts answer false instead of failing when the key is taken.
 */
@Injectable()
export class GroupsRepository {
  constructor(private readonly db: UnitOfWork) {}

  async listGroups(): Promise<GroupWithCount[]> {
    const groups = await this.db.manager.getRepository(GroupEntity).find({ order: { id: 'ASC' } });
    const counts: { group_id: string; count: string }[] = await this.db.manager.query(
      'SELECT group_id, count(*) AS count FROM group_members GROUP BY group_id',
    );
    const byGroup = new Map(counts.map((c) => [c.group_id, Number(c.count)]));
    return groups.map((g) => ({ ...g, memberCount: byGroup.get(g.id) ?? 0 }));
  }

  findGroup(id: string): Promise<GroupEntity | null> {
    return this.db.manager.getRepository(GroupEntity).findOneBy({ id });
  }

  insertGroup(group: GroupEntity): Promise<boolean> {
    return insertedUnlessTaken(() => this.db.manager.getRepository(GroupEntity).insert(group));
  }

  async updateGroup(id: string, patch: GroupPatch): Promise<void> {
    if (Object.keys(patch).length > 0)
      await this.db.manager.getRepository(GroupEntity).update({ id }, patch);
  }

  /** Removes a group (memberships and VM ownership go by cascade). False when absent. */
  async deleteGroup(id: string): Promise<boolean> {
    const result = await this.db.manager.getRepository(GroupEntity).delete({ id });
    return (result.affected ?? 0) > 0;
  }

  membersOf(groupId: string): Promise<Membership[]> {
    return this.db.manager.getRepository(GroupMemberEntity).find({
      select: { groupId: true, userId: true, source: true },
      where: { groupId },
      order: { userId: 'ASC' },
    });
  }

  /** The ids among `ids` that are users (a read of the users' table). */
  async existingUsers(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows: { id: string }[] = await this.db.manager.query(
      'SELECT id FROM users WHERE id = ANY($1::varchar[])',
      [[...ids]],
    );
    return new Set(rows.map((r) => r.id));
  }

  /**
   * Makes `userIds` the group's locally managed members: local memberships of others are removed,
   * new ones added; memberships a realm manages stay as they are (and keep their source).
   */
  async replaceLocalMembers(groupId: string, userIds: readonly string[]): Promise<void> {
    await this.db.run(async () => {
      await this.db.manager.query(
        `DELETE FROM group_members WHERE group_id = $1 AND source = 'local' AND NOT (user_id = ANY($2::varchar[]))`,
        [groupId, [...userIds]],
      );
      if (userIds.length > 0) {
        await this.db.manager.query(
          `INSERT INTO group_members (group_id, user_id, source) SELECT $1, u, 'local' FROM unnest($2::varchar[]) AS u ON CONFLICT (group_id, user_id) DO NOTHING`,
          [groupId, [...userIds]],
        );
      }
    });
  }

  /**
   * Creates the groups that do not exist (existing ones keep their settings: an admin's tenant flag
   * or comment wins). Answers how many were created.
   */
  async createGroupsUnlessPresent(
    groups: readonly { id: string; tenant: boolean }[],
    comment: string,
    at: Date,
  ): Promise<number> {
    if (groups.length === 0) return 0;
    const created: unknown[] = await this.db.manager.query(
      `INSERT INTO groups (id, comment, tenant, created_at)
       SELECT g.id, $1, g.tenant, $2 FROM unnest($3::text[], $4::boolean[]) AS g(id, tenant)
       ON CONFLICT (id) DO NOTHING
       RETURNING 1`,
      [comment, at, groups.map((g) => g.id), groups.map((g) => g.tenant)],
    );
    return created.length;
  }

  /**
   * Removes the memberships of `userIds` sourced from `source` that are not in `keep`. Answers how
   * many were removed.
   */
  async removeSourcedMembershipsExcept(
    source: string,
    userIds: readonly string[],
    keep: readonly { userId: string; groupId: string }[],
  ): Promise<number> {
    if (userIds.length === 0) return 0;
    const removed: [unknown[], number] = await this.db.manager.query(
      `DELETE FROM group_members m WHERE m.source = $1 AND m.user_id = ANY($2::text[])
         AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS d(user_id, group_id) WHERE d.user_id = m.user_id AND d.group_id = m.group_id)`,
      [source, [...userIds], keep.map((p) => p.userId), keep.map((p) => p.groupId)],
    );
    return removed[1];
  }

  /** Adds memberships sourced from `source` (present ones stay as they are). Answers how many were added. */
  async addSourcedMemberships(
    source: string,
    pairs: readonly { userId: string; groupId: string }[],
  ): Promise<number> {
    if (pairs.length === 0) return 0;
    const added: unknown[] = await this.db.manager.query(
      `INSERT INTO group_members (group_id, user_id, source)
       SELECT d.group_id, d.user_id, $1 FROM unnest($2::text[], $3::text[]) AS d(user_id, group_id)
       ON CONFLICT (group_id, user_id) DO NOTHING
       RETURNING 1`,
      [source, pairs.map((p) => p.userId), pairs.map((p) => p.groupId)],
    );
    return added.length;
  }

  /** Removes every membership of `userIds` sourced from `source`. Answers how many were removed. */
  async removeSourcedMemberships(source: string, userIds: readonly string[]): Promise<number> {
    if (userIds.length === 0) return 0;
    const removed: [unknown[], number] = await this.db.manager.query(
      'DELETE FROM group_members WHERE source = $1 AND user_id = ANY($2::text[])',
      [source, [...userIds]],
    );
    return removed[1];
  }

  // --- VM ownership ----------------------------------------------------------------------------

  async countVmsOwnedBy(groupId: string): Promise<number> {
    return this.db.manager.getRepository(VmOwnershipEntity).countBy({ tenantGroup: groupId });
  }

  listVmOwners(group?: string): Promise<VmOwnershipEntity[]> {
    return this.db.manager.getRepository(VmOwnershipEntity).find({
      where: group === undefined ? {} : { tenantGroup: group },
      order: { tenantGroup: 'ASC', vmUuid: 'ASC' },
    });
  }

  /** Gives the VM to the group (taking it from another one); answers what is stored. */
  async setVmOwner(vmUuid: string, tenantGroup: string, at: Date): Promise<VmOwnershipEntity> {
    const rows: { vm_uuid: string; tenant_group: string; created_at: Date }[] =
      await this.db.manager.query(
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
    const result = await this.db.manager.getRepository(VmOwnershipEntity).delete({ vmUuid });
    return (result.affected ?? 0) > 0;
  }
}
