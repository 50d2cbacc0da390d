/** A remote as the services see it: configuration and credential facts, never a key. */
export interface Remote {
  readonly id: string;
  readonly description: string;
  readonly endpoints: readonly string[];
  /** Null while only a fingerprint is pinned and no agent has presented the matching CA yet. */
  readonly caCertPem: string | null;
  readonly caFingerprint: string;
  readonly credentials: readonly CredentialInfo[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface CredentialInfo {
  readonly name: string;
  readonly keyId: string;
  readonly createdAt: Date;
}

/** A credential on its way in: the plaintext key exists only in memory. */
export interface NewCredential {
  readonly name: string;
  readonly key: string;
  /** What the key may do on the cluster, when the connection test learned it. */
  readonly permissions?: readonly string[];
}
