import { Injectable } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { GroupsService } from '../groups/groups.service';
import type { DirectoryUser } from '../users/users.repository';
import { UsersService } from '../users/users.service';
import type { MappedGroup } from './group-mapping';
import { RealmsRepository } from './realms.repository';

/** A user as a realm's directory or identity provider describes it, ready to be stored. */
export interface IdentityWrite extends DirectoryUser {
  /** Exactly the manager groups this realm says the user is in: its other memberships sourced from the realm go. */
  readonly groups: readonly MappedGroup[];
}

export interface IdentityBatch {
  readonly realmId: string;
  readonly at: Date;
  readonly users: readonly IdentityWrite[];
  /**
   * A full sync: users of the realm the directory no longer lists. Those in `disable` are disabled
   * (and marked as disabled by the sync: external id null); every one in `all` loses the
   * memberships sourced from the realm. The realm's last sync time is set.
   */
  readonly sync?: { readonly disable: readonly string[]; readonly all: readonly string[] };
}

export interface IdentityBatchResult {
  readonly usersCreated: number;
  readonly usersDisabled: number;
  readonly groupsCreated: number;
  readonly membershipsAdded: number;
  readonly membershipsRemoved: number;
}

/**
 * The directory sync's writes: what a realm says about its users stored through the owners of the
 * tables (users/ for users, groups/ for groups and memberships, realms/ for the sync's time), in
 * one transaction. Syncs of one realm are serialised across manager instances by an advisory lock.
 */
@Injectable()
export class RealmSyncService {
  constructor(
    private readonly realms: RealmsRepository,
    private readonly users: UsersService,
    private readonly groups: GroupsService,
    private readonly db: UnitOfWork,
  ) {}

  /**
   * Users created or updated (display name, email, external id, synced at; `enabled` only as
   * `reenable` says), missing manager groups created, each user's realm-sourced memberships
   * replaced (memberships an admin added, source `local`, stay), and for a sync the vanished users
   * handled and the realm's sync time set.
   */
  apply(batch: IdentityBatch): Promise<IdentityBatchResult> {
    return this.db.run(async () => {
      if (batch.sync) await this.realms.lockSync(batch.realmId);
      const users = await this.users.applyDirectoryUsers(
        batch.realmId,
        batch.at,
        batch.users,
        batch.sync?.disable ?? [],
      );
      const memberships = await this.groups.applyDirectoryMemberships(
        batch.realmId,
        batch.at,
        batch.users.map((u) => ({ userId: u.id, groups: u.groups })),
        batch.sync?.all ?? [],
      );
      if (batch.sync) await this.realms.recordSyncSuccess(batch.realmId, batch.at);
      return {
        usersCreated: users.created,
        usersDisabled: users.disabled,
        groupsCreated: memberships.groupsCreated,
        membershipsAdded: memberships.added,
        membershipsRemoved: memberships.removed,
      };
    });
  }
}
