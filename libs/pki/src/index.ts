import 'reflect-metadata'; // @peculiar/x509 resolves its services through tsyringe
import * as x509 from '@peculiar/x509';
import { createHash, randomBytes, webcrypto, X509Certificate } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG: EcKeyGenParams & EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY_MS = 86_400_000;

export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

export type CertificateUsage = 'server' | 'client' | 'both';

export interface IssueOptions {
  commonName: string;
  /** Marks the holder's role, e.g. `debvisor-agent` or `debvisor-manager`. */
  organizationalUnit?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  usage: CertificateUsage;
  validDays?: number;
  /** For tests of expiry handling. */
  notBefore?: Date;
  notAfter?: Date;
}

function subjectOf(commonName: string, ou?: string): string {
  const esc = (v: string) => v.replace(/([,+"\\<>;=])/g, '\\$1');
  return ou
    ? `CN=${esc(commonName)}, OU=${esc(ou)}, O=DebVisor`
    : `CN=${esc(commonName)}, O=DebVisor`;
}

async function exportKey(key: CryptoKey): Promise<string> {
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n';
}

async function importKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(pem);
  return (await webcrypto.subtle.importKey('pkcs8', der, ALG, true, [
    'sign',
  ])) as unknown as CryptoKey;
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] &= 0x7f; // keep it positive
  return bytes.toString('hex');
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, [
    'sign',
    'verify',
  ])) as unknown as CryptoKeyPair;
}

/** A self-signed certificate authority (ECDSA P-256). */
export async function createCa(commonName: string, validDays = 3650): Promise<KeyPairPem> {
  const keys = await generateKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: subjectOf(commonName),
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + validDays * DAY_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      // Path length 1: during a CA rotation a client that trusts only this CA verifies the next
      // CA's certificates through the cross certificate (crossCertify), one CA below this one.
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportKey(keys.privateKey) };
}

/** A leaf certificate signed by `ca`. The returned certPem holds the leaf followed by the CA. */
export async function issueCertificate(ca: KeyPairPem, options: IssueOptions): Promise<KeyPairPem> {
  const caCert = new x509.X509Certificate(splitPemBundle(ca.certPem)[0]);
  const caKey = await importKey(ca.keyPem);
  const keys = await generateKeys();
  const now = Date.now();
  const usages: string[] = [];
  if (options.usage !== 'client') usages.push(x509.ExtendedKeyUsage.serverAuth);
  if (options.usage !== 'server') usages.push(x509.ExtendedKeyUsage.clientAuth);
  const altNames: x509.JsonGeneralName[] = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
      true,
    ),
    new x509.ExtendedKeyUsageExtension(usages),
    await x509.AuthorityKeyIdentifierExtension.create(caCert),
  ];
  if (altNames.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(altNames));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: subjectOf(options.commonName, options.organizationalUnit),
    issuer: caCert.subject,
    notBefore: options.notBefore ?? new Date(now - 60_000),
    notAfter: options.notAfter ?? new Date(now + (options.validDays ?? 825) * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: ALG,
    extensions,
  });
  return {
    certPem: cert.toString('pem') + '\n' + caCert.toString('pem') + '\n',
    keyPem: await exportKey(keys.privateKey),
  };
}

/** Every certificate in a PEM bundle, in order. */
export function splitPemBundle(pem: string): string[] {
  return (
    pem
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
      ?.map((c) => c + '\n') ?? []
  );
}

/** SHA-256 over the DER of a certificate (PEM: the first one), as upper-case hex pairs joined by colons. */
export function fingerprintSha256(cert: string | Buffer): string {
  const der = Buffer.isBuffer(cert) ? cert : Buffer.from(x509.PemConverter.decodeFirst(cert));
  return formatFingerprint(createHash('sha256').update(der).digest('hex'));
}

function formatFingerprint(hex: string): string {
  return hex.toUpperCase().match(/.{2}/g)!.join(':');
}

/** Normalises a fingerprint given with or without colons, in any case; undefined when malformed. */
export function normalizeFingerprint(value: string): string | undefined {
  const hex = value.trim().replace(/:/g, '');
  return /^[0-9a-fA-F]{64}$/.test(hex) ? formatFingerprint(hex) : undefined;
}

export interface CertificateSummary {
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  fingerprintSha256: string;
  isCa: boolean;
}

/** Facts about the first certificate in `pem`; throws on input that is not a certificate. */
export function describeCertificate(pem: string): CertificateSummary {
  const cert = new X509Certificate(pem);
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
    fingerprintSha256: cert.fingerprint256,
    isCa: cert.ca,
  };
}

/** The PEM of a DER certificate (as in tls.TLSSocket#getPeerCertificate().raw). */
export function derToPem(der: Buffer): string {
  return x509.PemConverter.encode(new Uint8Array(der).buffer, 'CERTIFICATE') + '\n';
}

/**
 * A fresh key pair and a PKCS#10 request for it: what a node sends to renew its certificate. The
 * key stays with the caller; only the request leaves the node.
 */
export async function createCsr(
  commonName: string,
  organizationalUnit?: string,
): Promise<{
  csrPem: string;
  keyPem: string;
}> {
  const keys = await generateKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: subjectOf(commonName, organizationalUnit),
    keys,
    signingAlgorithm: ALG,
  });
  return { csrPem: csr.toString('pem') + '\n', keyPem: await exportKey(keys.privateKey) };
}

export interface RenewOptions {
  /** The certificate being renewed: the new one keeps its subject, names and usages. */
  currentCertPem: string;
  notAfter: Date;
}

/**
 * Signs the public key of a PKCS#10 request (whose own signature must verify) into a certificate
 * that keeps the subject, alternative names and usages of `currentCertPem`: a renewal never
 * changes who the holder is. `ca.certPem` may hold the CA followed by a chain (e.g. a cross
 * certificate); the answer is the new certificate followed by that chain.
 */
export async function renewFromCsr(
  ca: KeyPairPem,
  csrPem: string,
  options: RenewOptions,
): Promise<string> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch {
    throw new Error('not a PKCS#10 certificate request');
  }
  if (!(await csr.verify())) throw new Error('the certificate request signature does not verify');
  const chain = splitPemBundle(ca.certPem);
  const caCert = new x509.X509Certificate(chain[0]);
  const current = new x509.X509Certificate(splitPemBundle(options.currentCertPem)[0]);
  const now = Date.now();
  // Basic constraints, key usage, extended key usage, subject alternative names.
  const keep = ['2.5.29.19', '2.5.29.15', '2.5.29.37', '2.5.29.17'].flatMap((oid) => {
    const found = current.getExtension(oid);
    return found ? [found] : [];
  });
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: current.subject,
    issuer: caCert.subject,
    // Back-dated for clock skew, by at most a tenth of the lifetime (renewal instants derive from it).
    notBefore: new Date(now - Math.min(60_000, (options.notAfter.getTime() - now) / 10)),
    notAfter: options.notAfter,
    publicKey: csr.publicKey,
    signingKey: await importKey(ca.keyPem),
    signingAlgorithm: ALG,
    extensions: [...keep, await x509.AuthorityKeyIdentifierExtension.create(caCert)],
  });
  return [cert.toString('pem') + '\n', ...chain].join('');
}

/**
 * A cross certificate: `newCa`'s subject and key, issued by `oldCa`. Served in a chain during a CA
 * rotation, it lets clients that still trust only the old CA verify certificates of the new one.
 */
export async function crossCertify(oldCa: KeyPairPem, newCaCertPem: string): Promise<string> {
  const issuer = new x509.X509Certificate(splitPemBundle(oldCa.certPem)[0]);
  const subject = new x509.X509Certificate(splitPemBundle(newCaCertPem)[0]);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: subject.subject,
    issuer: issuer.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Math.min(subject.notAfter.getTime(), issuer.notAfter.getTime())),
    publicKey: subject.publicKey,
    signingKey: await importKey(oldCa.keyPem),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(await subject.publicKey.export()),
      await x509.AuthorityKeyIdentifierExtension.create(issuer),
    ],
  });
  return cert.toString('pem') + '\n';
}
