import { describe, expect, it } from 'vitest';
import {
  aclPathAncestors,
  ALL_PRIVILEGES,
  isReadPrivilege,
  resolveAclPath,
  roleGrants,
} from './index';

describe('roles', () => {
  it('gives Audit only read privileges', () => {
    for (const p of ALL_PRIVILEGES) expect(roleGrants('Audit', p), p).toBe(isReadPrivilege(p));
    expect(roleGrants('Audit', 'vm.power')).toBe(false);
  });

  it('lets Manage change VM state but not configuration', () => {
    expect(roleGrants('Manage', 'vm.power')).toBe(true);
    expect(roleGrants('Manage', 'vm.migrate')).toBe(true);
    expect(roleGrants('Manage', 'vm.replicate')).toBe(true);
    expect(roleGrants('Manage', 'remote.modify')).toBe(false);
    expect(roleGrants('Manage', 'access.modify')).toBe(false);
  });

  it('opens consoles to Manage and Admin, never to auditors', () => {
    expect(roleGrants('Manage', 'vm.console')).toBe(true);
    expect(roleGrants('Admin', 'vm.console')).toBe(true);
    expect(roleGrants('Audit', 'vm.console')).toBe(false);
  });

  it('keeps unplanned failover (data loss at risk) to Admin', () => {
    expect(roleGrants('Manage', 'vm.failover')).toBe(false);
    expect(roleGrants('Audit', 'vm.failover')).toBe(false);
    expect(roleGrants('Admin', 'vm.failover')).toBe(true);
  });

  it('lets Manage and Admin set HA policies and drain nodes, never auditors', () => {
    for (const p of ['vm.ha', 'node.maintenance'] as const) {
      expect(roleGrants('Manage', p), p).toBe(true);
      expect(roleGrants('Admin', p), p).toBe(true);
      expect(roleGrants('Audit', p), p).toBe(false);
    }
  });

  it('gives Admin everything', () => {
    for (const p of ALL_PRIVILEGES) expect(roleGrants('Admin', p)).toBe(true);
  });
});

describe('ACL paths', () => {
  it('fills templates from route parameters, escaping them', () => {
    expect(resolveAclPath('/remotes/{remote}/vms/{vmid}', { remote: 'dc-east', vmid: 'a/b' })).toBe(
      '/remotes/dc-east/vms/a%2Fb',
    );
    expect(() => resolveAclPath('/remotes/{remote}', {})).toThrow(/needs route parameter remote/);
  });

  it('lists the ancestors a grant is inherited from', () => {
    expect(aclPathAncestors('/remotes/a/vms/b')).toEqual([
      '/',
      '/remotes',
      '/remotes/a',
      '/remotes/a/vms',
      '/remotes/a/vms/b',
    ]);
    expect(aclPathAncestors('/')).toEqual(['/']);
  });
});
