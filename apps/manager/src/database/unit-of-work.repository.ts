import { AsyncLocalStorage } from 'node:async_hooks';
import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { DataSource, type EntityManager } from 'typeorm';

/**
 * One database transaction across the repositories of several table owners. A service that must
 * change tables of more than one owner atomically (a user removed with its tokens and ACL entries)
 * calls the owners' services inside `run`; every repository reads and writes through `manager`,
 * which is the open transaction's inside `run` and the pool's outside it. Nested runs join the
 * outer transaction.
 */
@Injectable()
export class UnitOfWork {
  private readonly open = new AsyncLocalStorage<EntityManager>();

  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  run<T>(work: () => Promise<T>): Promise<T> {
    if (this.open.getStore()) return work();
    return this.dataSource.transaction((tx) => this.open.run(tx, work));
  }

  get manager(): EntityManager {
    return this.open.getStore() ?? this.dataSource.manager;
  }
}
