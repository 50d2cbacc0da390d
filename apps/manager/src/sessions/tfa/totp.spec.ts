import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { requireBinary } from '@debvisor/testing';
import { describe, expect, it } from 'vitest';
import {
  generateTotpSecret,
  matchTotp,
  totpCode,
  totpQrCodePng,
  totpStep,
  totpUri,
  TOTP_DIGITS,
  TOTP_PERIOD_SECONDS,
} from './totp';

/** RFC 6238 appendix B: the SHA-1 seed is the ASCII string "12345678901234567890". */
const RFC_SECRET = generateTotpSecret(Buffer.from('12345678901234567890', 'ascii'));
const RFC_SHA1_VECTORS: [unixSeconds: number, eightDigits: string][] = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];

const at = (unixSeconds: number) => new Date(unixSeconds * 1000);
const STEP_MS = TOTP_PERIOD_SECONDS * 1000;
const NOW = new Date('2031-07-14T10:20:07.250Z');

/** The same digits written with other Unicode digit characters (fullwidth, Arabic-Indic). */
const fullwidth = (code: string) =>
  code.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)));
const arabicIndic = (code: string) =>
  code.replace(/[0-9]/g, (d) => String.fromCharCode(0x0660 + Number(d)));

/** oathtool's answer (`--now` as a UTC date) for a base32 secret. */
function oathtoolTotp(oathtool: string, secret: string, when: Date): string {
  const now = `${when.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  const out = execFileSync(
    oathtool,
    ['--totp', '-b', `--digits=${TOTP_DIGITS}`, '--now', now, '--', secret],
    {
      timeout: 10_000,
      encoding: 'utf8',
      env: { ...process.env, TZ: 'UTC' },
    },
  );
  return out.trim();
}

describe('TOTP secret', () => {
  it('encodes the 20 given bytes as unpadded RFC 4648 base32', () => {
    expect(RFC_SECRET).toBe('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
    const secret = generateTotpSecret(randomBytes(20));
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  });

  it('is deterministic in the bytes it is given', () => {
    const bytes = randomBytes(20);
    expect(generateTotpSecret(bytes)).toBe(generateTotpSecret(Buffer.from(bytes)));
  });

  it('refuses anything but 20 bytes of randomness', () => {
    expect(() => generateTotpSecret(randomBytes(10))).toThrow(RangeError);
    expect(() => generateTotpSecret(randomBytes(32))).toThrow(RangeError);
  });
});

describe('totpStep', () => {
  it('counts 30-second steps from the Unix epoch, changing exactly on the boundary', () => {
    expect(totpStep(at(0))).toBe(0);
    expect(totpStep(at(29))).toBe(0);
    expect(totpStep(new Date(29_999))).toBe(0);
    expect(totpStep(at(30))).toBe(1);
    expect(totpStep(at(59))).toBe(1);
    expect(totpStep(at(60))).toBe(2);
    expect(totpStep(at(1111111109))).toBe(0x23523ec);
  });

  it('refuses an invalid date', () => {
    expect(() => totpStep(new Date('not a date'))).toThrow(RangeError);
  });
});

describe('totpCode and matchTotp', () => {
  it.each(RFC_SHA1_VECTORS)(
    'give the RFC 6238 SHA-1 test vector at T=%i (last 6 digits of %s)',
    (seconds, eightDigits) => {
      const expected = eightDigits.slice(-TOTP_DIGITS);
      expect(totpCode(RFC_SECRET, at(seconds))).toBe(expected);
      expect(matchTotp(RFC_SECRET, expected, at(seconds), null)).toBe(totpStep(at(seconds)));
    },
  );

  it('agree with an independent implementation (oathtool) for random secrets, on and around step boundaries', () => {
    const oathtool = requireBinary('oathtool', 'oathtool');
    const times: Date[] = [at(29), at(30), at(59), at(60)];
    for (let i = 0; i < 6; i++) {
      const t = randomInt(946_684_800, 4_102_444_800); // 2000 to 2100
      const start = t - (t % 60);
      for (const second of [0, 29, 30, 59]) times.push(at(start + second));
    }
    for (const [i, when] of times.entries()) {
      const secret = generateTotpSecret(randomBytes(20));
      const context = `secret ${secret} at ${when.toISOString()} (case ${i})`;
      const expected = oathtoolTotp(oathtool, secret, when);
      expect(expected, context).toMatch(/^[0-9]{6}$/);
      expect(totpCode(secret, when), context).toBe(expected);
      // Adjacent steps share a code with probability 1e-6; the later step is answered then.
      const step = totpStep(when);
      const answer =
        totpCode(secret, new Date(when.getTime() + STEP_MS)) === expected ? step + 1 : step;
      expect(matchTotp(secret, expected, when, null), context).toBe(answer);
      expect(matchTotp(secret, expected, when, answer), `${context}: replay`).toBeNull();
    }
  });

  it('accepts the codes of the previous and the next step, and answers which step matched', () => {
    const step = totpStep(NOW);
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, NOW), NOW, null)).toBe(step);
    expect(
      matchTotp(RFC_SECRET, totpCode(RFC_SECRET, new Date(NOW.getTime() - STEP_MS)), NOW, null),
    ).toBe(step - 1);
    expect(
      matchTotp(RFC_SECRET, totpCode(RFC_SECRET, new Date(NOW.getTime() + STEP_MS)), NOW, null),
    ).toBe(step + 1);
  });

  it('refuses the codes of two steps before or after now', () => {
    for (const offset of [-2, 2, -3, 3]) {
      const code = totpCode(RFC_SECRET, new Date(NOW.getTime() + offset * STEP_MS));
      expect(matchTotp(RFC_SECRET, code, NOW, null), `offset ${offset}`).toBeNull();
    }
  });

  it('refuses a code of another secret', () => {
    const other = generateTotpSecret(Buffer.alloc(20, 7));
    expect(totpCode(other, NOW)).not.toBe(totpCode(RFC_SECRET, NOW));
    expect(matchTotp(RFC_SECRET, totpCode(other, NOW), NOW, null)).toBeNull();
  });

  it('rejects a reused TOTP code within the same step', () => {
    const code = totpCode(RFC_SECRET, NOW);
    const accepted = matchTotp(RFC_SECRET, code, NOW, null);
    expect(accepted).toBe(totpStep(NOW));
    expect(matchTotp(RFC_SECRET, code, new Date(NOW.getTime() + 1000), accepted)).toBeNull();
  });

  it('rejects the code of a step earlier than the last accepted one, but accepts a later step', () => {
    const step = totpStep(NOW);
    const previous = totpCode(RFC_SECRET, new Date(NOW.getTime() - STEP_MS));
    expect(matchTotp(RFC_SECRET, previous, NOW, step)).toBeNull();
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, NOW), NOW, step + 1)).toBeNull();
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, NOW), NOW, step - 1)).toBe(step);
    expect(
      matchTotp(RFC_SECRET, totpCode(RFC_SECRET, new Date(NOW.getTime() + STEP_MS)), NOW, step),
    ).toBe(step + 1);
  });

  it('accepts a correct code with surrounding whitespace', () => {
    const code = totpCode(RFC_SECRET, NOW);
    expect(matchTotp(RFC_SECRET, `  ${code} `, NOW, null)).toBe(totpStep(NOW));
    expect(matchTotp(RFC_SECRET, `${code}\n`, NOW, null)).toBe(totpStep(NOW));
  });

  it('refuses malformed codes without throwing, even when their digits are right', () => {
    const code = totpCode(RFC_SECRET, NOW);
    const hostile: unknown[] = [
      '',
      '      ',
      code.slice(0, 5),
      `${code}0`,
      `0${code}`,
      `${code.slice(0, 5)}x`,
      `${code.slice(0, 3)} ${code.slice(3)}`,
      `${code.slice(0, 3)}-${code.slice(3)}`,
      `+${code.slice(1)}`,
      fullwidth(code),
      arabicIndic(code),
      `${code}\u0000`,
      code.repeat(200_000),
      '9'.repeat(1_000_000),
      '\ud800'.repeat(6),
      null,
      undefined,
      123456,
    ];
    for (const input of hostile) {
      const label = typeof input === 'string' ? JSON.stringify(input.slice(0, 40)) : String(input);
      expect(() => matchTotp(RFC_SECRET, input as string, NOW, null), label).not.toThrow();
      expect(matchTotp(RFC_SECRET, input as string, NOW, null), label).toBeNull();
    }
  });

  it('never accepts a step before the Unix epoch', () => {
    // At t=10 s the previous step would be -1; only steps 0 and 1 are candidates.
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, at(10)), at(10), null)).toBe(0);
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, at(40)), at(10), null)).toBe(1);
  });
});

describe('totpUri', () => {
  it('parses back with URL and carries label, issuer, secret, algorithm, digits and period', () => {
    const secret = generateTotpSecret(randomBytes(20));
    const uri = totpUri({
      secret,
      issuer: 'DebVisor dc1.example.org',
      account: 'alice@example.org',
    });
    expect(uri.startsWith('otpauth://totp/DebVisor%20dc1.example.org:alice%40example.org?')).toBe(
      true,
    );
    const url = new URL(uri);
    expect(url.protocol).toBe('otpauth:');
    expect(url.host).toBe('totp');
    expect(decodeURIComponent(url.pathname)).toBe('/DebVisor dc1.example.org:alice@example.org');
    expect(url.searchParams.get('secret')).toBe(secret);
    expect(url.searchParams.get('issuer')).toBe('DebVisor dc1.example.org');
    expect(url.searchParams.get('algorithm')).toBe('SHA1');
    expect(url.searchParams.get('digits')).toBe('6');
    expect(url.searchParams.get('period')).toBe('30');
  });

  it('escapes characters that would break the label or the query (colon, ampersand, slash, hash)', () => {
    const uri = totpUri({ secret: RFC_SECRET, issuer: 'Acme: R&D / #1', account: 'corp:bob?x=1' });
    const url = new URL(uri);
    const [issuer, account, ...rest] = url.pathname.slice(1).split(':');
    expect(rest).toEqual([]);
    expect(decodeURIComponent(issuer ?? '')).toBe('Acme: R&D / #1');
    expect(decodeURIComponent(account ?? '')).toBe('corp:bob?x=1');
    expect(url.hash).toBe('');
    expect(url.searchParams.get('issuer')).toBe('Acme: R&D / #1');
    expect(url.searchParams.get('secret')).toBe(RFC_SECRET);
    expect([...url.searchParams.keys()]).toEqual([
      'secret',
      'issuer',
      'algorithm',
      'digits',
      'period',
    ]);
  });

  it('refuses an empty issuer or account', () => {
    expect(() => totpUri({ secret: RFC_SECRET, issuer: '', account: 'alice' })).toThrow(RangeError);
    expect(() => totpUri({ secret: RFC_SECRET, issuer: 'DebVisor', account: '' })).toThrow(
      RangeError,
    );
  });
});

describe('totpQrCodePng', () => {
  it('answers a PNG data URL, the same for the same URI', async () => {
    const uri = totpUri({ secret: RFC_SECRET, issuer: 'DebVisor', account: 'alice' });
    const dataUrl = await totpQrCodePng(uri);
    const prefix = 'data:image/png;base64,';
    expect(dataUrl.startsWith(prefix)).toBe(true);
    const png = Buffer.from(dataUrl.slice(prefix.length), 'base64');
    expect(png.subarray(0, 8)).toEqual(
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    );
    expect(png.length).toBeGreaterThan(100);
    expect(await totpQrCodePng(uri)).toBe(dataUrl);
    expect(await totpQrCodePng(`${uri}x`)).not.toBe(dataUrl);
  });
});
