import { Inject, Injectable } from '@nestjs/common';
import * as acme from 'acme-client';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { rootCertificates } from 'node:tls';
import { MANAGER_CONFIG, type ManagerConfig } from '../config/manager-config';

/** A challenge the manager answers for one name of an order. */
export interface ChallengeToAnswer {
  readonly type: 'http-01' | 'dns-01';
  /** The name being validated, without any `*.` (a wildcard's authorization is for its base name). */
  readonly identifier: string;
  readonly wildcard: boolean;
  readonly token: string;
  /** HTTP-01: the key authorization to answer; DNS-01: the TXT value (its SHA-256, base64url). */
  readonly keyAuthorization: string;
}

/** Puts a challenge's answer in place (HTTP-01 responder or DNS TXT record) and takes it away again. */
export interface ChallengeSolver {
  readonly type: 'http-01' | 'dns-01';
  present(challenge: ChallengeToAnswer): Promise<void>;
  cleanUp(challenge: ChallengeToAnswer): Promise<void>;
}

export interface AcmeAccountKey {
  readonly directoryUrl: string;
  readonly accountKeyPem: string;
  readonly accountUrl: string;
}

/** Why the CA refused or failed a request; the message is the CA's own problem detail. */
export class AcmeError extends Error {
  override name = 'AcmeError';
}

/** A challenge's answer could not be put in place (the DNS server refused the update …); the message says why. */
export class ChallengeSetupError extends Error {
  override name = 'ChallengeSetupError';
}

/** The CA's suggested renewal window (ARI, RFC 9773). */
export interface RenewalWindow {
  readonly start: Date;
  readonly end: Date;
}

/**
 * Talks to ACME certificate authorities through acme-client (RFC 8555): accounts (with External
 * Account Binding), orders, revocation, and renewal information (RFC 9773) when the CA offers it.
 */
@Injectable()
export class AcmeRepository {
  constructor(@Inject(MANAGER_CONFIG) config: ManagerConfig) {
    // acme-client has one axios instance; the roots it trusts are the system's and the configured extra ones.
    const extra = config.certificates.extraCaFile
      ? readFileSync(config.certificates.extraCaFile, 'utf8')
      : '';
    acme.axios.defaults.httpsAgent = new Agent({
      ca: extra ? [...rootCertificates, extra] : [...rootCertificates],
      keepAlive: false,
    });
    acme.axios.defaults.timeout = 30_000;
  }

  async createAccount(input: {
    directoryUrl: string;
    email: string | undefined;
    termsOfServiceAgreed: boolean;
    externalAccountBinding?: { kid: string; hmacKey: string };
  }): Promise<{ accountUrl: string; accountKeyPem: string; termsOfServiceUrl?: string }> {
    const accountKeyPem = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
    const client = new acme.Client({
      directoryUrl: input.directoryUrl,
      accountKey: accountKeyPem,
      externalAccountBinding: input.externalAccountBinding,
      ...FAST_BACKOFF,
    });
    await wrap('creating the account', () =>
      client.createAccount({
        termsOfServiceAgreed: input.termsOfServiceAgreed,
        contact: input.email ? [`mailto:${input.email}`] : undefined,
      }),
    );
    const termsOfServiceUrl = await client.getTermsOfServiceUrl().catch(() => undefined);
    return { accountUrl: client.getAccountUrl(), accountKeyPem, termsOfServiceUrl };
  }

  /** Orders a certificate for `names` (the first one is the subject), answering every challenge through `solver`. */
  async order(
    account: AcmeAccountKey,
    names: readonly string[],
    solver: ChallengeSolver,
  ): Promise<{ chainPem: string; keyPem: string }> {
    const client = this.client(account);
    const [key, csr] = await acme.crypto.createCsr(
      { commonName: names[0], altNames: [...names] },
      await acme.crypto.createPrivateEcdsaKey('P-256'),
    );
    const chainPem = await wrap('ordering the certificate', () =>
      client.auto({
        csr,
        termsOfServiceAgreed: true,
        // The manager checks DNS itself (authoritative servers) and cannot reach its own public name.
        skipChallengeVerification: true,
        challengePriority: [solver.type],
        challengeCreateFn: (authz, challenge, keyAuthorization) =>
          solver.present(toAnswer(authz, challenge, keyAuthorization)),
        challengeRemoveFn: (authz, challenge, keyAuthorization) =>
          solver.cleanUp(toAnswer(authz, challenge, keyAuthorization)),
      }),
    );
    return { chainPem, keyPem: key.toString() };
  }

  async revoke(account: AcmeAccountKey, chainPem: string): Promise<void> {
    const client = this.client(account);
    await wrap('revoking the certificate', () =>
      client.revokeCertificate(chainPem, { reason: 5 /* cessationOfOperation */ }),
    );
  }

  /** The CA's suggested renewal window (ARI), or undefined when its directory offers none. */
  async renewalWindow(directoryUrl: string, chainPem: string): Promise<RenewalWindow | undefined> {
    const directory = await acme.axios.get<Record<string, unknown>>(directoryUrl);
    const base = directory.data?.renewalInfo;
    if (typeof base !== 'string') return undefined;
    const answer = await acme.axios.get<{ suggestedWindow?: { start?: string; end?: string } }>(
      `${base.replace(/\/$/, '')}/${ariCertificateId(chainPem)}`,
    );
    const start = new Date(answer.data?.suggestedWindow?.start ?? NaN);
    const end = new Date(answer.data?.suggestedWindow?.end ?? NaN);
    if (answer.status !== 200 || isNaN(start.getTime()) || isNaN(end.getTime()) || end < start)
      return undefined;
    return { start, end };
  }

  private client(account: AcmeAccountKey): acme.Client {
    return new acme.Client({
      directoryUrl: account.directoryUrl,
      accountKey: account.accountKeyPem,
      accountUrl: account.accountUrl,
      ...FAST_BACKOFF,
    });
  }
}

/** Polling of pending orders and challenges: quick first, then up to 30 s apart (acme-client's backoff). */
const FAST_BACKOFF = { backoffAttempts: 12, backoffMin: 250, backoffMax: 30_000 };

function toAnswer(
  authz: acme.Authorization,
  challenge: { type: string; token?: string },
  keyAuthorization: string,
): ChallengeToAnswer {
  return {
    type: challenge.type === 'dns-01' ? 'dns-01' : 'http-01',
    identifier: authz.identifier.value,
    wildcard: authz.wildcard === true,
    token: challenge.token ?? '',
    keyAuthorization,
  };
}

/**
 * ARI's certificate identifier (RFC 9773 section 4.1): base64url of the authority key identifier's
 * keyIdentifier, a dot, base64url of the serial number's DER content octets.
 */
export function ariCertificateId(chainPem: string): string {
  const leaf = new X509Certificate(chainPem);
  const aki = authorityKeyIdentifier(leaf.raw);
  let serial = Buffer.from(
    leaf.serialNumber.length % 2 ? `0${leaf.serialNumber}` : leaf.serialNumber,
    'hex',
  );
  if (serial[0] & 0x80) serial = Buffer.concat([Buffer.from([0]), serial]);
  return `${aki.toString('base64url')}.${serial.toString('base64url')}`;
}

/** The keyIdentifier of the authorityKeyIdentifier extension (OID 2.5.29.35) in a DER certificate. */
function authorityKeyIdentifier(der: Buffer): Buffer {
  const oid = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x23]);
  const at = der.indexOf(oid);
  if (at < 0) throw new AcmeError('the certificate has no authority key identifier');
  // OID, [critical BOOLEAN], OCTET STRING { SEQUENCE { [0] keyIdentifier } }
  let i = at + oid.length;
  if (der[i] === 0x01) i += 3;
  const readLength = (pos: number): [number, number] => {
    const first = der[pos];
    if (first < 0x80) return [first, pos + 1];
    const bytes = first & 0x7f;
    return [der.readUIntBE(pos + 1, bytes), pos + 1 + bytes];
  };
  if (der[i] !== 0x04) throw new AcmeError('malformed authority key identifier');
  i = readLength(i + 1)[1];
  if (der[i] !== 0x30) throw new AcmeError('malformed authority key identifier');
  i = readLength(i + 1)[1];
  if (der[i] !== 0x80) throw new AcmeError('the authority key identifier has no keyIdentifier');
  const [length, start] = readLength(i + 1);
  return der.subarray(start, start + length);
}

async function wrap<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof AcmeError || error instanceof ChallengeSetupError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new AcmeError(`the CA refused ${what}: ${message}`, { cause: error });
  }
}
