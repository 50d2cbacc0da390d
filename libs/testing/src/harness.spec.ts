import { Etcd3 } from 'etcd3';
import { Client } from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  requireBinary,
  startEtcd,
  startPostgres,
  type EtcdInstance,
  type PostgresInstance,
} from './index';

describe('test harness', () => {
  let etcd: EtcdInstance | undefined;
  let pg: PostgresInstance | undefined;
  afterAll(async () => {
    await etcd?.stop();
    await pg?.stop();
  });

  it('names the Debian package when a binary is missing', () => {
    expect(() => requireBinary('debvisor-no-such-binary', 'debvisor-pkg')).toThrow(
      /apt-get install debvisor-pkg/,
    );
  });

  it('starts a real etcd that stores and returns a key', async () => {
    etcd = await startEtcd();
    const client = new Etcd3(etcd.clientOptions());
    await client.put('/harness/key').value('v1');
    expect(await client.get('/harness/key').string()).toBe('v1');
    client.close();
  });

  it('serves etcd over mutual TLS only: a client without the client certificate is refused', async () => {
    etcd ??= await startEtcd();
    expect(etcd.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const { credentials } = etcd.clientOptions();
    const anonymous = new Etcd3({
      hosts: etcd.endpoint,
      credentials: { rootCertificate: credentials!.rootCertificate },
      dialTimeout: 2_000,
      defaultCallOptions: () => ({ deadline: Date.now() + 2_000 }),
    });
    await expect(anonymous.get('/harness/key').string()).rejects.toThrow();
    anonymous.close();
    const plain = new Etcd3({
      hosts: etcd.endpoint.replace('https:', 'http:'),
      dialTimeout: 2_000,
      defaultCallOptions: () => ({ deadline: Date.now() + 2_000 }),
    });
    await expect(plain.get('/harness/key').string()).rejects.toThrow();
    plain.close();
  });

  it('starts a real PostgreSQL and clones databases from a template', async () => {
    pg = await startPostgres();
    const templateUrl = await pg.createDatabase();
    const template = new Client({ connectionString: templateUrl });
    await template.connect();
    await template
      .query('CREATE TABLE marker (v text); INSERT INTO marker VALUES ($1)', ['from-template'])
      .catch(async () => {
        await template.query('CREATE TABLE marker (v text)');
        await template.query("INSERT INTO marker VALUES ('from-template')");
      });
    await template.end();
    const cloneUrl = await pg.createDatabase(new URL(templateUrl).pathname.slice(1));
    const clone = new Client({ connectionString: cloneUrl });
    await clone.connect();
    const { rows } = await clone.query('SELECT v FROM marker');
    await clone.end();
    expect(rows).toEqual([{ v: 'from-template' }]);
  });
});
