import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { SystemSettingEntity } from '../database/system-setting.entity';
import { AclEntryEntity } from './acl-entry.entity';
import { ApiTokenEntity } from './api-token.entity';

const BOOTSTRAP_SETTING = 'auth.bootstrap';

/** API tokens, ACL entries and the bootstrap marker in PostgreSQL. */
@Injectable()
export class TokensRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  findToken(id: string): Promise<ApiTokenEntity | null> {
    return this.dataSource.getRepository(ApiTokenEntity).findOneBy({ id });
  }

  async touchToken(id: string, at: Date): Promise<void> {
    await this.dataSource.getRepository(ApiTokenEntity).update({ id }, { lastUsedAt: at });
  }

  aclEntriesOf(principal: string): Promise<AclEntryEntity[]> {
    return this.dataSource.getRepository(AclEntryEntity).find({ where: { principal }, order: { path: 'ASC' } });
  }

  async isBootstrapped(): Promise<boolean> {
    return (await this.dataSource.getRepository(SystemSettingEntity).countBy({ key: BOOTSTRAP_SETTING })) > 0;
  }

  /**
   * Stores the bootstrap token and its ACL entry, and marks the installation bootstrapped, in one
   * transaction. Answers false (and stores nothing) when another instance bootstrapped first.
   */
  async saveBootstrap(token: ApiTokenEntity, acl: AclEntryEntity): Promise<boolean> {
    return this.dataSource.transaction(async (tx) => {
      const inserted: unknown[] = await tx.query(
        'INSERT INTO system_settings (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING RETURNING key',
        [BOOTSTRAP_SETTING, JSON.stringify({ tokenId: token.id, principal: token.principal }), token.createdAt],
      );
      if (inserted.length === 0) return false;
      await tx.getRepository(ApiTokenEntity).insert(token);
      await tx
        .createQueryBuilder()
        .insert()
        .into(AclEntryEntity)
        .values(acl)
        .orIgnore()
        .execute();
      return true;
    });
  }
}
