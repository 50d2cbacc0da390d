import { Injectable } from '@nestjs/common';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { isUniqueViolation } from '../database/unique-violation';
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

/** Realms (the only writer of `realms`), and the reads of their users a realm needs. */
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
   * Serialises the syncs of one realm across manager instances until the open transaction ends (an
   * advisory lock). Only inside UnitOfWork.run.
   */
  async lockSync(realmId: string): Promise<void> {
    await this.db.manager.query('SELECT pg_advisory_xact_lock(hashtext($1))', [
      `debvisor-realm-sync:${realmId}`,
    ]);
  }

  /** A successful sync: its time, and no error. */
  async recordSyncSuccess(realmId: string, at: Date): Promise<void> {
    await this.db.manager
      .getRepository(RealmEntity)
      .update({ id: realmId }, { lastSyncAt: at, lastSyncError: null });
  }

  /** A failed sync: its reason for the realm's answer (the last successful sync time stays). */
  async recordSyncFailure(realmId: string, message: string): Promise<void> {
    await this.db.manager
      .getRepository(RealmEntity)
      .update({ id: realmId }, { lastSyncError: message });
  }
}
