import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type PeerCertificate } from 'node:tls';
import { Agent, fetch as undiciFetch, Request as UndiciRequest } from 'undici';
import { CliError } from '../cli-error';
import { normalizeFingerprint, type Connection } from '../config/cli-config';
import { EXIT } from '../exit-codes';

const CONNECT_TIMEOUT_MS = 10_000;
/** The longest the CLI waits for an answer's headers (an export streams its body afterwards). */
const ANSWER_TIMEOUT_MS = 120_000;

/** The HTTP side of the CLI: one fetch that trusts what the context says and sends the token. */
export interface ManagerTransport {
  readonly server: string;
  fetch(request: Request): Promise<Response>;
  /** The Request class the fetch accepts (undici's own). */
  readonly Request: typeof Request;
  close(): Promise<void>;
}

function toPem(der: Buffer): string {
  const base64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE-----\n${base64.replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
}

function unreachable(server: string, error: unknown): CliError {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  const detail = cause?.code ?? cause?.message ?? (error as Error)?.message ?? String(error);
  return new CliError(`cannot reach the manager at ${server}: ${detail}`, EXIT.unreachable);
}

/** One certificate of the chain a manager presents. */
export interface PresentedCertificate {
  readonly subject: string;
  readonly isCa: boolean;
  /** SHA-256, colon-separated pairs (as openssl and the manager's UI print it). */
  readonly fingerprintSha256: string;
  readonly pem: string;
}

/**
 * The certificate chain the server presents, leaf first, read without trusting it: for the user
 * to compare a fingerprint, or to find the pinned CA. Nothing is sent over this connection.
 */
export function presentedChain(server: string): Promise<PresentedCertificate[]> {
  const url = new URL(server);
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || 443),
      servername: /^[\d.:[\]]+$/.test(url.hostname) ? undefined : url.hostname,
      rejectUnauthorized: false,
      timeout: CONNECT_TIMEOUT_MS,
    });
    socket.once('secureConnect', () => {
      const chain: PresentedCertificate[] = [];
      const seen = new Set<string>();
      let cert: PeerCertificate | undefined = socket.getPeerCertificate(true);
      while (cert?.raw && !seen.has(cert.fingerprint256)) {
        seen.add(cert.fingerprint256);
        const x509 = new X509Certificate(cert.raw);
        chain.push({
          subject: x509.subject.replace(/\n/g, ', '),
          isCa: x509.ca,
          fingerprintSha256: x509.fingerprint256,
          pem: toPem(cert.raw),
        });
        cert = (cert as { issuerCertificate?: PeerCertificate }).issuerCertificate;
      }
      socket.destroy();
      resolve(chain);
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new CliError(`cannot reach the manager at ${server}: timed out`, EXIT.unreachable));
    });
    socket.once('error', (error) => reject(unreachable(server, { cause: error })));
  });
}

/**
 * The certificate (PEM) with the pinned SHA-256 fingerprint in the chain the manager presents
 * (its HTTPS certificate is followed by its CA). That certificate becomes the one trusted CA, so
 * the server certificate and its name are still verified against it.
 */
export async function fetchPinnedCa(server: string, fingerprint: string): Promise<string> {
  const wanted = normalizeFingerprint(fingerprint);
  const found = (await presentedChain(server)).find(
    (c) => normalizeFingerprint(c.fingerprintSha256) === wanted,
  );
  if (!found)
    throw new CliError(
      `the manager at ${server} presents no certificate with the pinned fingerprint ${fingerprint}; refusing to talk to it`,
      EXIT.unreachable,
    );
  return found.pem;
}

function readCaFile(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
    new X509Certificate(pem);
  } catch (error) {
    throw CliError.usage(`cannot use the CA file ${path}: ${(error as Error).message}`);
  }
  return pem;
}

/**
 * A transport for the connection: the CA file, the pinned CA, or the system's CAs; the token as a
 * Bearer header (never in a URL). Network failures become exit code 7.
 */
export async function openTransport(connection: Connection): Promise<ManagerTransport> {
  let ca: string | undefined;
  if (connection.caFile) ca = readCaFile(connection.caFile);
  else if (connection.caFingerprint)
    ca = await fetchPinnedCa(connection.server, connection.caFingerprint);
  const dispatcher = new Agent({
    connect: { ...(ca ? { ca } : {}), timeout: CONNECT_TIMEOUT_MS },
    headersTimeout: ANSWER_TIMEOUT_MS,
    bodyTimeout: ANSWER_TIMEOUT_MS,
  });
  return {
    server: connection.server,
    Request: UndiciRequest as unknown as typeof Request,
    async fetch(request: Request): Promise<Response> {
      const headers = new Headers(request.headers);
      headers.set('Accept', 'application/json');
      if (connection.token) headers.set('Authorization', `Bearer ${connection.token}`);
      const body = ['GET', 'HEAD'].includes(request.method)
        ? undefined
        : await request.arrayBuffer();
      try {
        return (await undiciFetch(request.url, {
          method: request.method,
          headers: [...headers.entries()],
          body: body && body.byteLength > 0 ? Buffer.from(body) : undefined,
          dispatcher,
          signal: request.signal,
        })) as unknown as Response;
      } catch (error) {
        throw unreachable(connection.server, error);
      }
    },
    close: () => dispatcher.close(),
  };
}
