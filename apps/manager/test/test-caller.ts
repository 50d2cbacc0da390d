import type { Role } from '@debvisor/permissions';
import type { Caller } from '../src/authz/caller';
import type { Grant } from '../src/authz/grants';

/** For unit tests: a token caller holding `grants` (propagating, not tenant-scoped unless said). */
export function testCaller(
  grants: readonly (Pick<Grant, 'path'> & { role: Role } & Partial<Grant>)[],
  extra: Partial<Caller> = {},
): Caller {
  return {
    kind: 'token',
    principal: 'root@local',
    principalType: 'user',
    groups: [],
    tokenId: 't',
    tokenName: 'b',
    sessionId: null,
    display: 'root@local!b',
    grants: grants.map((g) => ({ propagate: true, tenantGroup: null, ...g })),
    limit: null,
    tenantVms: new Map(),
    remoteGroups: new Map(),
    ...extra,
  };
}
