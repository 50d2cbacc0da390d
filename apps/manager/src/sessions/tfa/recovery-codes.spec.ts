import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  generateRecoveryCodes,
  hashRecoveryCode,
  normalizeRecoveryCode,
  RECOVERY_CODE_ALPHABET,
  RECOVERY_CODE_COUNT,
} from './recovery-codes';

const DISPLAY_FORM = new RegExp(
  `^[${RECOVERY_CODE_ALPHABET}]{4}(-[${RECOVERY_CODE_ALPHABET}]{4}){4}$`,
);
const NORMALIZED_FORM = new RegExp(`^[${RECOVERY_CODE_ALPHABET}]{20}$`);

/** A reproducible byte source (SHA-256 in counter mode over a seed). */
function seededBytes(seed: string): (n: number) => Buffer {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (n) => {
    while (pool.length < n) {
      pool = Buffer.concat([pool, createHash('sha256').update(`${seed}:${counter++}`).digest()]);
    }
    const out = pool.subarray(0, n);
    pool = pool.subarray(n);
    return Buffer.from(out);
  };
}

describe('generateRecoveryCodes', () => {
  it('makes 10 distinct codes of five groups of four unambiguous lowercase symbols', () => {
    const codes = generateRecoveryCodes(randomBytes);
    expect(RECOVERY_CODE_COUNT).toBe(10);
    expect(codes).toHaveLength(RECOVERY_CODE_COUNT);
    expect(new Set(codes).size).toBe(RECOVERY_CODE_COUNT);
    for (const code of codes) {
      expect(code).toMatch(DISPLAY_FORM);
      expect(code).not.toMatch(/[01oli]/);
    }
  });

  it('uses an alphabet without look-alikes, and gives each code at least 80 bits of entropy', () => {
    expect(RECOVERY_CODE_ALPHABET).not.toMatch(/[01oliA-Z]/);
    expect(new Set(RECOVERY_CODE_ALPHABET).size).toBe(RECOVERY_CODE_ALPHABET.length);
    const symbols = generateRecoveryCodes(randomBytes)[0]!.replace(/-/g, '').length;
    expect(symbols * Math.log2(RECOVERY_CODE_ALPHABET.length)).toBeGreaterThanOrEqual(80);
  });

  it('is deterministic in its random source', () => {
    expect(generateRecoveryCodes(seededBytes('a'))).toEqual(
      generateRecoveryCodes(seededBytes('a')),
    );
    expect(generateRecoveryCodes(seededBytes('a'))).not.toEqual(
      generateRecoveryCodes(seededBytes('b')),
    );
  });

  it('draws every symbol equally often (no modulo bias)', () => {
    // 400 000 symbols; a `byte % 31` without rejection makes 8 symbols 12.5 % more frequent, a
    // chi-square near 1 200. With 30 degrees of freedom, 80 is exceeded by chance once in 10^6 runs.
    const counts = new Map<string, number>();
    for (let i = 0; i < 2_000; i++) {
      for (const code of generateRecoveryCodes(randomBytes)) {
        for (const symbol of code.replace(/-/g, ''))
          counts.set(symbol, (counts.get(symbol) ?? 0) + 1);
      }
    }
    expect([...counts.keys()].sort().join('')).toBe(RECOVERY_CODE_ALPHABET);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    const expected = total / RECOVERY_CODE_ALPHABET.length;
    const chiSquare = [...counts.values()].reduce(
      (sum, n) => sum + (n - expected) ** 2 / expected,
      0,
    );
    expect(chiSquare).toBeLessThan(80);
  });

  it('makes distinct codes even when the random source repeats itself', () => {
    const real = seededBytes('repeat');
    // 20 usable bytes (all below 248), handed out twice: the first two codes would be equal.
    const repeated = Buffer.from(real(20).map((b) => b % 248));
    let calls = 0;
    const source = (n: number) => (calls++ < 2 ? Buffer.from(repeated.subarray(0, n)) : real(n));
    const codes = generateRecoveryCodes(source);
    expect(codes).toHaveLength(RECOVERY_CODE_COUNT);
    expect(new Set(codes).size).toBe(RECOVERY_CODE_COUNT);
    const other = seededBytes('other');
    let handedOut = false;
    const repeatedCode = generateRecoveryCodes((n) =>
      handedOut ? other(n) : ((handedOut = true), Buffer.from(repeated)),
    )[0];
    expect(codes[0]).toBe(repeatedCode);
    expect(codes.filter((code) => code === repeatedCode)).toHaveLength(1);
  });

  it('fails loudly instead of looping when the random source is broken', () => {
    expect(() => generateRecoveryCodes((n) => Buffer.alloc(n, 0))).toThrow(/random source/);
    expect(() => generateRecoveryCodes((n) => Buffer.alloc(n, 255))).toThrow(/random source/);
  });
});

describe('normalizeRecoveryCode', () => {
  const codes = generateRecoveryCodes(randomBytes);

  it('round-trips a displayed code to its canonical form, whatever the case and spacing', () => {
    for (const code of codes) {
      const normalized = code.replace(/-/g, '');
      expect(normalizeRecoveryCode(code)).toBe(normalized);
      expect(normalized).toMatch(NORMALIZED_FORM);
      expect(normalizeRecoveryCode(normalized)).toBe(normalized);
      expect(normalizeRecoveryCode(code.toUpperCase())).toBe(normalized);
      expect(normalizeRecoveryCode(code.replace(/-/g, ' '))).toBe(normalized);
      expect(normalizeRecoveryCode(`  ${code.toUpperCase().replace(/-/g, ' - ')}\n`)).toBe(
        normalized,
      );
      expect(normalizeRecoveryCode(normalized.split('').join(' '))).toBe(normalized);
    }
  });

  it('answers null for malformed input without throwing', () => {
    const code = codes[0]!;
    const normalized = code.replace(/-/g, '');
    const hostile: unknown[] = [
      '',
      '----',
      normalized.slice(1),
      `${normalized}a`,
      `${normalized.slice(1)}0`,
      `${normalized.slice(1)}o`,
      `${normalized.slice(1)}1`,
      `${normalized.slice(1)}l`,
      `${normalized.slice(1)}I`,
      `${normalized.slice(1)}_`,
      `${normalized.slice(1)}\u212a`, // KELVIN SIGN, lowercases to an ASCII "k"
      normalized.replace(/[a-z]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0x61 + 0xff41)), // fullwidth
      normalized.repeat(100_000),
      '-'.repeat(1_000_000),
      '\ud800'.repeat(20),
      null,
      undefined,
      42,
    ];
    for (const input of hostile) {
      const label = typeof input === 'string' ? JSON.stringify(input.slice(0, 40)) : String(input);
      expect(() => normalizeRecoveryCode(input as string), label).not.toThrow();
      expect(normalizeRecoveryCode(input as string), label).toBeNull();
    }
  });
});

describe('hashRecoveryCode', () => {
  const codes = generateRecoveryCodes(randomBytes).map((code) => normalizeRecoveryCode(code)!);

  it('is the hex SHA-256 of the normalized code, stable across calls and typings', () => {
    const [code] = codes as [string];
    expect(hashRecoveryCode(code)).toBe(createHash('sha256').update(code).digest('hex'));
    expect(hashRecoveryCode(code)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashRecoveryCode(normalizeRecoveryCode(code.toUpperCase())!)).toBe(
      hashRecoveryCode(code),
    );
    expect(hashRecoveryCode('23456789abcdefghjkmn')).toBe(
      '9ab95d1de19c833c73037e82466b43763f2b7cae16ba6fbdeda26a4b26f20943',
    );
  });

  it('differs for every code', () => {
    expect(new Set(codes.map(hashRecoveryCode)).size).toBe(codes.length);
  });

  it('refuses a code that was not normalized first', () => {
    const code = codes[0]!;
    expect(() => hashRecoveryCode(code.toUpperCase())).toThrow(RangeError);
    expect(() => hashRecoveryCode(`${code.slice(0, 4)}-${code.slice(4)}`)).toThrow(RangeError);
  });
});
