import { describe, expect, it } from 'vitest';
import { isAbout } from './mutations';

describe('isAbout', () => {
  const left = { remote: 'dc-east', vmid: '0b6e1d1e-0000-4000-8000-000000000001' };

  it('names the queries of the VM at the remote it left', () => {
    expect(isAbout(['migration', 'vm', 'dc-east', left.vmid], left)).toBe(true);
    expect(isAbout(['resources', 'vm', 'dc-east', left.vmid, 'snapshots'], left)).toBe(true);
  });

  it('leaves the VM at its new remote and the other VMs of the old one', () => {
    expect(isAbout(['resources', 'vm', 'dc-west', left.vmid], left)).toBe(false);
    expect(isAbout(['resources', 'vm', 'dc-east', 'another'], left)).toBe(false);
    expect(isAbout(['resources', 'vms', 'dc-east'], left)).toBe(false);
  });
});
