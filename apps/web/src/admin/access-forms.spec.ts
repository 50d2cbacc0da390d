import { describe, expect, it } from 'vitest';
import {
  createGroupBody,
  createRemoteGroupBody,
  createTokenRequest,
  createUserBody,
  endOfDay,
  groupFormProblems,
  localMembers,
  membersAfter,
  membershipChanges,
  remoteGroupProblems,
  tokenFormProblems,
  tokenState,
  updateRemoteGroupBody,
  userFormProblems,
  type TokenForm,
  type UserForm,
} from './access-forms';

const user = (overrides: Partial<UserForm> = {}): UserForm => ({
  username: ' alice ',
  realm: 'local',
  password: 'Correct-Horse-9',
  repeat: 'Correct-Horse-9',
  displayName: '',
  email: '',
  requireTfa: false,
  enabled: true,
  ...overrides,
});

describe('the new-user form', () => {
  it('builds the body of a local user with a password, leaving empty optional fields out', () => {
    expect(userFormProblems(user())).toEqual([]);
    expect(createUserBody(user())).toEqual({
      username: 'alice',
      realm: 'local',
      password: 'Correct-Horse-9',
      enabled: true,
      requireTfa: false,
    });
    expect(
      createUserBody(
        user({ displayName: ' Alice A. ', email: 'alice@example.com', requireTfa: true }),
      ),
    ).toMatchObject({
      displayName: 'Alice A.',
      email: 'alice@example.com',
      requireTfa: true,
    });
  });

  it('refuses a differing repetition, a bad name, a bad e-mail address, and a password for a directory user', () => {
    expect(userFormProblems(user({ repeat: 'other' }))).toEqual([
      'the password and its repetition differ',
    ]);
    expect(userFormProblems(user({ username: '-x' }))[0]).toMatch(/user name/);
    expect(userFormProblems(user({ username: 'a b' }))[0]).toMatch(/user name/);
    expect(userFormProblems(user({ email: 'no-at-sign' }))).toEqual(['not a valid e-mail address']);
    expect(userFormProblems(user({ realm: 'corp', repeat: '' }))[0]).toMatch(
      /only local users get a password/,
    );
  });

  it('creates a directory user without a password', () => {
    expect(createUserBody(user({ realm: 'corp', password: '', repeat: '' }))).not.toHaveProperty(
      'password',
    );
  });
});

describe('groups and memberships', () => {
  it('checks the group id and builds the body', () => {
    expect(groupFormProblems({ id: 'ops', comment: '', tenant: true, requireTfa: false })).toEqual(
      [],
    );
    expect(
      groupFormProblems({ id: '-ops', comment: '', tenant: false, requireTfa: false }),
    ).toHaveLength(1);
    expect(
      createGroupBody({ id: ' acme ', comment: ' tenant Acme ', tenant: true, requireTfa: false }),
    ).toEqual({
      id: 'acme',
      comment: 'tenant Acme',
      tenant: true,
      requireTfa: false,
    });
  });

  it('changes only the locally managed members: realm-managed ones are not the form’s to send', () => {
    const members = [
      { user: 'a@local', source: 'local' },
      { user: 'b@corp', source: 'corp' },
      { user: 'c@local', source: 'local' },
    ];
    expect(localMembers(members)).toEqual(['a@local', 'c@local']);
    expect(membersAfter(['a@local'], 'd@local', true)).toEqual(['a@local', 'd@local']);
    expect(membersAfter(['a@local', 'd@local'], 'a@local', false)).toEqual(['d@local']);
    expect(membersAfter(['a@local'], 'a@local', true)).toBeNull();
    expect(membersAfter(['a@local'], 'x@local', false)).toBeNull();
  });

  it('works out which groups a user joins and leaves', () => {
    expect(membershipChanges(['ops', 'dev'], ['dev', 'acme'])).toEqual({
      join: ['acme'],
      leave: ['ops'],
    });
    expect(membershipChanges(['ops'], ['ops'])).toEqual({ join: [], leave: [] });
  });
});

describe('remote groups', () => {
  const entries = [
    { remote: 'dc-east', credential: 'readonly' },
    { remote: 'dc-west', credential: 'admin' },
  ];

  it('accepts one entry per remote, each with a credential', () => {
    expect(remoteGroupProblems({ id: 'prod', comment: '', entries }, true)).toEqual([]);
    expect(createRemoteGroupBody({ id: ' prod ', comment: ' c ', entries })).toEqual({
      id: 'prod',
      comment: 'c',
      entries,
    });
    expect(updateRemoteGroupBody({ id: 'prod', comment: 'c', entries: [] })).toEqual({
      comment: 'c',
      entries: [],
    });
  });

  it('refuses a bad id on create, a remote twice and an entry without a credential', () => {
    expect(remoteGroupProblems({ id: 'Prod', comment: '', entries: [] }, true)).toEqual([
      expect.stringMatching(/remote group id/),
    ]);
    expect(remoteGroupProblems({ id: 'Prod', comment: '', entries: [] }, false)).toEqual([]);
    expect(
      remoteGroupProblems(
        {
          id: 'prod',
          comment: '',
          entries: [...entries, { remote: 'dc-east', credential: 'admin' }],
        },
        true,
      ),
    ).toEqual(['each remote may appear once in a remote group']);
    expect(
      remoteGroupProblems(
        { id: 'prod', comment: '', entries: [{ remote: 'dc-east', credential: '' }] },
        true,
      ),
    ).toEqual(['every entry needs a remote and one of its credentials']);
  });
});

describe('API tokens', () => {
  const token = (overrides: Partial<TokenForm> = {}): TokenForm => ({
    ownerType: 'user',
    owner: 'alice@local',
    name: 'ci',
    comment: '',
    expires: '',
    limited: false,
    ...overrides,
  });
  const now = new Date(2026, 5, 15, 12, 0, 0);

  it('expires at the end of the chosen day in local time', () => {
    const end = new Date(endOfDay('2026-06-20')!);
    expect([
      end.getFullYear(),
      end.getMonth(),
      end.getDate(),
      end.getHours(),
      end.getMinutes(),
      end.getSeconds(),
    ]).toEqual([2026, 5, 20, 23, 59, 59]);
    expect(endOfDay('2026-02-30')).toBeNull();
    expect(endOfDay('tomorrow')).toBeNull();
  });

  it('refuses an expiry in the past, a bad owner for its type and a bad name', () => {
    expect(tokenFormProblems(token({ expires: '2026-06-14' }), now)).toEqual([
      'the expiry must be in the future',
    ]);
    expect(tokenFormProblems(token({ expires: '2026-06-15' }), now)).toEqual([]);
    expect(tokenFormProblems(token({ owner: 'alice' }), now)).toEqual([
      expect.stringMatching(/name@realm/),
    ]);
    expect(tokenFormProblems(token({ ownerType: 'group', owner: 'ops' }), now)).toEqual([]);
    expect(
      tokenFormProblems(token({ ownerType: 'me', owner: '', name: 'has space' }), now),
    ).toEqual([expect.stringMatching(/token name/)]);
  });

  it('creates the caller’s own token through …/mine, and another owner’s through the administrators’ route', () => {
    expect(
      createTokenRequest(
        token({ ownerType: 'me', owner: 'ignored', name: ' mine ', limited: true }),
      ),
    ).toEqual({
      mine: true,
      body: { name: 'mine', comment: '', limited: true },
    });
    const other = createTokenRequest(
      token({ ownerType: 'group', owner: ' ops ', expires: '2026-06-20', comment: ' deploy ' }),
    );
    expect(other).toEqual({
      mine: false,
      body: {
        ownerType: 'group',
        owner: 'ops',
        name: 'ci',
        comment: 'deploy',
        limited: false,
        expiresAt: endOfDay('2026-06-20'),
      },
    });
  });

  it('says whether a token is active, expired or revoked', () => {
    expect(tokenState({ revokedAt: null, expiresAt: null }, now)).toBe('active');
    expect(tokenState({ revokedAt: null, expiresAt: '2026-01-01T00:00:00Z' }, now)).toBe('expired');
    expect(tokenState({ revokedAt: '2026-01-01T00:00:00Z', expiresAt: null }, now)).toBe('revoked');
  });
});
