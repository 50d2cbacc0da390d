import { readFile } from 'node:fs/promises';
import { writeFileAtomically } from '../shared/atomic-file';

/** The agent's own TLS files (tls.cert, tls.key, tls.ca): rewritten when renewed, so a restart keeps them. */
export class TlsFilesRepository {
  constructor(private readonly paths: { cert: string; key: string; ca: string }) {}

  async writeCertificate(certChainPem: string, keyPem: string): Promise<void> {
    // The key first: a crash in between leaves a key that the old certificate does not match,
    // which start-up reports, rather than a certificate without its key.
    await writeFileAtomically(this.paths.key, keyPem);
    await writeFileAtomically(this.paths.cert, certChainPem);
  }

  async writeTrust(clusterCaPem: string): Promise<void> {
    await writeFileAtomically(this.paths.ca, clusterCaPem);
  }
}

/** The cluster CA's certificate (with its chain) and key on an issuing node (tls.issuer), read at each use. */
export class IssuerFilesRepository {
  constructor(private readonly paths: { cert: string; key: string }) {}

  async read(): Promise<{ certPem: string; keyPem: string }> {
    const [certPem, keyPem] = await Promise.all([
      readFile(this.paths.cert, 'utf8'),
      readFile(this.paths.key, 'utf8'),
    ]);
    return { certPem, keyPem };
  }
}
