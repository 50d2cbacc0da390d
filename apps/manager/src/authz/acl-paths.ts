/**
 * The one place that builds ACL paths: `/`, `/remotes/{remote}`, `/remotes/{remote}/vms/{vm}`,
 * `/groups/{remote group}`. Every part is URI-encoded, as route parameters are when a route's
 * path template is filled (resolveAclPath), so that a built path and a checked one compare equal.
 */
export const ROOT_ACL_PATH = '/';

export function remoteAclPath(remote: string): string {
  return `/remotes/${encodeURIComponent(remote)}`;
}

export function vmAclPath(remote: string, vm: string): string {
  return `${remoteAclPath(remote)}/vms/${encodeURIComponent(vm)}`;
}

export function remoteGroupAclPath(group: string): string {
  return `/groups/${encodeURIComponent(group)}`;
}

/** The remote and VM a `/remotes/{remote}/vms/{vm}` path names (decoded); undefined for any other path. */
export function parseVmAclPath(path: string): { remote: string; vm: string } | undefined {
  const match = /^\/remotes\/([^/]+)\/vms\/([^/]+)$/.exec(path);
  return match
    ? { remote: decodeURIComponent(match[1]), vm: decodeURIComponent(match[2]) }
    : undefined;
}

/** The remote group a `/groups/{group}` path names (decoded); undefined for any other path. */
export function parseRemoteGroupAclPath(path: string): string | undefined {
  const match = /^\/groups\/([^/]+)$/.exec(path);
  return match ? decodeURIComponent(match[1]) : undefined;
}
