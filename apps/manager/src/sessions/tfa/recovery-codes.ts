import { createHash } from 'node:crypto';

/**
 * One-time recovery codes for a user who lost their authenticator. Shown once, stored hashed.
 *
 * A code is 20 symbols from a 31-symbol lowercase alphabet without the look-alikes 0/o, 1/l/i,
 * displayed in five groups of four: `k7dm-xq3p-9hwe-4naf-tj2c`. That is 20 × log2(31) ≈ 99 bits of
 * entropy; 16 symbols (four groups) would give only 79 bits, short of the 80 required, because the
 * unambiguous alphabet has 31 symbols, not 32.
 */
export const RECOVERY_CODE_COUNT = 10;
export const RECOVERY_CODE_ALPHABET = '23456789abcdefghjkmnpqrstuvwxyz';
const GROUP_LENGTH = 4;
const GROUP_COUNT = 5;
const CODE_LENGTH = GROUP_LENGTH * GROUP_COUNT;
const NORMALIZED_PATTERN = new RegExp(`^[${RECOVERY_CODE_ALPHABET}]{${CODE_LENGTH}}$`);
/** Bytes at or above this are rejected: 248 = 8 × 31, so `byte % 31` is uniform below it. */
const UNBIASED_LIMIT = 256 - (256 % RECOVERY_CODE_ALPHABET.length);
/** A well-formed code with generous spacing is far shorter; longer input is refused unread. */
const MAX_INPUT_LENGTH = 128;
/** Bound on draws, so a broken random source fails loudly instead of looping forever. */
const MAX_DRAWS = 64;

/**
 * `RECOVERY_CODE_COUNT` distinct codes in display form, drawn from `randomBytes` (crypto.randomBytes
 * in production) by rejection sampling, so every symbol is uniform (no modulo bias).
 */
export function generateRecoveryCodes(randomBytes: (n: number) => Buffer): string[] {
  const codes = new Set<string>();
  for (let draw = 0; codes.size < RECOVERY_CODE_COUNT; draw++) {
    if (draw >= MAX_DRAWS)
      throw new Error('the random source keeps repeating itself: refusing to make recovery codes');
    codes.add(formatCode(drawSymbols(randomBytes)));
  }
  return [...codes];
}

/**
 * The canonical form of a code the user typed (lowercase, no spaces or dashes), or null when it is
 * not a well-formed code. Case-insensitive for ASCII only: non-ASCII look-alikes are refused.
 */
export function normalizeRecoveryCode(input: string): string | null {
  if (typeof input !== 'string' || input.length > MAX_INPUT_LENGTH) return null;
  const compact = input.replace(/[\s-]/g, '').replace(/[A-Z]/g, (c) => c.toLowerCase());
  return NORMALIZED_PATTERN.test(compact) ? compact : null;
}

/**
 * Hex SHA-256 of a normalized code, for storage and lookup. A fast unsalted hash is sound here,
 * unlike for passwords: each code carries about 99 bits of uniform entropy, so neither a brute-force
 * search nor a precomputed table over the code space is feasible however fast the hash is, and
 * a slow KDF would only make checking a login slower. Being deterministic, the hash can also be
 * looked up directly.
 */
export function hashRecoveryCode(normalized: string): string {
  if (!NORMALIZED_PATTERN.test(normalized))
    throw new RangeError('hashRecoveryCode needs a normalized recovery code');
  return createHash('sha256').update(normalized, 'ascii').digest('hex');
}

function drawSymbols(randomBytes: (n: number) => Buffer): string {
  let symbols = '';
  for (let draw = 0; symbols.length < CODE_LENGTH; draw++) {
    if (draw >= MAX_DRAWS)
      throw new Error('the random source yields no usable bytes: refusing to make recovery codes');
    for (const byte of randomBytes(CODE_LENGTH)) {
      if (byte >= UNBIASED_LIMIT) continue;
      symbols += RECOVERY_CODE_ALPHABET[byte % RECOVERY_CODE_ALPHABET.length];
      if (symbols.length === CODE_LENGTH) break;
    }
  }
  return symbols;
}

function formatCode(symbols: string): string {
  const groups: string[] = [];
  for (let i = 0; i < symbols.length; i += GROUP_LENGTH)
    groups.push(symbols.slice(i, i + GROUP_LENGTH));
  return groups.join('-');
}
