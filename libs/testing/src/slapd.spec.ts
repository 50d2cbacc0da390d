import { Client, InvalidCredentialsError, NoSuchObjectError, SizeLimitExceededError } from 'ldapts';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSlapd, type SlapdInstance } from './slapd';

describe('startSlapd', () => {
  let ldap: SlapdInstance;
  beforeAll(async () => {
    ldap = await startSlapd({ sizeLimit: 2 });
    await ldap.addUser({ uid: 'ann', password: 'ann-pw', mail: 'ann@example.test' });
    await ldap.addUser({ uid: 'bob', password: 'bob-pw' });
    await ldap.addUser({ uid: 'cid', password: 'cid-pw' });
  });
  afterAll(() => ldap?.stop());

  async function session<T>(
    dn: string,
    password: string,
    work: (client: Client) => Promise<T>,
    url = ldap.url,
  ): Promise<T> {
    const client = new Client({
      url,
      timeout: 5000,
      connectTimeout: 5000,
      tlsOptions: url.startsWith('ldaps:') ? { ca: [ldap.caPem] } : undefined,
    });
    try {
      await client.bind(dn, password);
      return await work(client);
    } finally {
      await client.unbind();
    }
  }

  it('lets a user bind with their own password and refuses a wrong one', async () => {
    await expect(session(ldap.userDn('ann'), 'ann-pw', async () => 'bound')).resolves.toBe('bound');
    await expect(session(ldap.userDn('ann'), 'bob-pw', async () => 'bound')).rejects.toBeInstanceOf(
      InvalidCredentialsError,
    );
  });

  it('lets the service account read users but never a userPassword', async () => {
    const entries = await session(ldap.bindDn, ldap.bindPassword, (client) =>
      client.search(ldap.usersDn, {
        filter: '(uid=ann)',
        attributes: ['uid', 'mail', 'userPassword'],
      }),
    );
    // ldapts answers a requested attribute the server withheld as []
    expect(entries.searchEntries).toEqual([
      { dn: ldap.userDn('ann'), uid: 'ann', mail: 'ann@example.test', userPassword: [] },
    ]);
  });

  it('shows a user the other users but only their own password', async () => {
    const seen = await session(ldap.userDn('bob'), 'bob-pw', (client) =>
      client.search(ldap.usersDn, {
        filter: '(objectClass=inetOrgPerson)',
        attributes: ['uid', 'userPassword'],
        paged: true,
      }),
    );
    const byUid = new Map(seen.searchEntries.map((entry) => [entry.uid, entry]));
    expect([...byUid.keys()].sort()).toEqual(['ann', 'bob', 'cid']);
    expect(byUid.get('bob')?.userPassword).toMatch(/^\{SSHA\}/);
    expect(byUid.get('ann')?.userPassword).toEqual([]);
  });

  it('shows nothing to an anonymous client', async () => {
    await expect(
      session('', '', (client) => client.search(ldap.baseDn, { filter: '(objectClass=*)' })),
    ).rejects.toBeInstanceOf(NoSuchObjectError);
  });

  it('serves LDAPS with a certificate from its CA', async () => {
    await expect(
      session(ldap.bindDn, ldap.bindPassword, async () => 'bound', ldap.ldapsUrl),
    ).resolves.toBe('bound');
  });

  it('changes passwords and group members on request', async () => {
    await ldap.setPassword('cid', 'cid-new');
    await expect(session(ldap.userDn('cid'), 'cid-pw', async () => 0)).rejects.toBeInstanceOf(
      InvalidCredentialsError,
    );
    await expect(session(ldap.userDn('cid'), 'cid-new', async () => 0)).resolves.toBe(0);
    await ldap.addGroup('ops', ['ann', 'bob']);
    await ldap.setGroupMembers('ops', []);
    const group = await session(ldap.bindDn, ldap.bindPassword, (client) =>
      client.search(ldap.groupDn('ops'), { scope: 'base', attributes: ['member'] }),
    );
    expect(group.searchEntries[0].member).toBe('');
  });

  it('cuts plain searches at the size limit but pages through every entry', async () => {
    const read = (paged: boolean) =>
      session(ldap.bindDn, ldap.bindPassword, (client) =>
        client.search(ldap.usersDn, {
          filter: '(objectClass=inetOrgPerson)',
          attributes: ['uid'],
          paged: paged ? { pageSize: 100 } : false,
        }),
      );
    await expect(read(false)).rejects.toBeInstanceOf(SizeLimitExceededError);
    expect((await read(true)).searchEntries.map((e) => e.uid).sort()).toEqual([
      'ann',
      'bob',
      'cid',
    ]);
  });

  it('removes its directory when stopped', async () => {
    const other = await startSlapd();
    const dir = other.process.child.spawnargs[other.process.child.spawnargs.indexOf('-f') + 1];
    expect(existsSync(dir)).toBe(true);
    await other.stop();
    expect(other.process.child.exitCode).not.toBeNull();
    expect(existsSync(dir)).toBe(false);
  });
});
