import { X509Certificate } from 'node:crypto';
import type { TlsMaterial } from '../config/tls-material';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The agent's TLS material as it is now: its certificate (renewed by the agent itself) and the
 * cluster CAs it trusts (two during a CA rotation). Consumers read it when they need it (a new
 * connection, a new channel), so a change applies to what comes next and never cuts off what runs;
 * those that hold state (the server's secure context) listen to onChange.
 */
export class LiveTls implements TlsMaterial {
  private current: TlsMaterial;
  private readonly listeners = new Set<(change: 'certificate' | 'trust') => void>();

  constructor(initial: TlsMaterial) {
    this.current = initial;
  }

  get clusterCa(): X509Certificate {
    return this.current.clusterCa;
  }
  get clusterCas(): readonly X509Certificate[] {
    return this.current.clusterCas;
  }
  get clusterCaPem(): string {
    return this.current.clusterCaPem;
  }
  get certChainPem(): string {
    return this.current.certChainPem;
  }
  get keyPem(): string {
    return this.current.keyPem;
  }
  get trustedClientCasPem(): string {
    return this.current.trustedClientCasPem;
  }
  get clientCaPems(): readonly string[] {
    return this.current.clientCaPems;
  }

  /** The leaf certificate served now. */
  get leaf(): X509Certificate {
    return new X509Certificate(this.current.certChainPem.match(PEM_CERT)![0]);
  }

  /** The cluster CA among clusterCas that issued the current leaf. */
  get leafIssuer(): X509Certificate | undefined {
    const leaf = this.leaf;
    return this.clusterCas.find((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
  }

  /** A renewed certificate (with its chain) and its key: used for every new connection from now on. */
  replaceCertificate(certChainPem: string, keyPem: string): void {
    this.current = { ...this.current, certChainPem, keyPem };
    this.emit('certificate');
  }

  /** The cluster CAs trusted from now on (a PEM bundle, e.g. old and new during a CA rotation). */
  replaceTrust(clusterCaPem: string): void {
    const pems = (clusterCaPem.match(PEM_CERT) ?? []).map((pem) => pem + '\n');
    const clusterCas = pems.map((pem) => new X509Certificate(pem));
    if (clusterCas.length === 0 || clusterCas.some((ca) => !ca.ca))
      throw new Error('a cluster trust bundle holds CA certificates only, at least one');
    if (pems.join('') === this.current.clusterCaPem) return;
    this.current = {
      ...this.current,
      clusterCa: clusterCas[0],
      clusterCas,
      clusterCaPem: pems.join(''),
      trustedClientCasPem: [...pems, ...this.current.clientCaPems].join('\n') + '\n',
    };
    this.emit('trust');
  }

  onChange(listener: (change: 'certificate' | 'trust') => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(change: 'certificate' | 'trust'): void {
    for (const listener of this.listeners) listener(change);
  }
}
