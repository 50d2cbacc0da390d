/** Everything needed to call a remote's agents: where, whom to trust, which key to present. */
export interface AgentConnection {
  readonly remoteId: string;
  /** host:port, tried in this order. */
  readonly endpoints: readonly string[];
  /** The cluster CA the agents' certificates must chain to. */
  readonly caCertPem: string;
  /** The agent API key (`dvk_…`) sent as `authorization: Bearer …`. */
  readonly apiKey: string;
  /** Which cached channels to use (default: the remote's); a connection test uses its own. */
  readonly channelGroup?: string;
}

/** A certificate an agent presented during the TLS handshake. */
export interface PresentedCertificate {
  readonly subject: string;
  readonly issuer: string;
  readonly fingerprintSha256: string;
  readonly isCa: boolean;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly pem: string;
}

export const VM_ACTIONS = ['start', 'shutdown', 'reboot', 'stop'] as const;
export type VmAction = (typeof VM_ACTIONS)[number];

/**
 * The same connection with `endpoint` tried first, when it is one of the connection's own (a node's
 * registered agent endpoint, to reach that node without a forwarding hop); unchanged otherwise.
 */
export function preferEndpoint(
  connection: AgentConnection,
  endpoint: string | undefined,
): AgentConnection {
  if (!endpoint || connection.endpoints[0] === endpoint || !connection.endpoints.includes(endpoint))
    return connection;
  return {
    ...connection,
    endpoints: [endpoint, ...connection.endpoints.filter((e) => e !== endpoint)],
  };
}
