import { splitPemBundle } from '@debvisor/pki';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';

/** What the API and the metrics show of a certificate chain's leaf. */
export interface CertificateFacts {
  readonly subject: string;
  readonly issuer: string;
  /** DNS names and IP addresses of the subjectAltName, in order. */
  readonly names: readonly string[];
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly fingerprintSha256: string;
}

/** Why an uploaded certificate cannot be used; the message is shown to the operator as it is. */
export class CertificateRejected extends Error {
  override name = 'CertificateRejected';
}

/** The certificates of a PEM chain, leaf first; rejects input without any. */
export function parseChain(chainPem: string): X509Certificate[] {
  const pems = splitPemBundle(chainPem);
  if (pems.length === 0) throw new CertificateRejected('the chain holds no PEM certificate');
  return pems.map((pem, index) => {
    try {
      return new X509Certificate(pem);
    } catch {
      throw new CertificateRejected(
        `certificate ${index + 1} of the chain is not a valid X.509 certificate`,
      );
    }
  });
}

export function describeLeaf(chainPem: string): CertificateFacts {
  const leaf = parseChain(chainPem)[0];
  return {
    subject: leaf.subject.replace(/\n/g, ', '),
    issuer: leaf.issuer.replace(/\n/g, ', '),
    names: subjectAltNames(leaf),
    serialNumber: leaf.serialNumber.toUpperCase(),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    fingerprintSha256: leaf.fingerprint256,
  };
}

/** DNS names and IP addresses of a certificate's subjectAltName. */
export function subjectAltNames(cert: X509Certificate): string[] {
  const names: string[] = [];
  // Node writes `DNS:a, DNS:b, IP Address:1.2.3.4`; values with commas or quotes are JSON-quoted.
  for (const part of (cert.subjectAltName ?? '').split(/,\s*/)) {
    const match = /^(DNS|IP Address):(.+)$/.exec(part.trim());
    if (match) names.push(match[2].replace(/^"|"$/g, '').toLowerCase());
  }
  return names;
}

/** Whether `host` is covered by `names` (one-label wildcards as RFC 6125 allows them). */
export function namesCover(names: readonly string[], host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (isIP(h)) return names.includes(h);
  return names.some((name) => {
    if (name === h) return true;
    if (!name.startsWith('*.')) return false;
    const rest = h.slice(h.indexOf('.') + 1);
    return h.indexOf('.') > 0 && rest === name.slice(2);
  });
}

export interface UploadCheck {
  chainPem: string;
  keyPem: string;
  /** The host the manager is reached at (the public URL's); the leaf must name it. */
  host: string | undefined;
  now: Date;
  /** Roots besides the system's that may anchor the chain (a private CA). */
  extraRoots?: readonly string[];
}

/**
 * Checks an uploaded certificate before it replaces the served one: a private key that belongs to
 * the leaf, a chain where each certificate is signed by the next and the last by a trusted root (or
 * is one), every certificate inside its validity period, and the leaf naming the public host.
 */
export function checkUpload(input: UploadCheck): { chainPem: string; keyPem: string } {
  const chain = parseChain(input.chainPem);
  let key: KeyObject;
  try {
    key = createPrivateKey(input.keyPem);
  } catch {
    throw new CertificateRejected(
      'the private key is not a valid unencrypted PEM key (PKCS#8, PKCS#1 or SEC1)',
    );
  }
  const leaf = chain[0];
  if (!leaf.checkPrivateKey(key))
    throw new CertificateRejected(
      'the private key does not belong to the first certificate of the chain',
    );
  for (const [index, cert] of chain.entries()) {
    const what = index === 0 ? 'the certificate' : `certificate ${index + 1} of the chain`;
    if (new Date(cert.validTo) <= input.now)
      throw new CertificateRejected(`${what} expired on ${new Date(cert.validTo).toISOString()}`);
    if (new Date(cert.validFrom) > input.now)
      throw new CertificateRejected(
        `${what} is not valid before ${new Date(cert.validFrom).toISOString()}`,
      );
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i].checkIssued(chain[i + 1]) || !chain[i].verify(chain[i + 1].publicKey))
      throw new CertificateRejected(
        `certificate ${i + 1} of the chain is not signed by certificate ${i + 2}: give the chain leaf first, then each issuer`,
      );
  }
  const roots = [...rootCertificates, ...(input.extraRoots ?? [])].map(
    (pem) => new X509Certificate(pem),
  );
  const last = chain[chain.length - 1];
  const anchored = roots.some(
    (root) =>
      root.fingerprint256 === last.fingerprint256 ||
      (last.checkIssued(root) && last.verify(root.publicKey)),
  );
  if (!anchored)
    throw new CertificateRejected(
      'the chain does not end at a trusted root CA: add the intermediate certificates (and, for a private CA, its root)',
    );
  if (input.host && !namesCover(subjectAltNames(leaf), input.host))
    throw new CertificateRejected(
      `the certificate does not name ${input.host}, the manager's public host (it names ${subjectAltNames(leaf).join(', ') || 'nothing'})`,
    );
  // Normalise the key to PKCS#8 and the chain to what was parsed (no stray text between blocks).
  return {
    chainPem: chain.map((cert) => cert.toString()).join(''),
    keyPem: key.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}
