import { describe, expect, it } from 'vitest';
import { AccessPolicy } from './access-policy.service';
import { testCaller } from '../../test/test-caller';

const OWNED = '11111111-1111-4111-8111-111111111111';
const OTHER = '22222222-2222-4222-8222-222222222222';

describe('AccessPolicy scopes for collections', () => {
  const policy = new AccessPolicy();

  it('answers a tenant its owned VMs, not the remotes, for task lists', () => {
    const tenant = testCaller([{ path: '/', role: 'Manage', tenantGroup: 'tenant-a' }], {
      tenantVms: new Map([['tenant-a', new Set([OWNED])]]),
    });
    expect(policy.remoteScope(tenant, 'task.audit')).toEqual(new Set());
    expect(policy.vmScope(tenant, 'task.audit')).toEqual(new Set([OWNED]));
  });

  it('adds VMs granted one by one, and nothing for a privilege the grant lacks', () => {
    const single = testCaller([{ path: `/remotes/r/vms/${OTHER}`, role: 'Audit' }]);
    expect(policy.vmScope(single, 'task.audit')).toEqual(new Set([OTHER]));
    expect(policy.vmScope(single, 'vm.power')).toEqual(new Set());
  });

  it('answers all remotes for a grant on /', () => {
    expect(policy.remoteScope(testCaller([{ path: '/', role: 'Audit' }]), 'task.audit')).toBe(
      'all',
    );
  });
});
