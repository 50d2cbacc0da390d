import { createCa } from '@debvisor/pki';
import { freePort, startSlapd, type SlapdInstance } from '@debvisor/testing';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../common/domain-error';
import { ErrorCode } from '../common/error-code';
import { LdapDirectoryRepository } from './ldap-directory.repository';
import { ldapRealmSettingsSchema, type LdapRealmSettings } from './ldap-settings';

describe('LdapDirectoryRepository against a real slapd', () => {
  const repository = new LdapDirectoryRepository();
  let ldap: SlapdInstance;

  const settings = (overrides: Record<string, unknown> = {}): LdapRealmSettings =>
    ldapRealmSettingsSchema.parse({
      url: ldap.url,
      // Plain ldap:// is refused without StartTLS (issue 14 item 7): over it, with the directory's CA.
      ...(String(overrides.url ?? ldap.url).startsWith('ldap:')
        ? { startTls: true, caPem: ldap.caPem }
        : {}),
      bindDn: ldap.bindDn,
      userBaseDn: ldap.usersDn,
      groupBaseDn: ldap.groupsDn,
      ...overrides,
    });

  async function expectUnavailable(promise: Promise<unknown>): Promise<DomainError> {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).code).toBe(ErrorCode.RealmUnavailable);
    return error as DomainError;
  }

  beforeAll(async () => {
    ldap = await startSlapd();
    await ldap.addUser({
      uid: 'ann',
      password: 'ann-secret',
      cn: 'Ann Example',
      mail: 'ann@example.test',
    });
    await ldap.addUser({ uid: 'bob', password: 'bob-secret' });
    await ldap.addUser({ uid: 'carol', password: 'carol-secret' });
    await ldap.addGroup('ops', ['ann', 'bob']);
    await ldap.addGroup('devs', ['bob']);
  });
  afterAll(() => ldap?.stop());

  describe('findUser', () => {
    it('finds a user by username with DN, display name and email', async () => {
      expect(await repository.findUser(settings(), ldap.bindPassword, 'ann')).toEqual({
        username: 'ann',
        dn: ldap.userDn('ann'),
        displayName: 'Ann Example',
        email: 'ann@example.test',
      });
    });

    it('answers null for a user the directory does not hold', async () => {
      expect(await repository.findUser(settings(), ldap.bindPassword, 'nobody')).toBeNull();
    });

    it('treats filter syntax in a username as data, so injected filters match nothing', async () => {
      for (const username of [
        '*',
        '*)(uid=*',
        'ann)(|(uid=*',
        'a*',
        'ann\\29',
        '*)(objectClass=*',
        ')',
      ]) {
        expect(
          await repository.findUser(settings(), ldap.bindPassword, username),
          username,
        ).toBeNull();
      }
    });

    it('applies the realm user filter', async () => {
      const onlyAnn = settings({ userFilter: '(&(objectClass=inetOrgPerson)(mail=*))' });
      expect(await repository.findUser(onlyAnn, ldap.bindPassword, 'ann')).not.toBeNull();
      expect(await repository.findUser(onlyAnn, ldap.bindPassword, 'bob')).toBeNull();
    });
  });

  describe('bindAsUser', () => {
    it('is true for the user’s password and false for another', async () => {
      expect(await repository.bindAsUser(settings(), ldap.userDn('bob'), 'bob-secret')).toBe(true);
      expect(await repository.bindAsUser(settings(), ldap.userDn('bob'), 'ann-secret')).toBe(false);
      expect(await repository.bindAsUser(settings(), ldap.userDn('nobody'), 'bob-secret')).toBe(
        false,
      );
    });

    it('is false for an empty password, which the server would accept as an unauthenticated bind', async () => {
      expect(await repository.bindAsUser(settings(), ldap.userDn('bob'), '')).toBe(false);
    });

    it('refuses an empty password without contacting the server', async () => {
      const closedPort = await freePort();
      const nowhere = settings({ url: `ldap://127.0.0.1:${closedPort}` });
      expect(await repository.bindAsUser(nowhere, ldap.userDn('bob'), '')).toBe(false);
      // The same call with a password does go to the (absent) server:
      await expectUnavailable(repository.bindAsUser(nowhere, ldap.userDn('bob'), 'bob-secret'));
    });

    it('follows a password change in the directory', async () => {
      await ldap.setPassword('carol', 'carol-new');
      expect(await repository.bindAsUser(settings(), ldap.userDn('carol'), 'carol-secret')).toBe(
        false,
      );
      expect(await repository.bindAsUser(settings(), ldap.userDn('carol'), 'carol-new')).toBe(true);
    });
  });

  describe('fetchDirectory', () => {
    it('lists every user and group with members as usernames, then sees the directory change', async () => {
      const before = await repository.fetchDirectory(settings(), ldap.bindPassword);
      expect(before.users.map((u) => u.username)).toEqual(['ann', 'bob', 'carol']);
      expect(before.users[0]).toEqual({
        username: 'ann',
        dn: ldap.userDn('ann'),
        displayName: 'Ann Example',
        email: 'ann@example.test',
      });
      expect(before.users[1]).toEqual({
        username: 'bob',
        dn: ldap.userDn('bob'),
        displayName: 'bob',
        email: null,
      });
      expect(before.groups).toEqual([
        { name: 'devs', dn: ldap.groupDn('devs'), memberUsernames: ['bob'] },
        { name: 'ops', dn: ldap.groupDn('ops'), memberUsernames: ['ann', 'bob'] },
      ]);

      await ldap.addUser({ uid: 'dave', password: 'dave-secret' });
      await ldap.setGroupMembers('ops', ['dave', 'carol']);
      await ldap.deleteUser('bob'); // devs keeps a member DN that no longer names a user
      await ldap.addGroup('empty', []);

      const after = await repository.fetchDirectory(settings(), ldap.bindPassword);
      expect(after.users.map((u) => u.username)).toEqual(['ann', 'carol', 'dave']);
      expect(after.groups).toEqual([
        { name: 'devs', dn: ldap.groupDn('devs'), memberUsernames: [] },
        { name: 'empty', dn: ldap.groupDn('empty'), memberUsernames: [] },
        { name: 'ops', dn: ldap.groupDn('ops'), memberUsernames: ['carol', 'dave'] },
      ]);
    });

    it('ignores members that are not users of the realm', async () => {
      await ldap.addGroup('partial', ['ann']);
      await ldap.addUser({ uid: 'eve', password: 'eve-secret' });
      await ldap.setGroupMembers('partial', ['ann', 'eve']);
      const withoutEve = settings({ userFilter: '(&(objectClass=inetOrgPerson)(!(uid=eve)))' });
      const { users, groups } = await repository.fetchDirectory(withoutEve, ldap.bindPassword);
      expect(users.map((u) => u.username)).not.toContain('eve');
      expect(groups.find((g) => g.name === 'partial')?.memberUsernames).toEqual(['ann']);
    });

    it('reads every entry past the server’s size limit by paging', async () => {
      const limited = await startSlapd({ sizeLimit: 2 });
      try {
        for (const uid of ['u1', 'u2', 'u3', 'u4', 'u5'])
          await limited.addUser({ uid, password: `${uid}-secret` });
        await limited.addGroup('all', ['u1', 'u2', 'u3', 'u4', 'u5']);
        const { users, groups } = await repository.fetchDirectory(
          ldapRealmSettingsSchema.parse({
            url: limited.url,
            startTls: true,
            caPem: limited.caPem,
            bindDn: limited.bindDn,
            userBaseDn: limited.usersDn,
            groupBaseDn: limited.groupsDn,
          }),
          limited.bindPassword,
        );
        expect(users.map((u) => u.username)).toEqual(['u1', 'u2', 'u3', 'u4', 'u5']);
        expect(groups).toEqual([
          {
            name: 'all',
            dn: limited.groupDn('all'),
            memberUsernames: ['u1', 'u2', 'u3', 'u4', 'u5'],
          },
        ]);
      } finally {
        await limited.stop();
      }
    });
  });

  describe('groupsOfUser', () => {
    const ours = (names: string[]) => names.filter((name) => name.startsWith('gou-'));

    it('names the groups that list the user, and follows a membership change', async () => {
      await ldap.addUser({ uid: 'gina', password: 'gina-secret' });
      await ldap.addGroup('gou-one', ['gina']);
      await ldap.addGroup('gou-two', ['ann', 'gina']);
      await ldap.addGroup('gou-three', ['ann']);
      expect(
        ours(await repository.groupsOfUser(settings(), ldap.bindPassword, ldap.userDn('gina'))),
      ).toEqual(['gou-one', 'gou-two']);

      await ldap.setGroupMembers('gou-two', ['ann']);
      expect(
        ours(await repository.groupsOfUser(settings(), ldap.bindPassword, ldap.userDn('gina'))),
      ).toEqual(['gou-one']);
    });

    it('matches the member DN however it is spelled, and treats filter syntax in it as data', async () => {
      await ldap.addGroup('gou-spelling', ['ann']);
      const shouted = ldap.userDn('ann').toUpperCase().replace(/,/g, ', ');
      expect(ours(await repository.groupsOfUser(settings(), ldap.bindPassword, shouted))).toContain(
        'gou-spelling',
      );
      for (const dn of ['*', `${ldap.userDn('ann')})(cn=*`, '*)(objectClass=*']) {
        expect(await repository.groupsOfUser(settings(), ldap.bindPassword, dn), dn).toEqual([]);
      }
    });

    it('applies the realm group filter', async () => {
      await ldap.addGroup('gou-filtered', ['ann']);
      const onlyFiltered = settings({
        groupFilter: '(&(objectClass=groupOfNames)(cn=gou-filtered))',
      });
      expect(
        await repository.groupsOfUser(onlyFiltered, ldap.bindPassword, ldap.userDn('ann')),
      ).toEqual(['gou-filtered']);
    });

    it('fails with realm_unavailable when the service account password is wrong', async () => {
      await expectUnavailable(
        repository.groupsOfUser(settings(), 'wrong-password', ldap.userDn('ann')),
      );
    });
  });

  describe('TLS', () => {
    it('works over LDAPS when the server certificate chains to caPem', async () => {
      const ldaps = settings({ url: ldap.ldapsUrl, caPem: ldap.caPem });
      expect((await repository.findUser(ldaps, ldap.bindPassword, 'ann'))?.dn).toBe(
        ldap.userDn('ann'),
      );
      expect(await repository.bindAsUser(ldaps, ldap.userDn('ann'), 'ann-secret')).toBe(true);
      await repository.testConnection(ldaps, ldap.bindPassword);
    });

    it('works over StartTLS when the server certificate chains to caPem', async () => {
      const startTls = settings({ startTls: true, caPem: ldap.caPem });
      expect((await repository.findUser(startTls, ldap.bindPassword, 'ann'))?.dn).toBe(
        ldap.userDn('ann'),
      );
      expect(await repository.bindAsUser(startTls, ldap.userDn('ann'), 'ann-secret')).toBe(true);
      expect(
        (await repository.fetchDirectory(startTls, ldap.bindPassword)).users.length,
      ).toBeGreaterThan(0);
    });

    it('fails with realm_unavailable when the server certificate does not chain to caPem (LDAPS and StartTLS)', async () => {
      const otherCa = (await createCa('Some other CA')).certPem;
      for (const overrides of [
        { url: ldap.ldapsUrl, caPem: otherCa },
        { startTls: true, caPem: otherCa },
      ]) {
        const error = await expectUnavailable(
          repository.findUser(settings(overrides), ldap.bindPassword, 'ann'),
        );
        expect(error.message).toMatch(/certificate is not trusted/);
        await expectUnavailable(
          repository.bindAsUser(settings(overrides), ldap.userDn('ann'), 'ann-secret'),
        );
      }
    });

    it('fails with realm_unavailable without caPem when the system CAs do not know the server', async () => {
      await expectUnavailable(
        repository.testConnection(settings({ url: ldap.ldapsUrl }), ldap.bindPassword),
      );
    });
  });

  describe('failures', () => {
    it('fails with realm_unavailable, naming no secret, when the service account password is wrong', async () => {
      const error = await expectUnavailable(
        repository.findUser(settings(), 'wrong-service-password', 'ann'),
      );
      expect(error.message).toMatch(/rejected the service account/);
      expect(error.message).not.toContain('wrong-service-password');
      await expectUnavailable(repository.fetchDirectory(settings(), 'wrong-service-password'));
      await expectUnavailable(repository.testConnection(settings(), 'wrong-service-password'));
    });

    it('fails with realm_unavailable at once when nothing listens on the port', async () => {
      const closedPort = await freePort();
      const started = performance.now();
      const error = await expectUnavailable(
        repository.testConnection(
          settings({ url: `ldap://127.0.0.1:${closedPort}` }),
          ldap.bindPassword,
        ),
      );
      expect(error.message).toMatch(/connection refused/);
      expect(performance.now() - started).toBeLessThan(1000);
    });

    it('fails with realm_unavailable after timeoutMs when the server never answers (plain, LDAPS, StartTLS)', async () => {
      const silent = await silentServer();
      try {
        for (const overrides of [
          { url: `ldap://127.0.0.1:${silent.port}` },
          { url: `ldaps://127.0.0.1:${silent.port}`, caPem: ldap.caPem },
          { url: `ldap://127.0.0.1:${silent.port}`, startTls: true, caPem: ldap.caPem },
        ]) {
          const started = performance.now();
          const error = await expectUnavailable(
            repository.findUser(
              settings({ ...overrides, timeoutMs: 300 }),
              ldap.bindPassword,
              'ann',
            ),
          );
          expect(error.message, overrides.url).toMatch(/did not answer within 300 ms/);
          expect(performance.now() - started).toBeLessThan(2000);
        }
      } finally {
        await silent.close();
      }
    });

    it('fails with realm_unavailable when a base DN does not exist', async () => {
      const error = await expectUnavailable(
        repository.testConnection(
          settings({ groupBaseDn: `ou=missing,${ldap.baseDn}` }),
          ldap.bindPassword,
        ),
      );
      expect(error.message).toContain(`ou=missing,${ldap.baseDn}`);
    });

    it('fails with realm_unavailable when searching anonymously in a directory that hides everything from anonymous clients', async () => {
      await expectUnavailable(repository.findUser(settings({ bindDn: undefined }), null, 'ann'));
    });

    it('passes testConnection with the right service account', async () => {
      await expect(
        repository.testConnection(settings(), ldap.bindPassword),
      ).resolves.toBeUndefined();
    });
  });
});

describe('ldapRealmSettingsSchema', () => {
  const base = {
    url: 'ldaps://dc1.example.com',
    userBaseDn: 'ou=people,dc=example,dc=com',
    groupBaseDn: 'ou=groups,dc=example,dc=com',
  };

  it('fills in the OpenLDAP defaults', () => {
    expect(ldapRealmSettingsSchema.parse(base)).toEqual({
      ...base,
      startTls: false,
      userFilter: '(objectClass=inetOrgPerson)',
      usernameAttribute: 'uid',
      displayNameAttribute: 'cn',
      emailAttribute: 'mail',
      groupFilter:
        '(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))',
      groupNameAttribute: 'cn',
      groupMemberAttribute: 'member',
      timeoutMs: 5000,
    });
  });

  it('refuses StartTLS on an ldaps:// URL', () => {
    const result = ldapRealmSettingsSchema.safeParse({
      ...base,
      url: 'ldaps://dc1.example.com',
      startTls: true,
    });
    expect(result.success).toBe(false);
    expect(result.error?.issues[0].path).toEqual(['startTls']);
  });

  it('refuses ldap:// without StartTLS: passwords would travel in clear (issue 14 item 7)', () => {
    const base = {
      userBaseDn: 'ou=people,dc=example,dc=com',
      groupBaseDn: 'ou=groups,dc=example,dc=com',
    };
    const plain = ldapRealmSettingsSchema.safeParse({ ...base, url: 'ldap://dc1.example.com' });
    expect(plain.success).toBe(false);
    expect(plain.error?.issues[0]).toMatchObject({ path: ['startTls'] });
    expect(plain.error?.issues[0].message).toMatch(/StartTLS/);
    for (const ok of [
      { url: 'ldap://dc1.example.com', startTls: true },
      { url: 'ldaps://dc1.example.com' },
    ])
      expect(ldapRealmSettingsSchema.safeParse({ ...base, ...ok }).success).toBe(true);
  });

  it('refuses URLs other than ldap:// and ldaps:// host and port', () => {
    for (const url of [
      'http://dc1.example.com',
      'ldapi:///var/run/slapd',
      'ldap://user:pw@dc1.example.com',
      'ldap://dc1/dc=example?uid',
      'dc1.example.com',
    ]) {
      expect(ldapRealmSettingsSchema.safeParse({ ...base, url }).success, url).toBe(false);
    }
  });

  it('refuses malformed filters, attribute names and CA certificates', () => {
    for (const bad of [
      { userFilter: '(uid=a))(uid=b' },
      { userFilter: 'objectClass=person' },
      { groupFilter: '(cn=a\\zz)' },
      { usernameAttribute: 'uid)(x' },
      { caPem: 'not a certificate' },
      { caPem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' },
      { timeoutMs: 50 },
      { unknownSetting: true },
    ]) {
      expect(
        ldapRealmSettingsSchema.safeParse({ ...base, ...bad }).success,
        JSON.stringify(bad),
      ).toBe(false);
    }
  });
});

/** A TCP server that accepts connections and never says a word. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
