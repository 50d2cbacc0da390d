import { resolveAclPath, type Privilege } from '@debvisor/permissions';
import { Injectable } from '@nestjs/common';
import { PermissionDenied } from '../common/domain-error';
import { parseVmAclPath, remoteAclPath, vmAclPath } from './acl-paths';
import type { Caller } from './caller';
import { actingCredential, remotesNamed, viewHolds, viewHoldsDirectly } from './grants';
import type { RouteRequirement } from './privilege.decorator';

/**
 * What a caller may do, decided from its access view alone (no I/O): the guard's check, the
 * filters of list endpoints, and the credential to act with on a remote.
 */
/** A remote id no remote has (ids are lowercase): tenant grants on `/` reach owned VMs through it. */
const TENANT_ANY_REMOTE = '*';

@Injectable()
export class AccessPolicy {
  /** Throws 403 unless the caller holds the route's privilege on its ACL path (filled from `params`). */
  authorize(
    caller: Caller,
    requirement: RouteRequirement,
    params: Record<string, string | undefined>,
  ): void {
    const path = resolveAclPath(requirement.path, params);
    if (!viewHolds(caller, requirement.privilege, path, requirement.partial)) {
      throw new PermissionDenied(
        requirement,
        params,
        `permission denied: needs ${requirement.privilege} on ${path}`,
      );
    }
  }

  /** True when the caller holds `privilege` on `path` (directly or inherited). */
  holds(caller: Caller, privilege: Privilege, path: string): boolean {
    return viewHolds(caller, privilege, path);
  }

  /** Throws 403 unless grants outside remote groups and tenant groups hold `privilege` on `path`. */
  authorizeDirectly(caller: Caller, privilege: Privilege, path: string, what: string): void {
    if (!viewHoldsDirectly(caller, privilege, path))
      throw new PermissionDenied(
        { privilege, path },
        {},
        `permission denied: ${what} needs ${privilege} on ${path}, granted directly (not through a remote group)`,
      );
  }

  /**
   * Which of the remote's credentials to act with: null for the remote's default, a credential id
   * when the caller's right comes from a remote group; 403 when nothing allows it.
   */
  credentialFor(
    caller: Caller,
    privilege: Privilege,
    path: string,
    remoteId: string,
  ): string | null {
    const credential = actingCredential(caller, privilege, path, remoteId);
    if (credential === undefined)
      throw new PermissionDenied(
        { privilege, path },
        {},
        `permission denied: needs ${privilege} on ${path}`,
      );
    return credential;
  }

  /** The subset of `remoteIds` on which the caller holds `privilege` (one pass, no query per item). */
  allowedRemotes(caller: Caller, privilege: Privilege, remoteIds: Iterable<string>): Set<string> {
    const allowed = new Set<string>();
    for (const id of remoteIds)
      if (viewHolds(caller, privilege, remoteAclPath(id))) allowed.add(id);
    return allowed;
  }

  /**
   * The VMs the caller holds `privilege` on through grants on single VMs or tenant grants (their
   * owned VMs) — what collections add to `remoteScope`.
   */
  vmScope(caller: Caller, privilege: Privilege): Set<string> {
    const vms = new Set<string>();
    for (const grant of caller.grants) {
      const single = parseVmAclPath(grant.path);
      if (single && viewHolds(caller, privilege, grant.path)) vms.add(single.vm);
      if (grant.tenantGroup === null) continue;
      // Tenant grants hold on owned VMs wherever they run: the remote part of the path does not matter.
      for (const vm of caller.tenantVms.get(grant.tenantGroup) ?? []) {
        if (viewHolds(caller, privilege, vmAclPath(TENANT_ANY_REMOTE, vm))) vms.add(vm);
      }
    }
    return vms;
  }

  /**
   * Where the caller holds `privilege` among remotes: everywhere (granted on `/` or `/remotes`), or
   * the set of remote ids it holds it on — for filtering collections in SQL. (Grants on single VMs
   * do not open the remote's collections.)
   */
  remoteScope(caller: Caller, privilege: Privilege): 'all' | Set<string> {
    if (viewHolds(caller, privilege, '/remotes')) return 'all';
    return this.allowedRemotes(caller, privilege, remotesNamed(caller));
  }
}
