import { Injectable } from '@nestjs/common';
import { UnitOfWork } from '../database/unit-of-work.repository';
import { ApiTokenEntity, type TokenOwnerType } from './api-token.entity';

export type TokenPatch = Partial<Pick<ApiTokenEntity, 'comment' | 'expiresAt' | 'limited'>>;

/** The owner of `api_tokens`: the only code that writes them. */
@Injectable()
export class TokensRepository {
  constructor(private readonly db: UnitOfWork) {}

  listTokens(
    filter: { ownerType?: TokenOwnerType; owner?: string } = {},
  ): Promise<ApiTokenEntity[]> {
    const where: Partial<Pick<ApiTokenEntity, 'ownerType' | 'principal'>> = {};
    if (filter.ownerType !== undefined) where.ownerType = filter.ownerType;
    if (filter.owner !== undefined) where.principal = filter.owner;
    return this.db.manager.getRepository(ApiTokenEntity).find({
      where,
      order: { ownerType: 'ASC', principal: 'ASC', name: 'ASC' },
    });
  }

  findToken(id: string): Promise<ApiTokenEntity | null> {
    return this.db.manager.getRepository(ApiTokenEntity).findOneBy({ id });
  }

  /**
   * Inserts the token unless its name is taken ('taken') or its owner already holds `cap` tokens
   * that are not revoked ('full'); the count and the insert hold the owner's lock, so parallel
   * creations cannot exceed the cap.
   */
  insertToken(token: ApiTokenEntity, cap: number): Promise<'inserted' | 'taken' | 'full'> {
    return this.db.run(async () => {
      const tx = this.db.manager;
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

  /** Inserts without the per-owner checks (the first start's bootstrap token). */
  async insert(token: ApiTokenEntity): Promise<void> {
    await this.db.manager.getRepository(ApiTokenEntity).insert(token);
  }

  async updateToken(id: string, patch: TokenPatch): Promise<void> {
    if (Object.keys(patch).length > 0)
      await this.db.manager.getRepository(ApiTokenEntity).update({ id }, patch);
  }

  /** Sets revoked_at unless it is already set; true when this call revoked it. */
  async revokeToken(id: string, at: Date): Promise<boolean> {
    const result: [unknown[], number] = await this.db.manager.query(
      'UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL',
      [id, at],
    );
    return result[1] === 1;
  }

  async touchToken(id: string, at: Date): Promise<void> {
    await this.db.manager.getRepository(ApiTokenEntity).update({ id }, { lastUsedAt: at });
  }

  /** Removes every token of these owners; answers the ids removed. */
  async deleteOwnedBy(ownerType: TokenOwnerType, owners: readonly string[]): Promise<string[]> {
    if (owners.length === 0) return [];
    const [rows]: [{ id: string }[], number] = await this.db.manager.query(
      'DELETE FROM api_tokens WHERE owner_type = $1 AND principal = ANY($2::varchar[]) RETURNING id',
      [ownerType, [...owners]],
    );
    return rows.map((r) => r.id);
  }
}
