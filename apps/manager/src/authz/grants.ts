import { aclPathAncestors, roleGrants, type Privilege, type Role } from '@debvisor/permissions';
import { parseRemoteGroupAclPath, remoteAclPath } from './acl-paths';

/** One ACL entry as the caller holds it (directly, through a group, or as a token's own entry). */
export interface Grant {
  readonly path: string;
  readonly role: Role;
  readonly propagate: boolean;
  /** Set when the entry was granted to a tenant group: it then holds only on the VMs that group owns. */
  readonly tenantGroup: string | null;
}

/**
 * Everything needed to decide what a caller may do, loaded once per authentication: its grants, the
 * limit of a privilege-separated token, the VMs of its tenant groups and the members of the remote
 * groups its grants name.
 */
export interface AccessView {
  readonly grants: readonly Grant[];
  /** A limited token's own entries: it holds only what both `grants` and `limit` allow. */
  readonly limit: readonly Grant[] | null;
  /** VM uuids owned by each tenant group that appears in the grants. */
  readonly tenantVms: ReadonlyMap<string, ReadonlySet<string>>;
  /** For each remote group named by a grant (`/groups/{id}`): its remotes and the credential used on each. */
  readonly remoteGroups: ReadonlyMap<string, ReadonlyMap<string, string>>;
}

/**
 * Above the VM level a tenant grant holds nothing outright (no remote's endpoints, trust, credentials
 * or nodes); it opens only collections (`partial`) with these privileges, whose services then answer
 * the tenant's own VMs and their tasks (and cancel only those).
 */
const TENANT_COLLECTION_PRIVILEGES: ReadonlySet<Privilege> = new Set([
  'remote.audit',
  'vm.audit',
  'task.audit',
  'task.cancel',
]);

interface Target {
  readonly path: string;
  readonly remote: string | null;
  readonly vm: string | null;
}

function target(path: string): Target {
  const parts = path.split('/').filter(Boolean);
  const remote = parts[0] === 'remotes' && parts[1] ? decodeURIComponent(parts[1]) : null;
  const vm = remote && parts[2] === 'vms' && parts[3] ? decodeURIComponent(parts[3]) : null;
  return { path, remote, vm };
}

/** The paths a grant covers for `t`: its own path, and for a remote group the member remote's path. */
function coveredPath(view: AccessView, grant: Grant, t: Target): string | undefined {
  const group = parseRemoteGroupAclPath(grant.path);
  if (group !== undefined && t.remote !== null && view.remoteGroups.get(group)?.has(t.remote)) {
    return remoteAclPath(t.remote);
  }
  return grant.path;
}

function applies(view: AccessView, grant: Grant, privilege: Privilege, t: Target): boolean {
  if (!roleGrants(grant.role, privilege)) return false;
  const path = coveredPath(view, grant, t);
  if (path === undefined) return false;
  const onPath = path === t.path || (grant.propagate && aclPathAncestors(t.path).includes(path));
  if (!onPath) return false;
  if (grant.tenantGroup === null) return true;
  return t.vm !== null && (view.tenantVms.get(grant.tenantGroup)?.has(t.vm) ?? false);
}

/** A grant below `t` (for collections: the caller may see part of it). */
function appliesBelow(view: AccessView, grant: Grant, privilege: Privilege, t: Target): boolean {
  if (!roleGrants(grant.role, privilege)) return false;
  if (grant.tenantGroup !== null && t.vm === null && TENANT_COLLECTION_PRIVILEGES.has(privilege)) {
    if (grant.path === t.path || (grant.propagate && aclPathAncestors(t.path).includes(grant.path)))
      return true;
  }
  const prefix = t.path === '/' ? '/' : `${t.path}/`;
  if (grant.path.startsWith(prefix) && grant.path !== t.path) return true;
  const group = parseRemoteGroupAclPath(grant.path);
  if (group === undefined) return false;
  const remotes = view.remoteGroups.get(group);
  if (!remotes || remotes.size === 0) return false;
  return t.path === '/' || t.path === '/remotes';
}

function holdsIn(
  view: AccessView,
  grants: readonly Grant[],
  privilege: Privilege,
  t: Target,
  partial: boolean,
): boolean {
  return grants.some(
    (grant) =>
      applies(view, grant, privilege, t) || (partial && appliesBelow(view, grant, privilege, t)),
  );
}

/** True when the view holds `privilege` on `path` (or, with `partial`, anywhere below it). */
export function viewHolds(
  view: AccessView,
  privilege: Privilege,
  path: string,
  partial = false,
): boolean {
  const t = target(path);
  return (
    holdsIn(view, view.grants, privilege, t, partial) &&
    (view.limit === null || holdsIn(view, view.limit, privilege, t, partial))
  );
}

/**
 * True when grants outside remote groups (and outside tenant groups) hold `privilege` on `path`: for
 * what a remote group's grant must never reach, such as a remote's endpoints and trust.
 */
export function viewHoldsDirectly(view: AccessView, privilege: Privilege, path: string): boolean {
  const direct = (grants: readonly Grant[]) =>
    grants.filter((g) => g.tenantGroup === null && !g.path.startsWith('/groups/'));
  return viewHolds(
    { ...view, grants: direct(view.grants), limit: view.limit && direct(view.limit) },
    privilege,
    path,
  );
}

/**
 * The credential to act with on `path` of remote `remoteId`: null (the remote's default) when a
 * grant outside remote groups allows it, else the credential of a remote group whose grant does;
 * undefined when nothing allows it.
 */
export function actingCredential(
  view: AccessView,
  privilege: Privilege,
  path: string,
  remoteId: string,
): string | null | undefined {
  if (!viewHolds(view, privilege, path)) return undefined;
  const t = target(path);
  const direct = view.grants.filter((g) => !g.path.startsWith('/groups/'));
  if (holdsIn(view, direct, privilege, t, false)) return null;
  for (const grant of view.grants) {
    const group = parseRemoteGroupAclPath(grant.path);
    if (group !== undefined && applies(view, grant, privilege, t)) {
      const credential = view.remoteGroups.get(group)?.get(remoteId);
      if (credential) return credential;
    }
  }
  return undefined;
}

/** The remote ids named by grants on `/remotes/{id}` and in remote groups: candidates for collections. */
export function remotesNamed(view: AccessView): Set<string> {
  const ids = new Set<string>();
  for (const grant of [...view.grants, ...(view.limit ?? [])]) {
    const remote = /^\/remotes\/([^/]+)/.exec(grant.path);
    if (remote) ids.add(decodeURIComponent(remote[1]));
    const group = parseRemoteGroupAclPath(grant.path);
    if (group !== undefined)
      for (const id of view.remoteGroups.get(group)?.keys() ?? []) ids.add(id);
  }
  return ids;
}
