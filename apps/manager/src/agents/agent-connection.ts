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
