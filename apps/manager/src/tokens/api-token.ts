import { createHash, timingSafeEqual } from 'node:crypto';

/** Manager API tokens: `dvdm_<16 hex id>_<43 base64url chars: 256-bit secret>`. */
export const API_TOKEN_PREFIX = 'dvdm';
const API_TOKEN = /^dvdm_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export function formatApiToken(id: string, secret: string): string {
  return `${API_TOKEN_PREFIX}_${id}_${secret}`;
}

export function parseApiToken(value: string): { id: string; secret: string } | undefined {
  const match = API_TOKEN.exec(value);
  return match ? { id: match[1], secret: match[2] } : undefined;
}

export function hashTokenSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time comparison of two hex SHA-256 digests. */
export function sameHash(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === 32 && right.length === 32 && timingSafeEqual(left, right);
}

/** The public id of the API token in an Authorization header (never its secret), when it holds one. */
export function presentedTokenId(authorization: string | undefined): string | undefined {
  const match = authorization ? /^Bearer +(\S+)\s*$/i.exec(authorization) : null;
  return match ? parseApiToken(match[1])?.id : undefined;
}
