import { Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service';
import { AclService } from '../acl/acl.service';
import { CallerCache } from '../authz/caller-cache';
import { ClockRepository } from '../common/clock.repository';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { TokensService } from '../tokens/tokens.service';
import type { GroupEntity } from './group.entity';
import type { CreateGroupInput, GroupSummaryView, GroupView, UpdateGroupInput } from './groups.dto';
import { GroupsRepository, type GroupPatch } from './groups.repository';

/**
 * Manager groups and their members. Members come from administrators (`local`) or from a realm's
 * directory or claims; administrators replace only the former. Removing a group removes its ACL
 * entries and its tokens with it, so that a new group of the same name inherits nothing.
 */
@Injectable()
export class GroupsService {
  constructor(
    private readonly repository: GroupsRepository,
    private readonly tokens: TokensService,
    private readonly acl: AclService,
    private readonly db: UnitOfWork,
    private readonly callers: CallerCache,
    private readonly audit: AuditService,
    private readonly clock: ClockRepository,
  ) {}

  async list(): Promise<{ items: GroupSummaryView[] }> {
    const groups = await this.repository.listGroups();
    return { items: groups.map((g) => ({ ...fields(g), memberCount: g.memberCount })) };
  }

  async get(id: string): Promise<GroupView> {
    const group = await this.require(id);
    const members = await this.repository.membersOf(id);
    return {
      ...fields(group),
      members: members.map((m) => ({ user: m.userId, source: m.source })),
    };
  }

  async create(input: CreateGroupInput): Promise<GroupView> {
    const group: GroupEntity = {
      id: input.id,
      comment: input.comment,
      tenant: input.tenant,
      requireTfa: input.requireTfa,
      createdAt: this.clock.now(),
    };
    if (!(await this.repository.insertGroup(group)))
      throw new DomainError(ErrorCode.Conflict, `group ${input.id} already exists`);
    this.callers.invalidate();
    this.audit.note({ group: input.id, tenant: input.tenant, requireTfa: input.requireTfa });
    return { ...fields(group), members: [] };
  }

  /** A tenant group that owns VMs stays one: otherwise its grants would suddenly hold on every VM. */
  async update(id: string, input: UpdateGroupInput): Promise<GroupView> {
    const group = await this.require(id);
    if (input.tenant === false && group.tenant) {
      const owned = await this.repository.countVmsOwnedBy(id);
      if (owned > 0) {
        throw new DomainError(
          ErrorCode.Conflict,
          `group ${id} owns ${owned} VM(s): give them to another tenant group or clear their ownership before it stops being a tenant group`,
        );
      }
    }
    const patch: GroupPatch = {};
    if (input.comment !== undefined) patch.comment = input.comment;
    if (input.tenant !== undefined) patch.tenant = input.tenant;
    if (input.requireTfa !== undefined) patch.requireTfa = input.requireTfa;
    await this.repository.updateGroup(id, patch);
    this.callers.invalidate();
    this.audit.note({ group: id, changed: Object.keys(patch) });
    return this.get(id);
  }

  async delete(id: string): Promise<void> {
    const deleted = await this.db.run(async () => {
      await this.tokens.removeOwnedBy('group', [id]);
      await this.acl.removeGrantsOf('group', [id]);
      return this.repository.deleteGroup(id);
    });
    if (!deleted) throw DomainError.notFound(`group ${id}`);
    this.callers.invalidate();
    this.audit.note({ group: id });
  }

  /** Replaces the locally managed members; every user must exist. */
  async setMembers(id: string, users: readonly string[]): Promise<GroupView> {
    await this.require(id);
    const existing = await this.repository.existingUsers(users);
    const missing = users.filter((u) => !existing.has(u));
    if (missing.length > 0)
      throw DomainError.notFound(
        `user${missing.length > 1 ? 's' : ''} ${missing.slice(0, 10).join(', ')}`,
      );
    await this.repository.replaceLocalMembers(id, users);
    this.callers.invalidate();
    this.audit.note({ group: id, localMembers: users.length });
    return this.get(id);
  }

  /**
   * What a realm's directory says about its users' groups (the directory sync and directory
   * logins): missing groups created (`tenant` as mapped; existing groups keep their settings),
   * each listed user's memberships sourced from the realm made exactly its `groups` (memberships an
   * administrator added stay), and the `vanished` users' realm-sourced memberships removed. In the
   * caller's transaction, if any.
   */
  async applyDirectoryMemberships(
    realmId: string,
    at: Date,
    members: readonly { userId: string; groups: readonly { id: string; tenant: boolean }[] }[],
    vanished: readonly string[],
  ): Promise<{ groupsCreated: number; added: number; removed: number }> {
    const wanted = new Map<string, boolean>();
    for (const member of members)
      for (const group of member.groups)
        wanted.set(group.id, wanted.get(group.id) === true || group.tenant);
    // One order for every transaction, so that two creating the same new groups cannot deadlock.
    const groups = [...wanted.keys()].sort().map((id) => ({ id, tenant: wanted.get(id) === true }));
    const pairs = members.flatMap((m) =>
      m.groups.map((g) => ({ userId: m.userId, groupId: g.id })),
    );
    return this.db.run(async () => {
      const groupsCreated = await this.repository.createGroupsUnlessPresent(
        groups,
        `created for realm ${realmId}`,
        at,
      );
      let removed = await this.repository.removeSourcedMembershipsExcept(
        realmId,
        members.map((m) => m.userId),
        pairs,
      );
      const added = await this.repository.addSourcedMemberships(realmId, pairs);
      removed += await this.repository.removeSourcedMemberships(realmId, vanished);
      return { groupsCreated, added, removed };
    });
  }

  private async require(id: string): Promise<GroupEntity> {
    const group = await this.repository.findGroup(id);
    if (!group) throw DomainError.notFound(`group ${id}`);
    return group;
  }
}

function fields(group: GroupEntity) {
  return {
    id: group.id,
    comment: group.comment,
    tenant: group.tenant,
    requireTfa: group.requireTfa,
    createdAt: group.createdAt.toISOString(),
  };
}
