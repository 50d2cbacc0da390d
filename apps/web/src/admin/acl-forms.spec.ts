import { describe, expect, it } from 'vitest';
import {
  aclFormProblems,
  aclKey,
  aclPathProblem,
  aclPathSuggestions,
  principalProblem,
  putAclBody,
  ROLES,
  sortAclEntries,
} from './acl-forms';

describe('ACL paths', () => {
  it('suggests the fixed paths and one per known remote and remote group, sorted', () => {
    expect(aclPathSuggestions(['dc-west', 'dc-east'], ['prod'])).toEqual([
      '/',
      '/remotes',
      '/remotes/dc-east',
      '/remotes/dc-west',
      '/groups',
      '/groups/prod',
      '/access',
      '/system',
    ]);
  });

  it('accepts the forms the manager accepts', () => {
    for (const path of [
      '/',
      '/remotes',
      '/remotes/dc-east',
      '/remotes/dc-east/vms',
      '/remotes/dc-east/vms/7b0e5e8e-0000-4000-8000-000000000000',
      '/groups',
      '/groups/prod',
      '/access',
      '/system',
    ]) {
      expect(aclPathProblem(path), path).toBeNull();
    }
  });

  it('refuses anything else: trailing slashes, unknown roots, bad ids, a VM that is not a uuid', () => {
    for (const path of [
      '',
      'remotes',
      '/remotes/',
      '/nodes',
      '/access/users',
      '/remotes/DC',
      '/remotes/a/nodes',
      '/remotes/a/vms/b/c',
      '/groups/a/b',
    ]) {
      expect(aclPathProblem(path), path).toMatch(/not an ACL path/);
    }
    expect(aclPathProblem('/remotes/a/vms/web-1')).toBe('web-1 is not a VM uuid');
  });
});

describe('ACL entries', () => {
  it('checks the principal against its type', () => {
    expect(principalProblem('user', 'alice@local')).toBeNull();
    expect(principalProblem('user', 'alice')).toMatch(/name@realm/);
    expect(principalProblem('group', 'ops')).toBeNull();
    expect(principalProblem('group', 'alice@local')).toMatch(/group/);
    expect(principalProblem('token', '0123456789abcdef')).toBeNull();
    expect(principalProblem('token', 'dvdm_0123456789abcdef')).toMatch(/16 hex digits/);
  });

  it('builds the PUT body and the key to remove an entry with', () => {
    const form = {
      path: ' /remotes/dc-east ',
      principalType: 'user' as const,
      principal: ' alice@local ',
      role: 'Manage' as const,
      propagate: false,
    };
    expect(aclFormProblems(form)).toEqual([]);
    expect(putAclBody(form)).toEqual({
      path: '/remotes/dc-east',
      principalType: 'user',
      principal: 'alice@local',
      role: 'Manage',
      propagate: false,
    });
    expect(
      aclKey({
        path: '/',
        principalType: 'group',
        principal: 'ops',
        role: 'Audit',
        propagate: true,
        createdAt: '',
      } as never),
    ).toEqual({
      path: '/',
      principalType: 'group',
      principal: 'ops',
    });
    expect(aclFormProblems({ ...form, path: '/x', principal: 'alice' })).toHaveLength(2);
  });

  it('offers the roles of the shared permission definition, and lists entries by path then principal', () => {
    expect(ROLES).toEqual(['Audit', 'Manage', 'Admin']);
    const entries = [
      { path: '/remotes', principalType: 'user', principal: 'b@local' },
      { path: '/', principalType: 'user', principal: 'z@local' },
      { path: '/remotes', principalType: 'group', principal: 'ops' },
      { path: '/remotes', principalType: 'user', principal: 'a@local' },
    ];
    expect(sortAclEntries(entries).map((e) => `${e.path} ${e.principal}`)).toEqual([
      '/ z@local',
      '/remotes ops',
      '/remotes a@local',
      '/remotes b@local',
    ]);
  });
});
