import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

/** The session cookie: HttpOnly, Secure, SameSite=Strict, holding a random 256-bit secret. */
export const SESSION_COOKIE = 'debvisor_session';
/**
 * Set and cleared with the session cookie, readable by the web UI and holding no secret: the UI
 * asks GET /auth/session only when it is there, so that a visitor who is not logged in causes no
 * 401 (and no console error) on every page load.
 */
export const SIGNED_IN_COOKIE = 'debvisor_signed_in';
/** Cookie-authenticated writes must send the session's CSRF token in this header. */
export const CSRF_HEADER = 'x-csrf-token';

/** The stored id of a session (and the key of a token secret): hex SHA-256. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/**
 * CSRF tokens derived from the session id with a key derived from the state directory's secret:
 * nothing to store, and the web UI can fetch it again after a reload (a cross-site page cannot read
 * the answer).
 */
export class CsrfTokens {
  private readonly key: Buffer;

  constructor(secretKey: Buffer) {
    this.key = Buffer.from(hkdfSync('sha256', secretKey, Buffer.alloc(0), 'debvisor csrf v1', 32));
  }

  tokenFor(sessionId: string): string {
    return createHmac('sha256', this.key).update(sessionId, 'utf8').digest('base64url');
  }

  matches(sessionId: string, presented: string | undefined): boolean {
    if (!presented || presented.length > 100) return false;
    const expected = Buffer.from(this.tokenFor(sessionId), 'utf8');
    const given = Buffer.from(presented, 'utf8');
    return expected.length === given.length && timingSafeEqual(expected, given);
  }
}

/** The value of one cookie in a Cookie header (no parsing library needed for one name). */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
