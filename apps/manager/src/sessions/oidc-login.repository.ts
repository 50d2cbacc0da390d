import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { RealmEntity } from '../realms/realm.entity';

/** What an OpenID Connect login reads: the realm row (its settings and sealed client secret). */
@Injectable()
export class OidcLoginRepository {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  findRealm(id: string): Promise<RealmEntity | null> {
    return this.dataSource.getRepository(RealmEntity).findOneBy({ id });
  }
}
