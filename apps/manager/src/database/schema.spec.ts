import { cleanupTempDirs, startPostgres, type PostgresInstance } from '@debvisor/testing';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataSourceOptions } from './data-source-options';

describe('database migrations', () => {
  let postgres: PostgresInstance;
  beforeAll(async () => {
    postgres = await startPostgres();
  });
  afterAll(async () => {
    await postgres?.stop();
    cleanupTempDirs();
  });

  it('create exactly the schema the entities describe (no pending changes)', async () => {
    const dataSource = new DataSource(dataSourceOptions(await postgres.createDatabase()));
    await dataSource.initialize();
    try {
      const applied = await dataSource.runMigrations({ transaction: 'each' });
      expect(applied.length).toBeGreaterThan(0);
      const pending = await dataSource.driver.createSchemaBuilder().log();
      expect(pending.upQueries.map((q) => q.query)).toEqual([]);
    } finally {
      await dataSource.destroy();
    }
  });

  it('can be reverted down to an empty database', async () => {
    const dataSource = new DataSource(dataSourceOptions(await postgres.createDatabase()));
    await dataSource.initialize();
    try {
      const applied = await dataSource.runMigrations();
      for (let i = 0; i < applied.length; i += 1) await dataSource.undoLastMigration();
      const tables: { table_name: string }[] = await dataSource.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'typeorm_migrations'",
      );
      expect(tables).toEqual([]);
    } finally {
      await dataSource.destroy();
    }
  });
});
