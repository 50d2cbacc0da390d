/**
 * What the manager records in its audit log: a small, fixed vocabulary (the API filters on it, so
 * a name once used stays). A route or call site can only use one of these.
 */
export const AUDIT_ACTIONS = {
  'auth.login': 'An authentication attempt: API token (or, with realms, password, OpenID Connect …), its result and source',
  'authz.denied': 'A request refused for a missing privilege',
  'ratelimit.hit': 'A request refused by a rate limit',
  'remote.create': 'A remote was added',
  'remote.update': 'A remote’s description, endpoints or trust anchor changed',
  'remote.delete': 'A remote was removed',
  'remote.probe': 'The certificate chain of an endpoint was fetched',
  'remote.credential.add': 'A credential (agent API key) was added to a remote',
  'remote.credential.remove': 'A credential was removed from a remote',
  'vm.power.start': 'A VM start was asked for (the task carries it out)',
  'vm.power.shutdown': 'A VM shutdown was asked for',
  'vm.power.reboot': 'A VM reboot was asked for',
  'vm.power.stop': 'A VM hard stop was asked for',
  'task.finish': 'A task ended (succeeded or failed)',
  'agent.call': 'A call the manager made to an agent: RPC, remote, endpoint, outcome',
} as const;

export type AuditAction = keyof typeof AUDIT_ACTIONS;
export const AUDIT_ACTION_NAMES = Object.keys(AUDIT_ACTIONS) as AuditAction[];

/** RPCs that change something on the agent side: the manager records an attempt before calling them. */
export const MUTATING_AGENT_RPCS: ReadonlySet<string> = new Set(['VmService.StartVm', 'VmService.ShutdownVm', 'VmService.RebootVm', 'VmService.StopVm']);
