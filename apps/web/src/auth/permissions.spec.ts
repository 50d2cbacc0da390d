import { describe, expect, it } from 'vitest';
import { may } from './permissions';
import type { SignedIn } from './queries';

const auditor: SignedIn = {
  via: 'session',
  user: 'audit@local',
  stage: 'active',
  privileges: new Set(['vm.audit', 'remote.audit']),
};
const token: SignedIn = { via: 'token', user: 'API token', stage: 'active', privileges: null };

describe('may', () => {
  it('follows the privileges reported for the object when there are some', () => {
    expect(may(auditor, 'vm.power', ['vm.audit', 'vm.power'])).toBe(true);
    expect(may(token, 'vm.power', ['vm.audit'])).toBe(false);
  });

  it('falls back to what is held on / (unknown for a token: offered)', () => {
    expect(may(auditor, 'vm.audit')).toBe(true);
    expect(may(auditor, 'vm.power')).toBe(false);
    expect(may(token, 'vm.power')).toBe(true);
  });
});
