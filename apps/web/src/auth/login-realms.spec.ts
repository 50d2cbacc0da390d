import { describe, expect, it } from 'vitest';
import {
  loginTarget,
  passwordRealms,
  realmLabel,
  singleSignOnRealms,
  type LoginRealm,
} from './login-realms';

const REALMS: LoginRealm[] = [
  { id: 'local', type: 'local', comment: 'Users with a password stored in the manager' },
  { id: 'corp', type: 'ldap', comment: 'Corporate directory' },
  { id: 'sso', type: 'openid', comment: '' },
];

describe('the login page’s realms', () => {
  it('offers local and LDAP realms for a password and OpenID Connect realms as single sign-on', () => {
    expect(passwordRealms(REALMS).map((r) => r.id)).toEqual(['local', 'corp']);
    expect(singleSignOnRealms(REALMS).map((r) => r.id)).toEqual(['sso']);
    expect(realmLabel(REALMS[1]!)).toBe('corp — Corporate directory');
    expect(realmLabel(REALMS[2]!)).toBe('sso');
  });

  it('logs a plain username in with the chosen realm', () => {
    expect(loginTarget('alice', 'corp', REALMS)).toEqual({
      username: 'alice',
      realm: 'corp',
      fromUsername: false,
    });
    expect(loginTarget('alice', 'local', REALMS)).toEqual({
      username: 'alice',
      realm: 'local',
      fromUsername: false,
    });
  });

  it('takes the realm from a username ending in @ and a password realm, whatever was chosen', () => {
    expect(loginTarget('admin@local', 'corp', REALMS)).toEqual({
      username: 'admin',
      realm: 'local',
      fromUsername: true,
    });
    expect(loginTarget('bob@corp', 'local', REALMS)).toEqual({
      username: 'bob',
      realm: 'corp',
      fromUsername: true,
    });
  });

  it('keeps an e-mail-like directory name whole, and does not log in to a single sign-on realm with a password', () => {
    expect(loginTarget('ann@example.test', 'corp', REALMS)).toEqual({
      username: 'ann@example.test',
      realm: 'corp',
      fromUsername: false,
    });
    expect(loginTarget('carol@sso', 'local', REALMS)).toEqual({
      username: 'carol@sso',
      realm: 'local',
      fromUsername: false,
    });
  });

  it('falls back to local for a choice that is not a password realm', () => {
    expect(loginTarget('alice', 'gone', REALMS)).toEqual({
      username: 'alice',
      realm: 'local',
      fromUsername: false,
    });
  });

  it('sends the username as typed when the realm list is unknown (the manager splits it)', () => {
    expect(loginTarget('bob@corp', 'local', [])).toEqual({
      username: 'bob@corp',
      realm: undefined,
      fromUsername: false,
    });
  });
});
