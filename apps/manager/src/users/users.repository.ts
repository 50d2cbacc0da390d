import { Injectable } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { insertedUnlessTaken } from '../database/unique-violation';
import { RealmEntity } from '../realms/realm.entity';
import { UserEntity } from './user.entity';

export type UserPatch = Partial<
  Pick<UserEntity, 'displayName' | 'email' | 'enabled' | 'requireTfa'>
>;

export interface Membership {
  readonly groupId: string;
  readonly userId: string;
  /** `local` or the realm id that manages it. */
  readonly source: string;
}

/** The owner of `users`: the only code that writes them. */
@Injectable()
export class UsersRepository {
  constructor(private readonly db: UnitOfWork) {}

  findRealm(id: string): Promise<RealmEntity | null> {
    return this.db.manager.getRepository(RealmEntity).findOneBy({ id });
  }

  listUsers(realm?: string): Promise<UserEntity[]> {
    return this.db.manager
      .getRepository(UserEntity)
      .find({ where: realm === undefined ? {} : { realmId: realm }, order: { id: 'ASC' } });
  }

  findUser(id: string): Promise<UserEntity | null> {
    return this.db.manager.getRepository(UserEntity).findOneBy({ id });
  }

  /** The memberships of several users in one query (a read of the groups' table). */
  async membershipsOf(userIds: readonly string[]): Promise<Membership[]> {
    if (userIds.length === 0) return [];
    const rows: { group_id: string; user_id: string; source: string }[] =
      await this.db.manager.query(
        'SELECT group_id, user_id, source FROM group_members WHERE user_id = ANY($1::varchar[]) ORDER BY group_id',
        [[...userIds]],
      );
    return rows.map((r) => ({ groupId: r.group_id, userId: r.user_id, source: r.source }));
  }

  /** False when the id is taken. */
  insertUser(user: UserEntity): Promise<boolean> {
    return insertedUnlessTaken(() => this.db.manager.getRepository(UserEntity).insert(user));
  }

  /** Inserts the user unless the id is taken (the first start's administrator). */
  async insertUnlessPresent(user: UserEntity): Promise<void> {
    await this.db.manager
      .createQueryBuilder()
      .insert()
      .into(UserEntity)
      .values(user)
      .orIgnore()
      .execute();
  }

  async updateUser(id: string, patch: UserPatch): Promise<void> {
    if (Object.keys(patch).length > 0)
      await this.db.manager.getRepository(UserEntity).update({ id }, patch);
  }

  /** A new password hash; the lock-out counters reset. */
  async setPassword(id: string, passwordHash: string, at: Date): Promise<void> {
    await this.db.manager
      .getRepository(UserEntity)
      .update({ id }, { passwordHash, passwordChangedAt: at, failedLogins: 0, lockedUntil: null });
  }

  /** Sessions of the user created before `at` are void, even one a racing login still inserts. */
  async voidSessionsBefore(id: string, at: Date): Promise<void> {
    await this.db.manager.getRepository(UserEntity).update({ id }, { sessionsValidAfter: at });
  }

  /** Removes a user (sessions, memberships and second factors go by cascade). False when absent. */
  async deleteUser(id: string): Promise<boolean> {
    const result = await this.db.manager.getRepository(UserEntity).delete({ id });
    return (result.affected ?? 0) > 0;
  }
}
