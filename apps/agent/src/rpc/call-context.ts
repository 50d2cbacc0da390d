/** Who is calling: an API key's holder, or that holder as vouched for by a peer agent. */
export interface Caller {
  readonly principal: string;
  readonly permissions: readonly string[];
  /** The API key that authenticated the call (absent for forwarded calls). */
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
  traceId: 'x-debvisor-trace-id',
} as const;
