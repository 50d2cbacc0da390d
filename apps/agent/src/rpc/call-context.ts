/** Who is calling: an API key's holder, or that holder as vouched for by a peer agent. */
export interface Caller {
  readonly principal: string;
  readonly permissions: readonly string[];
  /** The API key that authenticated the call (for a forwarded call: looked up again here). */
  readonly keyId?: string;
  /** Node id of the agent that forwarded the call on the caller's behalf. */
  readonly forwardedBy?: string;
}

export interface CallContext {
  readonly caller: Caller;
  /** Forwarded by a peer agent: answer from this node only, never forward again. */
  readonly forwarded: boolean;
  /** Epoch milliseconds by which the caller wants an answer (undefined: no deadline). */
  readonly deadline: number | undefined;
  readonly traceId: string;
}

/** Metadata a forwarding agent sends along with its own agent certificate. */
export const FORWARD_METADATA = {
  principal: 'x-debvisor-forwarded-principal',
  permissions: 'x-debvisor-forwarded-permissions',
  /** The id of the API key that authenticated the original caller, looked up again by the callee. */
  keyId: 'x-debvisor-forwarded-key-id',
  traceId: 'x-debvisor-trace-id',
} as const;

/**
 * What an agent may do as itself on a peer (a call forwarded without an API key): read a VM's
 * state for a check of its own (StorageService's image-in-use check), and, as the HA coordinator,
 * fail a fenced node's VM over (FailoverVm checks that the caller is the coordinator of the
 * current fencing epoch), live-migrate VMs off a node in maintenance and start or stop an HA VM
 * whose process died (docs/ha.md). The agents of one cluster already share its etcd and CA.
 */
export const AGENT_SELF_PERMISSIONS: readonly string[] = [
  'vm:instance:read',
  'migration:vm:failover',
  'migration:vm:migrate',
  'vm:instance:power',
];
