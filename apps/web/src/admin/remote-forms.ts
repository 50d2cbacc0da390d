import type { Schemas } from '../api/client';

/**
 * The remote forms' logic: what the operator typed → request bodies, and which CA certificate the
 * remote will trust after a connection test. The manager validates everything again; these checks
 * only say early what it would refuse.
 */

export type PresentedCertificate = Schemas['PresentedCertificate_Output'];

/** What the connection test learned from one endpoint: its certificate chain (leaf first), or why it failed. */
export type ProbeOutcome =
  { endpoint: string; certificates: PresentedCertificate[] } | { endpoint: string; error: string };

export interface CredentialInput {
  name: string;
  key: string;
}

export interface RemoteForm {
  id: string;
  description: string;
  /** One endpoint (host:port) per line; commas and spaces separate too. */
  endpoints: string;
  /** The cluster CA certificate, pasted; empty: trust the CA the endpoints present, once its fingerprint is confirmed. */
  caCertPem: string;
  credentials: CredentialInput[];
  addAnyway: boolean;
}

export const REMOTE_ID = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const CREDENTIAL_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/;
const AGENT_KEY = /^dvk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/;
const ENDPOINT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/;

/** The endpoints as typed: split on new lines, commas and spaces, in order, empty parts dropped. */
export function parseEndpoints(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((part) => part.trim())
    .filter(Boolean);
}

/** host:port with a port 1-65535 (the manager checks the host further). */
export function endpointProblem(endpoint: string): string | null {
  const match = ENDPOINT.exec(endpoint);
  if (!match) return `${endpoint} is not host:port (IPv6 in brackets)`;
  const port = Number(match[2]);
  return port >= 1 && port <= 65535 ? null : `${endpoint}: the port must be 1-65535`;
}

/** What is wrong with the endpoints, or null. */
export function endpointsProblem(endpoints: readonly string[]): string | null {
  if (endpoints.length === 0) return 'give at least one endpoint (host:port)';
  for (const endpoint of endpoints) {
    const problem = endpointProblem(endpoint);
    if (problem) return problem;
  }
  return new Set(endpoints).size === endpoints.length ? null : 'an endpoint is listed twice';
}

/** What is wrong with one credential (name and agent API key), or null. */
export function credentialProblem(credential: CredentialInput): string | null {
  if (!CREDENTIAL_NAME.test(credential.name.trim()))
    return 'a credential name is 1-64 letters, digits, dots, underscores and inner hyphens';
  if (!AGENT_KEY.test(credential.key.trim()))
    return `the key of credential ${credential.name.trim()} is not an agent API key (dvk_<16 hex digits>_<43 characters>)`;
  return null;
}

/** Everything the add form can tell before asking the manager; empty when it may be sent. */
export function remoteFormProblems(form: RemoteForm): string[] {
  const problems: string[] = [];
  if (!REMOTE_ID.test(form.id.trim()))
    problems.push('a remote id is 1-63 lower-case letters, digits and inner hyphens');
  const endpoints = endpointsProblem(parseEndpoints(form.endpoints));
  if (endpoints) problems.push(endpoints);
  if (form.caCertPem.trim() && !PEM_BLOCK.test(form.caCertPem))
    problems.push('the CA certificate must be PEM (-----BEGIN CERTIFICATE-----)');
  if (form.credentials.length === 0) problems.push('give at least one credential');
  for (const credential of form.credentials) {
    const problem = credentialProblem(credential);
    if (problem) problems.push(problem);
  }
  const names = form.credentials.map((c) => c.name.trim());
  if (new Set(names).size !== names.length) problems.push('credential names must be unique');
  return problems;
}

/** The DER bytes of the first certificate of a PEM text; null when there is none or it is not base64. */
export function pemToDer(pem: string): Uint8Array<ArrayBuffer> | null {
  const match = PEM_BLOCK.exec(pem);
  if (!match) return null;
  const base64 = match[1].replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return null;
  try {
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/** "AB:CD:…" as the manager writes fingerprints (upper case, colon-separated pairs). */
export function formatFingerprint(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
}

/** The SHA-256 fingerprint of the first certificate of a PEM text (Web Crypto), or null when it is not PEM. */
export async function pemFingerprint(pem: string): Promise<string | null> {
  const der = pemToDer(pem);
  if (!der) return null;
  return formatFingerprint(new Uint8Array(await crypto.subtle.digest('SHA-256', der)));
}

/**
 * Which CA the remote will trust, from the connection test:
 * - with a pasted CA certificate, that certificate (endpoints whose chain does not carry it are
 *   listed: the manager still checks their certificates against it);
 * - without, the CA certificate the first answering endpoint presents (the last CA of its chain,
 *   the root); every other answering endpoint must present it too, or nothing is trusted.
 * Unreachable endpoints are listed and do not decide.
 */
export type TrustChoice =
  | {
      ok: true;
      fingerprint: string;
      /** The presented certificate with that fingerprint, when an endpoint presented it. */
      certificate: PresentedCertificate | null;
      source: 'pasted' | 'presented';
      /** Answering endpoints whose chain does not include the CA (only possible with a pasted CA). */
      withoutIt: string[];
      unreachable: string[];
    }
  | { ok: false; problem: string; unreachable: string[] };

export function chooseTrust(
  outcomes: readonly ProbeOutcome[],
  pastedFingerprint: string | null,
): TrustChoice {
  const unreachable = outcomes.filter((o) => 'error' in o).map((o) => o.endpoint);
  const answered = outcomes.filter(
    (o): o is Extract<ProbeOutcome, { certificates: unknown }> => 'certificates' in o,
  );
  if (pastedFingerprint) {
    const certificate =
      answered
        .flatMap((o) => o.certificates)
        .find((c) => c.fingerprintSha256 === pastedFingerprint) ?? null;
    const withoutIt = answered
      .filter((o) => !o.certificates.some((c) => c.fingerprintSha256 === pastedFingerprint))
      .map((o) => o.endpoint);
    return {
      ok: true,
      fingerprint: pastedFingerprint,
      certificate,
      source: 'pasted',
      withoutIt,
      unreachable,
    };
  }
  const first = answered[0];
  if (!first) {
    return {
      ok: false,
      problem:
        'no endpoint answered the connection test: check the endpoints, or paste the cluster CA certificate',
      unreachable,
    };
  }
  const certificate = first.certificates.filter((c) => c.isCa).at(-1);
  if (!certificate) {
    return {
      ok: false,
      problem: `${first.endpoint} presented no CA certificate: paste the cluster CA certificate (PEM)`,
      unreachable,
    };
  }
  const others = answered
    .filter(
      (o) => !o.certificates.some((c) => c.fingerprintSha256 === certificate.fingerprintSha256),
    )
    .map((o) => o.endpoint);
  if (others.length > 0) {
    return {
      ok: false,
      problem: `${others.join(', ')} presented a different CA than ${first.endpoint}: these endpoints are not one cluster, or someone is in between`,
      unreachable,
    };
  }
  return {
    ok: true,
    fingerprint: certificate.fingerprintSha256,
    certificate,
    source: 'presented',
    withoutIt: [],
    unreachable,
  };
}

/** Whether a certificate is valid at `now` (its validity as the manager reported it). */
export function validNow(
  certificate: Pick<PresentedCertificate, 'notBefore' | 'notAfter'>,
  now: Date,
): boolean {
  return (
    Date.parse(certificate.notBefore) <= now.getTime() &&
    now.getTime() <= Date.parse(certificate.notAfter)
  );
}

/** POST /api/v1/remotes: the pasted CA certificate, or the confirmed fingerprint of the presented one. */
export function createRemoteBody(
  form: RemoteForm,
  trust: Extract<TrustChoice, { ok: true }>,
): Schemas['CreateRemoteDto'] {
  return {
    id: form.id.trim(),
    description: form.description.trim(),
    endpoints: parseEndpoints(form.endpoints),
    ...(trust.source === 'pasted'
      ? { caCertPem: form.caCertPem.trim() }
      : { caFingerprint: trust.fingerprint }),
    credentials: form.credentials.map((c) => ({ name: c.name.trim(), key: c.key.trim() })),
    addAnyway: form.addAnyway,
  };
}

export interface RemoteEdit {
  description: string;
  endpoints: string;
  /** A new CA certificate; empty: unchanged. */
  caCertPem: string;
  /** With a new CA: the key of each stored credential, entered again (a new CA never gets the stored keys). */
  keys?: Readonly<Record<string, string>>;
}

/** PATCH /api/v1/remotes/{remote}: only what changed; null when nothing did. */
export function updateRemoteBody(
  edit: RemoteEdit,
  current: {
    description: string;
    endpoints: readonly string[];
    credentials?: readonly { name: string }[];
  },
): Schemas['UpdateRemoteDto'] | null {
  const body: Schemas['UpdateRemoteDto'] = {};
  const description = edit.description.trim();
  if (description !== current.description) body.description = description;
  const endpoints = parseEndpoints(edit.endpoints);
  if (endpoints.join('\n') !== current.endpoints.join('\n')) body.endpoints = endpoints;
  if (edit.caCertPem.trim()) {
    body.caCertPem = edit.caCertPem.trim();
    if (current.credentials)
      body.credentials = current.credentials.map(({ name }) => ({
        name,
        key: edit.keys?.[name]?.trim() ?? '',
      }));
  }
  return Object.keys(body).length > 0 ? body : null;
}

/** With a new CA, what the manager would refuse: a stored credential whose key was not entered again. */
export function newTrustKeysProblem(
  edit: RemoteEdit,
  credentials: readonly { name: string }[],
): string | null {
  if (!edit.caCertPem.trim()) return null;
  const missing = credentials.filter(({ name }) => !edit.keys?.[name]?.trim()).map((c) => c.name);
  return missing.length > 0
    ? `a new CA never receives the stored keys: enter the key of ${missing.join(', ')} again`
    : null;
}

/** "AB:CD:EF:…:89:01": long fingerprints in tables (the whole one is in the title and the detail). */
export function shortFingerprint(fingerprint: string): string {
  const pairs = fingerprint.split(':');
  return pairs.length <= 8
    ? fingerprint
    : `${pairs.slice(0, 4).join(':')}:…:${pairs.slice(-4).join(':')}`;
}
