import { Injectable } from '@nestjs/common';
import { type EntityManager } from 'typeorm';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { isUniqueViolation } from '../database/unique-violation';
import type { MappedGroup } from './group-mapping';
import { RealmEntity, type GroupMapping, type RealmType } from './realm.entity';
import { UserEntity } from '../users/user.entity';

/** A new realm row (the secret already sealed). */
export interface NewRealm {
  readonly id: string;
  readonly type: RealmType;
  readonly comment: string;
  readonly settings: Record<string, unknown>;
  readonly sealedSecret: string | null;
  readonly requireTfa: boolean;
  readonly groupMappings: readonly GroupMapping[];
  readonly syncIntervalMinutes: number | null;
  readonly createdAt: Date;
}

export type RealmPatch = Partial<Omit<NewRealm, 'id' | 'createdAt'>>;

/** A user as a realm's directory or identity provider describes it, ready to be stored. */
export interface IdentityWrite {
  /** `username@realm`. */
  readonly id: string;
  readonly username: string;
  readonly displayName: string | null;
  readonly email: string | null;
  readonly externalId: string;
  /** Enable the user again if it is disabled *and* was disabled by a sync (seen by the directory once, external id now null). */
  readonly reenable: boolean;
  /** Exactly the manager groups this realm says the user is in: its other memberships sourced from the realm go. */
  readonly groups: readonly MappedGroup[];
}

export interface IdentityBatch {
  readonly realmId: string;
  readonly at: Date;
  readonly users: readonly IdentityWrite[];
  /**
   * A full sync: users of the realm the directory no longer lists. Those in `disable` are disabled
   * (and marked as disabled by the sync: external id null) and their sessions end; every one in
   * `all` loses the memberships sourced from the realm. The realm's last sync time is set.
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

/** Realms, and the users, groups and memberships their directories and identity providers manage. */
@Injectable()
export class RealmsRepository {
  constructor(private readonly db: UnitOfWork) {}

  list(): Promise<RealmEntity[]> {
    return this.db.manager.getRepository(RealmEntity).find({ order: { id: 'ASC' } });
  }

  find(id: string): Promise<RealmEntity | null> {
    return this.db.manager.getRepository(RealmEntity).findOneBy({ id });
  }

  /** LDAP realms with a sync interval (the scheduler's candidates). */
  scheduledRealms(): Promise<RealmEntity[]> {
    return this.db.manager
      .getRepository(RealmEntity)
      .createQueryBuilder('r')
      .where('r.type = :type', { type: 'ldap' })
      .andWhere('r.sync_interval_minutes IS NOT NULL')
      .orderBy('r.id', 'ASC')
      .getMany();
  }

  /** Stores a new realm; 409 when the id is taken. */
  async create(realm: NewRealm): Promise<RealmEntity> {
    try {
      await this.db.manager.getRepository(RealmEntity).insert({
        ...realm,
        groupMappings: [...realm.groupMappings],
        lastSyncAt: null,
        lastSyncError: null,
      } as QueryDeepPartialEntity<RealmEntity>);
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new DomainError(ErrorCode.Conflict, `realm ${realm.id} already exists`);
      }
      throw error;
    }
    return (await this.find(realm.id))!;
  }

  /** Changes a realm; null when it does not exist. */
  async update(id: string, patch: RealmPatch): Promise<RealmEntity | null> {
    const values = Object.fromEntries(
      Object.entries(patch).filter(([, value]) => value !== undefined),
    ) as QueryDeepPartialEntity<RealmEntity>;
    if (Object.keys(values).length > 0)
      await this.db.manager.getRepository(RealmEntity).update({ id }, values);
    return this.find(id);
  }

  /**
   * Removes a realm with its users (their sessions, second factors and memberships go with them by
   * foreign key; their tokens and grants the caller removes through their owners first). False
   * when the realm did not exist.
   */
  async delete(id: string): Promise<boolean> {
    const result: [unknown[], number] = await this.db.manager.query(
      'DELETE FROM realms WHERE id = $1',
      [id],
    );
    return result[1] > 0;
  }

  findUser(id: string): Promise<UserEntity | null> {
    return this.db.manager.getRepository(UserEntity).findOneBy({ id });
  }

  usersOfRealm(realmId: string): Promise<UserEntity[]> {
    return this.db.manager
      .getRepository(UserEntity)
      .find({ where: { realmId }, order: { id: 'ASC' } });
  }

  /**
   * Stores what a realm says about its users, in one transaction: users created or updated
   * (display name, email, external id, synced at; `enabled` only as `reenable` says), missing
   * manager groups created, each user's realm-sourced memberships replaced (memberships an admin
   * added, source `local`, stay), and for a sync the vanished users handled. Syncs of one realm are
   * serialised across manager instances by an advisory lock.
   */
  async applyIdentities(batch: IdentityBatch): Promise<IdentityBatchResult> {
    return this.db.run(async () => {
      const tx = this.db.manager;
      if (batch.sync)
        await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [
          `debvisor-realm-sync:${batch.realmId}`,
        ]);
      const ids = batch.users.map((u) => u.id);

      const reenable = batch.users.filter((u) => u.reenable).map((u) => u.id);
      if (reenable.length > 0) {
        await tx.query(
          'UPDATE users SET enabled = true WHERE realm_id = $1 AND id = ANY($2::text[]) AND NOT enabled AND external_id IS NULL AND synced_at IS NOT NULL',
          [batch.realmId, reenable],
        );
      }

      let usersCreated = 0;
      if (batch.users.length > 0) {
        const rows: { inserted: boolean }[] = await tx.query(
          `INSERT INTO users (id, realm_id, username, display_name, email, external_id, synced_at, created_at)
           SELECT u.id, $1, u.username, u.display_name, u.email, u.external_id, $2, $2
             FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) AS u(id, username, display_name, email, external_id)
           ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name, email = EXCLUDED.email,
             external_id = EXCLUDED.external_id, synced_at = EXCLUDED.synced_at
           RETURNING (xmax = 0) AS inserted`,
          [
            batch.realmId,
            batch.at,
            ids,
            batch.users.map((u) => u.username),
            batch.users.map((u) => u.displayName),
            batch.users.map((u) => u.email),
            batch.users.map((u) => u.externalId),
          ],
        );
        usersCreated = rows.filter((r) => r.inserted).length;
      }

      const groupsCreated = await this.createMissingGroups(tx, batch);

      const pairs = batch.users.flatMap((u) => u.groups.map((g) => ({ user: u.id, group: g.id })));
      let membershipsRemoved = 0;
      if (ids.length > 0) {
        const removed: [unknown[], number] = await tx.query(
          `DELETE FROM group_members m WHERE m.source = $1 AND m.user_id = ANY($2::text[])
             AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS d(user_id, group_id) WHERE d.user_id = m.user_id AND d.group_id = m.group_id)`,
          [batch.realmId, ids, pairs.map((p) => p.user), pairs.map((p) => p.group)],
        );
        membershipsRemoved += removed[1];
      }
      let membershipsAdded = 0;
      if (pairs.length > 0) {
        const added: unknown[] = await tx.query(
          `INSERT INTO group_members (group_id, user_id, source)
           SELECT d.group_id, d.user_id, $1 FROM unnest($2::text[], $3::text[]) AS d(user_id, group_id)
           ON CONFLICT (group_id, user_id) DO NOTHING
           RETURNING 1`,
          [batch.realmId, pairs.map((p) => p.user), pairs.map((p) => p.group)],
        );
        membershipsAdded = added.length;
      }

      let usersDisabled = 0;
      if (batch.sync) {
        if (batch.sync.disable.length > 0) {
          const disabled: [{ id: string }[], number] = await tx.query(
            `UPDATE users SET enabled = false, external_id = NULL
              WHERE realm_id = $1 AND id = ANY($2::text[]) AND enabled RETURNING id`,
            [batch.realmId, batch.sync.disable],
          );
          usersDisabled = disabled[1];
        }
        if (batch.sync.all.length > 0) {
          const removed: [unknown[], number] = await tx.query(
            'DELETE FROM group_members WHERE source = $1 AND user_id = ANY($2::text[])',
            [batch.realmId, batch.sync.all],
          );
          membershipsRemoved += removed[1];
        }
        await tx
          .getRepository(RealmEntity)
          .update({ id: batch.realmId }, { lastSyncAt: batch.at, lastSyncError: null });
      }
      return { usersCreated, usersDisabled, groupsCreated, membershipsAdded, membershipsRemoved };
    });
  }

  /** A failed sync: its reason for the realm's answer (the last successful sync time stays). */
  async recordSyncFailure(realmId: string, message: string): Promise<void> {
    await this.db.manager
      .getRepository(RealmEntity)
      .update({ id: realmId }, { lastSyncError: message });
  }

  private async createMissingGroups(tx: EntityManager, batch: IdentityBatch): Promise<number> {
    const wanted = new Map<string, boolean>();
    for (const user of batch.users)
      for (const group of user.groups)
        wanted.set(group.id, wanted.get(group.id) === true || group.tenant);
    if (wanted.size === 0) return 0;
    // One order for every transaction, so that two creating the same new groups cannot deadlock.
    const ids = [...wanted.keys()].sort();
    // Existing groups keep their settings (an admin's tenant flag or comment wins over the mapping).
    const created: unknown[] = await tx.query(
      `INSERT INTO groups (id, comment, tenant, created_at)
       SELECT g.id, $1, g.tenant, $2 FROM unnest($3::text[], $4::boolean[]) AS g(id, tenant)
       ON CONFLICT (id) DO NOTHING
       RETURNING 1`,
      [
        `created for realm ${batch.realmId}`,
        batch.at,
        ids,
        ids.map((id) => wanted.get(id) === true),
      ],
    );
    return created.length;
  }
}
