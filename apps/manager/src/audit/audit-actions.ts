/** The principal of the work the manager does on its own (the resource poller, start-up). */
export const SYSTEM_PRINCIPAL = 'debvisor-manager';

/**
 * What the manager records in its audit log: a small, fixed vocabulary (the API filters on it, so
 * a name once used stays). A route or call site can only use one of these.
 */
export const AUDIT_ACTIONS = {
  'auth.login':
    'An authentication attempt: API token (or, with realms, password, OpenID Connect …), its result and source',
  'authz.denied': 'A request refused for a missing privilege',
  'ratelimit.hit': 'A request refused by a rate limit',
  'remote.create': 'A remote was added',
  'remote.update': 'A remote’s description, endpoints or trust anchor changed',
  'remote.delete': 'A remote was removed',
  'remote.probe': 'The certificate chain of an endpoint was fetched',
  'remote.ca-rotation':
    "A rotation of a remote cluster's CA was asked for (begin, finish or the whole; the task carries it out)",
  'remote.credential.add': 'A credential (agent API key) was added to a remote',
  'remote.credential.remove': 'A credential was removed from a remote',
  'remote.node.decommission':
    'A node that did not answer was decommissioned by an operator (listed as such, its unknown VMs leave the lists, no alert)',
  'remote.node.forget':
    'A node that did not answer was forgotten by an operator (it and its unknown VMs leave the lists)',
  'vm.power.start': 'A VM start was asked for (the task carries it out)',
  'vm.power.shutdown': 'A VM shutdown was asked for',
  'vm.power.reboot': 'A VM reboot was asked for',
  'vm.power.stop': 'A VM hard stop was asked for',
  'vm.console.ticket': "A single-use ticket for a VM's console was issued",
  'vm.console.open': "A VM's console was opened in a browser (the ticket redeemed)",
  'vm.console.close':
    "A VM's console closed: its duration and why (viewer left, VM gone, session ended, right lost)",
  'vm.migrate': 'A VM migration was asked for (the task carries it out)',
  'vm.migrate.preflight': 'The pre-flight checks of a VM migration were run on both ends',
  'vm.snapshot.create': 'A VM snapshot was asked for (the task takes it)',
  'vm.snapshot.delete': 'Deleting a VM snapshot was asked for (the task deletes it)',
  'vm.snapshot.rollback':
    'Rolling a VM back to a snapshot was asked for (the task does it, stopping the VM first when asked)',
  'vm.snapshot.schedule.create': 'A snapshot schedule was created',
  'vm.snapshot.schedule.update': 'A snapshot schedule was changed (timing, retention, enabled)',
  'vm.snapshot.schedule.delete': 'A snapshot schedule was removed (its snapshots stay)',
  'vm.snapshot.schedule.run': 'A snapshot schedule was run on demand',
  'system.certificate.account.create': 'An ACME account was registered with a CA',
  'system.certificate.account.delete': 'An ACME account was forgotten',
  'system.certificate.settings': 'The ACME settings (account, names, challenge) changed',
  'system.certificate.order': 'An ACME certificate was ordered by hand',
  'system.certificate.renew': 'The manager renewed its ACME certificate on its own (or failed to)',
  'system.certificate.revoke': 'The served ACME certificate was revoked',
  'system.certificate.upload': 'A custom HTTPS certificate was uploaded',
  'system.certificate.self-signed': 'The self-signed HTTPS certificate was put back',
  'task.finish': 'A task ended (succeeded or failed)',
  'task.cancel': 'Cancelling a task was asked for',
  'auth.logout': 'A session was ended, or all sessions of a user (log out everywhere)',
  'access.user.create': 'A user was created',
  'access.user.update': 'A user was changed (enabled, second-factor rule, names)',
  'access.user.delete': 'A user was removed',
  'access.user.unlock': 'An administrator unlocked a user’s password or second factor',
  'access.tfa.enrolment_code':
    'An administrator issued a one-time second-factor enrolment code for a user (never the code)',
  'access.password.change': 'A user changed their own password',
  'access.password.reset': 'An administrator set a user’s password',
  'access.group.create': 'A group was created',
  'access.group.update': 'A group was changed (members, tenancy, second-factor rule)',
  'access.group.delete': 'A group was removed',
  'access.acl.grant': 'A role was granted on a path',
  'access.acl.revoke': 'A role was taken back',
  'access.token.create': 'An API token was created (its secret is shown once, never recorded)',
  'access.token.update': 'An API token was changed',
  'access.token.revoke': 'An API token was revoked',
  'access.tfa.enrol': 'A TOTP device was added (unconfirmed until a valid code)',
  'access.tfa.confirm': 'A TOTP device was confirmed',
  'access.tfa.remove': 'A second factor was removed',
  'access.tfa.recovery': 'New recovery codes were generated',
  'access.realm.create': 'A realm was added',
  'access.realm.update': 'A realm’s settings or secret changed',
  'access.realm.delete': 'A realm was removed',
  'access.realm.sync': 'A realm’s users and groups were synced from its directory',
  'access.remote-group.create': 'A remote group was created',
  'access.remote-group.update': 'A remote group’s entries changed',
  'access.remote-group.delete': 'A remote group was removed',
  'access.vm-owner.set': 'A VM was given to a tenant group',
  'access.vm-owner.clear': 'A VM was taken from its tenant group',
  'agent.call': 'A call the manager made to an agent: RPC, remote, endpoint, outcome',
  'agent.call.summary':
    "The manager's own routine reads of one remote (polling) over an interval, summed up: calls per RPC and outcome, the last error",
  'replication.pair.create':
    'Pairing two remotes’ pools for RBD mirroring was asked for (the bootstrap secret is never recorded)',
  'replication.pair.delete': 'A pairing of two remotes’ pools was removed from the manager',
  'vm.replication.enable': 'Mirroring a VM’s disks to the paired remote was asked for',
  'vm.replication.disable': 'Mirroring of a VM was turned off',
  'vm.replication.switchover':
    'A planned switchover of a mirrored VM to its other remote was asked for',
  'vm.replication.failover':
    'An unplanned failover was asked for: data loss confirmed, with the fence or the operator’s declaration that the source is down',
  'vm.replication.resync': 'The stale copy of a mirrored VM was to be demoted and resynced',
  'vm.ha.policy.set':
    'A VM was put under high availability or its HA policy changed (priority, preferred nodes, limits)',
  'vm.ha.policy.remove': 'A VM was taken out of high availability',
  'node.maintenance.enter':
    'A node was put into maintenance: HA places nothing on it, and the ha.drain task follows it until its VMs are gone',
  'node.maintenance.exit': 'A node was taken out of maintenance and returns to service',
  'ha.event':
    "An HA event the manager saw in a cluster: a coordinator elected or lost, a node fenced, a VM recovered or not, a drain's end (details: kind, node, VM, reason)",
} as const;

export type AuditAction = keyof typeof AUDIT_ACTIONS;
export const AUDIT_ACTION_NAMES = Object.keys(AUDIT_ACTIONS) as AuditAction[];

/** RPCs that change something on the agent side: the manager records an attempt before calling them. */
export const MUTATING_AGENT_RPCS: ReadonlySet<string> = new Set([
  'VmService.StartVm',
  'VmService.ShutdownVm',
  'VmService.RebootVm',
  'VmService.StopVm',
  'VmService.DefineVm',
  'VmService.UndefineVm',
  'MigrationService.PrepareMigration',
  'MigrationService.MigrateVm',
  'MigrationService.CancelMigration',
  'StorageService.SnapshotVm',
  'StorageService.DeleteVmSnapshot',
  'StorageService.RollbackVm',
  'StorageService.EnableMirroring',
  'StorageService.DisableMirroring',
  'StorageService.CreateMirrorSnapshot',
  'StorageService.PromoteImage',
  'StorageService.DemoteImage',
  'StorageService.ResyncImage',
  'StorageService.CreatePeerBootstrap',
  'StorageService.ImportPeerBootstrap',
  'StorageService.FenceImage',
  'NodeService.BeginCaRotation',
  'NodeService.FinishCaRotation',
  'HaService.SetHaPolicy',
  'HaService.RemoveHaPolicy',
  'HaService.SetMaintenance',
]);
