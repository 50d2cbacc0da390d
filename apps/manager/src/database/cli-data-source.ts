/**
 * The data source the TypeORM CLI works with (generating and running migrations by hand), built
 * from the same options as the manager's. It needs DATABASE_URL:
 *
 *   npx tsc -b apps/manager
 *   DATABASE_URL=postgres://… npx typeorm migration:generate -d apps/manager/dist/database/cli-data-source.js \
 *     apps/manager/src/database/migrations/<Name>
 */
import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { loadConfig } from '../config/manager-config';
import { dataSourceOptions } from './data-source-options';

const { databaseUrl } = loadConfig();
if (!databaseUrl)
  throw new Error('set DATABASE_URL to the database the TypeORM CLI should work on');

export default new DataSource(dataSourceOptions(databaseUrl));
