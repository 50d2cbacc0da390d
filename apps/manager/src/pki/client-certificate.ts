import { fingerprintSha256, splitPemBundle, type KeyPairPem } from '@debvisor/pki';
import { X509Certificate } from 'node:crypto';

/**
 * The client certificate the manager presents to agents, as it is now. It is short-lived and
 * renewed by ClientCertificateService; readers take it when they open something new (a gRPC
 * channel, a TLS probe), so a renewal applies to what comes next and never cuts off what runs.
 */
export class LiveClientCertificate implements KeyPairPem {
  private pair: KeyPairPem;
  private readonly listeners = new Set<() => void>();

  constructor(
    initial: KeyPairPem,
    /** The manager's client CA (agents trust it through tls.clientCas) and where it is kept. */
    readonly caPem: string,
    readonly caFile: string,
  ) {
    this.pair = { certPem: initial.certPem, keyPem: initial.keyPem };
  }

  /** The leaf followed by the client CA. */
  get certPem(): string {
    return this.pair.certPem;
  }

  get keyPem(): string {
    return this.pair.keyPem;
  }

  /** The leaf presented now. */
  get leaf(): X509Certificate {
    return new X509Certificate(splitPemBundle(this.pair.certPem)[0]);
  }

  /** Identifies the certificate presented now: channels opened with another one are retired. */
  get fingerprint(): string {
    return fingerprintSha256(splitPemBundle(this.pair.certPem)[0]);
  }

  /** A renewed certificate and its key, presented on every new connection from now on. */
  replace(pair: KeyPairPem): void {
    this.pair = { certPem: pair.certPem, keyPem: pair.keyPem };
    for (const listener of this.listeners) listener();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
