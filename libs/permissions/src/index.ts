/**
 * The one definition of the manager's privileges and roles. The manager's guard enforces it, the
 * OpenAPI document shows it, and the web UI hides what a user may not do with it.
 */

export const PRIVILEGES = {
  'system.audit': "Read the manager's own state: health, settings, certificates",
  'system.modify': "Change the manager's settings",
  'remote.audit': 'See remotes, their nodes and their status',
  'remote.modify': 'Add, change and remove remotes and their credentials',
  'remote.trust':
    "Rotate a remote cluster's CA (the agents' trust root) and, with it, the CA the manager trusts for the remote",
  'vm.audit': 'See virtual machines',
  'vm.power': 'Start, shut down, reboot and stop virtual machines',
  'vm.console':
    "Open a virtual machine's console (screen, keyboard and mouse) in the browser, with a single-use ticket",
  'vm.migrate': 'Migrate virtual machines',
  'vm.snapshot': 'Take and roll back snapshots',
  'vm.replicate':
    'Mirror virtual machines to a paired remote: enable, disable, planned switchover, resync',
  'vm.failover':
    'Unplanned failover of a mirrored virtual machine: force-promote its copy at the surviving remote (risks the data since the last mirrored snapshot)',
  'vm.ha':
    "Set a virtual machine's high-availability policy: protected or not, priority, preferred nodes, restart and relocation limits",
  'node.maintenance':
    'Put a node into maintenance (HA places nothing on it and live-migrates its VMs away; in maintenance once none is left) and take it out again',
  'task.audit': 'See tasks and their logs',
  'task.cancel': 'Cancel running tasks',
  'access.audit': 'See users, groups, realms, ACLs and tokens',
  'access.modify': 'Change users, groups, realms, ACLs and tokens',
  'audit.read': 'Read the audit log',
} as const;

export type Privilege = keyof typeof PRIVILEGES;
export const ALL_PRIVILEGES = Object.keys(PRIVILEGES) as Privilege[];

export const ROLES = ['Audit', 'Manage', 'Admin'] as const;
export type Role = (typeof ROLES)[number];

const AUDIT: readonly Privilege[] = ALL_PRIVILEGES.filter(
  (p) => p.endsWith('.audit') || p === 'audit.read',
);
/** vm.failover is Admin only: it gives up the data not yet mirrored, and on a wrong declaration two sites write. */
const MANAGE: readonly Privilege[] = [
  ...AUDIT,
  'vm.power',
  'vm.console',
  'vm.migrate',
  'vm.snapshot',
  'vm.replicate',
  'vm.ha',
  'node.maintenance',
  'task.cancel',
];

export const ROLE_PRIVILEGES: Readonly<Record<Role, ReadonlySet<Privilege>>> = {
  Audit: new Set(AUDIT),
  Manage: new Set(MANAGE),
  Admin: new Set(ALL_PRIVILEGES),
};

export function roleGrants(role: Role, privilege: Privilege): boolean {
  return ROLE_PRIVILEGES[role].has(privilege);
}

/** True for privileges that only read; every other one changes state. */
export function isReadPrivilege(privilege: Privilege): boolean {
  return ROLE_PRIVILEGES.Audit.has(privilege);
}

/**
 * What a route needs: a privilege on an ACL path. The path is a template whose `{name}` parts are
 * filled from the route's parameters: `/`, `/remotes/{remote}`, `/remotes/{remote}/vms/{vmid}`.
 */
export interface PrivilegeRequirement {
  privilege: Privilege;
  path: string;
}

/** Fills a path template from route parameters; a missing parameter is an error in the route. */
export function resolveAclPath(
  template: string,
  params: Record<string, string | undefined>,
): string {
  return template.replace(/\{([a-zA-Z]+)\}/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`ACL path ${template} needs route parameter ${name}`);
    return encodeURIComponent(value);
  });
}

/** `/remotes/a/vms/b` → [`/`, `/remotes`, `/remotes/a`, `/remotes/a/vms`, `/remotes/a/vms/b`]: where grants are inherited from. */
export function aclPathAncestors(path: string): string[] {
  const parts = path.split('/').filter(Boolean);
  return ['/', ...parts.map((_, i) => '/' + parts.slice(0, i + 1).join('/'))];
}
