import { describe, expect, it } from 'vitest';
import { actingCredential, remotesNamed, viewHolds, type AccessView, type Grant } from './grants';

const VM_A = '11111111-1111-4111-8111-111111111111';
const VM_B = '22222222-2222-4222-8222-222222222222';

function view(grants: Partial<Grant>[], extra: Partial<AccessView> = {}): AccessView {
  return {
    grants: grants.map((g) => ({
      path: '/',
      role: 'Audit',
      propagate: true,
      tenantGroup: null,
      ...g,
    })),
    limit: null,
    tenantVms: new Map(),
    remoteGroups: new Map(),
    ...extra,
  };
}

describe('viewHolds', () => {
  it('inherits a propagating grant downwards but not a non-propagating one', () => {
    expect(
      viewHolds(
        view([{ path: '/remotes/a', role: 'Manage' }]),
        'vm.power',
        `/remotes/a/vms/${VM_A}`,
      ),
    ).toBe(true);
    expect(
      viewHolds(
        view([{ path: '/remotes/a', role: 'Manage', propagate: false }]),
        'vm.power',
        `/remotes/a/vms/${VM_A}`,
      ),
    ).toBe(false);
    expect(
      viewHolds(
        view([{ path: '/remotes/a', role: 'Manage', propagate: false }]),
        'vm.power',
        '/remotes/a',
      ),
    ).toBe(true);
    expect(
      viewHolds(view([{ path: '/remotes/a', role: 'Manage' }]), 'vm.power', '/remotes/b'),
    ).toBe(false);
  });

  it('does not let a sibling path prefix match (/remotes/a does not cover /remotes/ab)', () => {
    expect(
      viewHolds(view([{ path: '/remotes/a', role: 'Admin' }]), 'remote.modify', '/remotes/ab'),
    ).toBe(false);
  });

  it('limits a privilege-separated token to what both its owner and its own entries allow', () => {
    const owner = [{ path: '/remotes/a', role: 'Manage' as const }];
    const limited = {
      ...view(owner),
      limit: [{ path: '/', role: 'Admin' as const, propagate: true, tenantGroup: null }],
    };
    expect(viewHolds(limited, 'vm.power', '/remotes/a')).toBe(true);
    expect(viewHolds(limited, 'remote.modify', '/remotes/a')).toBe(false);
    expect(viewHolds(limited, 'vm.audit', '/remotes/b')).toBe(false);
    const readOnly = {
      ...view(owner),
      limit: [{ path: '/remotes/a', role: 'Audit' as const, propagate: true, tenantGroup: null }],
    };
    expect(viewHolds(readOnly, 'vm.audit', '/remotes/a')).toBe(true);
    expect(viewHolds(readOnly, 'vm.power', '/remotes/a')).toBe(false);
  });

  it('holds a tenant grant only on the VMs its tenant group owns', () => {
    const tenant = view([{ path: '/', role: 'Manage', tenantGroup: 'tenant-a' }], {
      tenantVms: new Map([['tenant-a', new Set([VM_A])]]),
    });
    expect(viewHolds(tenant, 'vm.power', `/remotes/r/vms/${VM_A}`)).toBe(true);
    expect(viewHolds(tenant, 'vm.power', `/remotes/r/vms/${VM_B}`)).toBe(false);
    expect(viewHolds(tenant, 'vm.audit', `/remotes/r/vms/${VM_B}`)).toBe(false);
    // Above the VM level: nothing outright (no remote's endpoints, trust or nodes; issue 14 item 6),
    // only collections, whose services answer the tenant's own VMs and tasks (item 16).
    expect(viewHolds(tenant, 'remote.audit', '/remotes/r')).toBe(false);
    expect(viewHolds(tenant, 'remote.audit', '/')).toBe(false);
    expect(viewHolds(tenant, 'remote.audit', '/remotes', true)).toBe(true);
    expect(viewHolds(tenant, 'task.audit', '/', true)).toBe(true);
    expect(viewHolds(tenant, 'task.cancel', '/', true)).toBe(true);
    expect(viewHolds(tenant, 'task.cancel', `/remotes/r/vms/${VM_B}`)).toBe(false);
    expect(viewHolds(tenant, 'task.audit', '/remotes/r')).toBe(false);
    expect(viewHolds(tenant, 'remote.modify', '/remotes', true)).toBe(false);
    expect(viewHolds(tenant, 'audit.read', '/')).toBe(false);
  });

  it('opens a collection for a grant below it only when asked for partial access', () => {
    const scoped = view([{ path: '/remotes/a', role: 'Audit' }]);
    expect(viewHolds(scoped, 'remote.audit', '/remotes')).toBe(false);
    expect(viewHolds(scoped, 'remote.audit', '/remotes', true)).toBe(true);
    expect(viewHolds(view([]), 'remote.audit', '/remotes', true)).toBe(false);
  });

  it('extends a remote group grant to the remotes of the group', () => {
    const grouped = view([{ path: '/groups/east', role: 'Manage' }], {
      remoteGroups: new Map([['east', new Map([['a', 'cred-a']])]]),
    });
    expect(viewHolds(grouped, 'vm.power', `/remotes/a/vms/${VM_A}`)).toBe(true);
    expect(viewHolds(grouped, 'vm.power', '/remotes/b')).toBe(false);
    expect(viewHolds(grouped, 'remote.audit', '/remotes', true)).toBe(true);
    expect(remotesNamed(grouped)).toEqual(new Set(['a']));
  });
});

describe('actingCredential', () => {
  const groups = new Map([['east', new Map([['a', 'cred-operator']])]]);

  it('acts with the remote group entry credential when the right comes from the group', () => {
    expect(
      actingCredential(
        view([{ path: '/groups/east', role: 'Manage' }], { remoteGroups: groups }),
        'vm.power',
        '/remotes/a',
        'a',
      ),
    ).toBe('cred-operator');
  });

  it('acts with the remote default when a direct grant allows it', () => {
    expect(
      actingCredential(
        view(
          [
            { path: '/groups/east', role: 'Manage' },
            { path: '/remotes/a', role: 'Manage' },
          ],
          { remoteGroups: groups },
        ),
        'vm.power',
        '/remotes/a',
        'a',
      ),
    ).toBeNull();
  });

  it('answers undefined when nothing allows it', () => {
    expect(
      actingCredential(
        view([{ path: '/groups/east', role: 'Audit' }], { remoteGroups: groups }),
        'vm.power',
        '/remotes/a',
        'a',
      ),
    ).toBeUndefined();
  });
});
