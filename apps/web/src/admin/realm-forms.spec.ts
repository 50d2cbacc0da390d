import { describe, expect, it } from 'vitest';
import {
  createRealmBody,
  emptyRealmForm,
  realmFormFrom,
  realmFormProblems,
  realmSettings,
  updateRealmBody,
  type Realm,
  type RealmForm,
} from './realm-forms';

function ldapForm(): RealmForm {
  const form = emptyRealmForm('ldap');
  form.id = 'corp';
  form.ldap.url = 'ldaps://ldap.example.com';
  form.ldap.bindDn = 'cn=svc,dc=example,dc=com';
  form.ldap.userBaseDn = 'ou=people,dc=example,dc=com';
  form.ldap.groupBaseDn = 'ou=groups,dc=example,dc=com';
  form.secret = 'bind-secret';
  form.syncIntervalMinutes = '60';
  form.groupMappings = [
    { pattern: 'debvisor-*', group: '', tenant: false },
    { pattern: 'acme', group: 'tenant-acme', tenant: true },
  ];
  return form;
}

function stored(overrides: Partial<Realm> = {}): Realm {
  return {
    id: 'corp',
    type: 'ldap',
    comment: '',
    settings: {
      url: 'ldaps://ldap.example.com',
      startTls: false,
      bindDn: 'cn=svc,dc=example,dc=com',
      userBaseDn: 'ou=people,dc=example,dc=com',
      userFilter: '(objectClass=inetOrgPerson)',
      usernameAttribute: 'uid',
      displayNameAttribute: 'cn',
      emailAttribute: 'mail',
      groupBaseDn: 'ou=groups,dc=example,dc=com',
      groupFilter:
        '(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))',
      groupNameAttribute: 'cn',
      groupMemberAttribute: 'member',
      timeoutMs: 5000,
    },
    hasSecret: true,
    requireTfa: false,
    groupMappings: [{ pattern: 'debvisor-*' }],
    syncIntervalMinutes: 60,
    lastSyncAt: null,
    lastSyncError: null,
    createdAt: '2026-01-01T00:00:00Z',
    ...overrides,
  };
}

describe('the LDAP realm form', () => {
  it('builds the create body: settings with the defaults shown, mappings without empty fields, the interval as a number', () => {
    const form = ldapForm();
    expect(realmFormProblems(form, true)).toEqual([]);
    const body = createRealmBody(form);
    expect(body).toMatchObject({
      id: 'corp',
      type: 'ldap',
      secret: 'bind-secret',
      syncIntervalMinutes: 60,
      groupMappings: [
        { pattern: 'debvisor-*' },
        { pattern: 'acme', group: 'tenant-acme', tenant: true },
      ],
      addAnyway: false,
    });
    expect(body.settings).toEqual(stored().settings);
    expect(body.settings).not.toHaveProperty('caPem');
  });

  it('names what the manager would refuse', () => {
    const form = ldapForm();
    form.id = 'Corp';
    form.ldap.url = 'https://ldap.example.com';
    form.ldap.userBaseDn = 'people';
    form.ldap.startTls = true;
    form.syncIntervalMinutes = '2';
    form.groupMappings = [{ pattern: 'bad pattern', group: '', tenant: false }];
    expect(realmFormProblems(form, true)).toEqual([
      expect.stringMatching(/realm id/),
      expect.stringMatching(/server URL/),
      expect.stringMatching(/user base DN/),
      expect.stringMatching(/sync interval/),
      expect.stringMatching(/group mapping bad pattern/),
    ]);
    form.ldap.url = 'ldaps://x';
    expect(realmFormProblems(form, true)).toContainEqual(expect.stringMatching(/StartTLS/));
    form.ldap.url = 'ldap://x';
    form.ldap.startTls = false;
    expect(realmFormProblems(form, true)).toContainEqual(expect.stringMatching(/needs StartTLS/));
  });

  it('prefills from a stored realm, and an unchanged form sends no settings (no new connection test) and keeps the secret', () => {
    const realm = stored();
    const form = realmFormFrom(realm);
    expect(form.ldap.bindDn).toBe('cn=svc,dc=example,dc=com');
    expect(form.syncIntervalMinutes).toBe('60');
    const body = updateRealmBody(form, realm);
    expect(body).not.toHaveProperty('settings');
    expect(body).not.toHaveProperty('secret');
    expect(body).toMatchObject({
      groupMappings: [{ pattern: 'debvisor-*' }],
      syncIntervalMinutes: 60,
    });
  });

  it('sends all settings when one changed, a new secret when typed, and null to remove it', () => {
    const realm = stored();
    const form = realmFormFrom(realm);
    form.ldap.userFilter = '(objectClass=person)';
    form.secret = 'new-secret';
    const body = updateRealmBody(form, realm);
    expect(body.settings).toEqual({ ...realm.settings, userFilter: '(objectClass=person)' });
    expect(body.secret).toBe('new-secret');
    const removing = realmFormFrom(realm);
    removing.removeSecret = true;
    expect(updateRealmBody(removing, realm).secret).toBeNull();
  });
});

describe('the OpenID Connect realm form', () => {
  it('splits scopes and audiences into lists and needs the client secret on create', () => {
    const form = emptyRealmForm('openid');
    form.id = 'sso';
    form.openid.issuerUrl = 'https://id.example.com/realms/main';
    form.openid.clientId = 'debvisor';
    form.openid.audiences = 'api, other';
    expect(realmFormProblems(form, true)).toEqual([
      'an OpenID Connect realm needs its client secret',
    ]);
    form.secret = 'client-secret';
    const body = createRealmBody(form);
    expect(body.settings).toEqual({
      issuerUrl: 'https://id.example.com/realms/main',
      clientId: 'debvisor',
      scopes: ['openid', 'profile', 'email'],
      usernameClaim: 'preferred_username',
      groupsClaim: 'groups',
      audiences: ['api', 'other'],
      timeoutMs: 5000,
    });
    expect(body.syncIntervalMinutes).toBeNull();
  });

  it('refuses an http issuer and scopes without openid', () => {
    const form = emptyRealmForm('openid');
    form.openid.issuerUrl = 'http://id.example.com';
    form.openid.clientId = 'x';
    form.openid.scopes = 'profile';
    expect(realmFormProblems(form, false)).toEqual([
      expect.stringMatching(/https/),
      expect.stringMatching(/openid/),
    ]);
  });

  it('changing an LDAP realm to OpenID Connect sends the type and all the new settings', () => {
    const realm = stored();
    const form = realmFormFrom(realm);
    form.type = 'openid';
    form.openid.issuerUrl = 'https://id.example.com';
    form.openid.clientId = 'x';
    form.secret = 's';
    const body = updateRealmBody(form, realm);
    expect(body).toMatchObject({ type: 'openid', secret: 's', syncIntervalMinutes: null });
    expect(body.settings).toEqual(realmSettings(form));
  });
});

describe('the local realm', () => {
  it('changes only its comment and second-factor requirement', () => {
    const local = stored({
      id: 'local',
      type: 'local',
      settings: {},
      hasSecret: false,
      groupMappings: [],
      syncIntervalMinutes: null,
    });
    const form = realmFormFrom(local);
    form.comment = ' built in ';
    form.requireTfa = true;
    expect(updateRealmBody(form, local)).toEqual({
      comment: 'built in',
      requireTfa: true,
      addAnyway: false,
    });
  });
});
