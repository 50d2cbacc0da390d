import { Injectable } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { AclEntryEntity, type PrincipalType } from './acl-entry.entity';

export interface AclFilter {
  readonly path?: string;
  readonly principalType?: PrincipalType;
  readonly principal?: string;
}

/**
 * The owner of `acl_entries`: the only code that writes them. Reads and writes go through the
 * unit of work, so that a change spanning owners (a user removed with its grants) is one
 * transaction.
 */
@Injectable()
export class AclRepository {
  constructor(private readonly db: UnitOfWork) {}

  listAcl(filter: AclFilter): Promise<AclEntryEntity[]> {
    const where: Partial<Pick<AclEntryEntity, 'path' | 'principalType' | 'principal'>> = {};
    if (filter.path !== undefined) where.path = filter.path;
    if (filter.principalType !== undefined) where.principalType = filter.principalType;
    if (filter.principal !== undefined) where.principal = filter.principal;
    return this.db.manager
      .getRepository(AclEntryEntity)
      .find({ where, order: { path: 'ASC', principalType: 'ASC', principal: 'ASC' } });
  }

  /** Inserts the entry, or changes role and propagation of the one on the same path and principal; answers what is stored. */
  async upsertAcl(entry: AclEntryEntity): Promise<AclEntryEntity> {
    const rows: AclRow[] = await this.db.manager.query(
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

  /** Inserts the entry unless the principal already has one on the path (which stays as it is). */
  async insertUnlessPresent(entry: AclEntryEntity): Promise<void> {
    await this.db.manager
      .createQueryBuilder()
      .insert()
      .into(AclEntryEntity)
      .values(entry)
      .orIgnore()
      .execute();
  }

  async deleteAcl(path: string, principalType: PrincipalType, principal: string): Promise<boolean> {
    const result = await this.db.manager
      .getRepository(AclEntryEntity)
      .delete({ path, principalType, principal });
    return (result.affected ?? 0) > 0;
  }

  /** Every entry naming one of these principals. */
  async deleteGrantsOf(principalType: PrincipalType, principals: readonly string[]): Promise<void> {
    if (principals.length === 0) return;
    await this.db.manager.query(
      'DELETE FROM acl_entries WHERE principal_type = $1 AND principal = ANY($2::varchar[])',
      [principalType, [...principals]],
    );
  }

  /** Every entry on this path, whoever it names. */
  async deleteGrantsOn(path: string): Promise<void> {
    await this.db.manager.query('DELETE FROM acl_entries WHERE path = $1', [path]);
  }

  /**
   * Entries on `from` now name `to`; an entry whose principal already has one on `to` is left as
   * it was. Answers how many moved.
   */
  async movePath(from: string, to: string): Promise<number> {
    const result = await this.db.manager
      .createQueryBuilder()
      .update(AclEntryEntity)
      .set({ path: to })
      .where('path = :from', { from })
      .andWhere(
        'NOT EXISTS (SELECT 1 FROM acl_entries other WHERE other.path = :to AND other.principal_type = acl_entries.principal_type AND other.principal = acl_entries.principal)',
        { to },
      )
      .execute();
    return result.affected ?? 0;
  }

  /**
   * True when the principal an ACL entry would name exists (a token: revoked ones too). A read of
   * the owners' tables, in SQL so that acl/ imports none of their folders.
   */
  async principalExists(type: PrincipalType, id: string): Promise<boolean> {
    const table = { user: 'users', group: 'groups', token: 'api_tokens' }[type];
    const rows: unknown[] = await this.db.manager.query(
      `SELECT 1 FROM ${table} WHERE id = $1 LIMIT 1`,
      [id],
    );
    return rows.length > 0;
  }
}

/** An `acl_entries` row as raw SQL answers it. */
export interface AclRow {
  id: string;
  path: string;
  principal_type: PrincipalType;
  principal: string;
  role: AclEntryEntity['role'];
  propagate: boolean;
  created_at: Date;
}

export function fromAclRow(row: AclRow): AclEntryEntity {
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
