import { timingSafeEqual } from 'node:crypto';
import { generateSync, ScureBase32Plugin } from 'otplib';
import { toDataURL } from 'qrcode';

/**
 * TOTP (RFC 6238) with the parameters every authenticator app understands: HMAC-SHA-1, 6 digits,
 * 30-second steps counted from the Unix epoch. Pure functions: the caller supplies the randomness
 * and the clock, and keeps the last accepted step per user to refuse replays.
 */
export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;
/** 160 bits, the HMAC-SHA-1 block-friendly size RFC 4226 recommends (and authenticator apps expect). */
export const TOTP_SECRET_BYTES = 20;
/** Steps accepted on either side of the current one, for clock drift and typing time. */
const SKEW_STEPS = 1;
const CODE_PATTERN = /^[0-9]{6}$/;
/** Far more than a 6-digit code with some spaces around it; longer input is refused unread. */
const MAX_CODE_INPUT_LENGTH = 64;

const base32 = new ScureBase32Plugin();

/** Base32 (RFC 4648 alphabet, no padding) of the caller's 20 random bytes. */
export function generateTotpSecret(random: Buffer): string {
  if (random.length !== TOTP_SECRET_BYTES) {
    throw new RangeError(
      `a TOTP secret needs ${TOTP_SECRET_BYTES} random bytes, got ${random.length}`,
    );
  }
  return base32.encode(new Uint8Array(random), { padding: false });
}

export interface TotpUriInput {
  secret: string;
  /** Shown by the authenticator app as the service name, e.g. "DebVisor (dc1.example.org)". */
  issuer: string;
  /** The user's login name. */
  account: string;
}

/**
 * The Key URI (`otpauth://totp/…`) an authenticator app scans. Built here rather than with
 * otplib's `generateURI`, which leaves out parameters equal to its defaults (this URI states
 * algorithm, digits and period explicitly) and does not escape a colon inside the issuer.
 * Issuer and account are percent-encoded (RFC 3986, spaces as %20) in the label and the query.
 */
export function totpUri({ secret, issuer, account }: TotpUriInput): string {
  if (!issuer || !account || !secret)
    throw new RangeError('a TOTP URI needs a secret, an issuer and an account');
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`;
  const query = [
    ['secret', secret],
    ['issuer', issuer],
    ['algorithm', 'SHA1'],
    ['digits', String(TOTP_DIGITS)],
    ['period', String(TOTP_PERIOD_SECONDS)],
  ]
    .map(([key, value]) => `${key}=${encodeURIComponent(value)}`)
    .join('&');
  return `otpauth://totp/${label}?${query}`;
}

/** A `data:image/png;base64,…` QR code of `uri`, for the enrolment page. */
export function totpQrCodePng(uri: string): Promise<string> {
  return toDataURL(uri, { type: 'image/png', errorCorrectionLevel: 'M', margin: 2, scale: 6 });
}

/** The number of the 30-second step containing `at` (floor(unix seconds / 30)). */
export function totpStep(at: Date): number {
  const ms = at.getTime();
  if (!Number.isFinite(ms)) throw new RangeError('totpStep needs a valid date');
  return Math.floor(ms / 1000 / TOTP_PERIOD_SECONDS);
}

/** The code for the step containing `at`. Throws when `secret` is not a valid base32 secret. */
export function totpCode(secret: string, at: Date): string {
  return codeForStep(secret, totpStep(at));
}

/**
 * The step (now-1, now or now+1) whose code is `code` and which comes strictly after
 * `lastAcceptedStep`, or null: wrong code, malformed code (anything but exactly 6 ASCII digits once
 * leading and trailing whitespace is trimmed), or a replay of the last accepted step or an earlier
 * one. The caller stores the answer as the new last accepted step.
 *
 * All candidate steps are computed and compared in constant time, whatever matches. When two steps
 * happen to share the code, the later one is answered, so that the code cannot be used twice.
 * Never throws on `code`; throws only on a corrupt `secret` or an invalid `now` (server-side faults).
 */
export function matchTotp(
  secret: string,
  code: string,
  now: Date,
  lastAcceptedStep: number | null,
): number | null {
  const current = totpStep(now);
  if (typeof code !== 'string' || code.length > MAX_CODE_INPUT_LENGTH) return null;
  const candidate = code.trim();
  const wellFormed = CODE_PATTERN.test(candidate);
  // Compare a same-length placeholder when malformed, so the secret is still exercised the same way.
  const given = Buffer.from(wellFormed ? candidate : '0'.repeat(TOTP_DIGITS), 'ascii');
  let matched: number | null = null;
  for (let step = current - SKEW_STEPS; step <= current + SKEW_STEPS; step++) {
    if (step < 0) continue;
    const equal = timingSafeEqual(given, Buffer.from(codeForStep(secret, step), 'ascii'));
    const fresh = lastAcceptedStep === null || step > lastAcceptedStep;
    if (equal && fresh) matched = step;
  }
  return wellFormed ? matched : null;
}

function codeForStep(secret: string, step: number): string {
  return generateSync({
    secret,
    strategy: 'totp',
    algorithm: 'sha1',
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
    epoch: step * TOTP_PERIOD_SECONDS,
  });
}
