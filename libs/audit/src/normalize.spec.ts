import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical-json';
import { normalizeEvent, REDACTED } from './normalize';

const TOKEN = `dvdm_0011223344556677_${'S'.repeat(43)}`;
const KEY = `dvk_8899aabbccddeeff_${'K'.repeat(43)}`;
const AT = new Date('2026-05-01T12:00:00.123Z');

describe('normalizeEvent', () => {
  it('keeps ids of tokens and keys but never their secrets, wherever they appear', () => {
    const event = normalizeEvent({
      at: AT,
      action: 'remote.create',
      outcome: 'attempt',
      principal: `root@local ${TOKEN}`,
      target: `/remotes/${KEY}`,
      details: {
        note: `used ${TOKEN} and Bearer ${KEY}`,
        key: KEY,
        apiKey: 'anything',
        credentials: [{ name: 'admin', key: KEY, keyId: '8899aabbccddeeff' }],
        header: `Authorization: Bearer abcdefghijklmnop`,
        pem: '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----',
      },
    });
    const text = canonicalJson(event);
    expect(text).not.toContain('S'.repeat(20));
    expect(text).not.toContain('K'.repeat(20));
    expect(text).not.toContain('abcdefghijklmnop');
    expect(text).not.toContain('MIIB');
    expect(event.details.key).toBe(REDACTED);
    expect(event.details.apiKey).toBe(REDACTED);
    expect(event.details.credentials).toEqual([
      { name: 'admin', key: REDACTED, keyId: '8899aabbccddeeff' },
    ]);
    expect(event.principal).toBe(`root@local dvdm_0011223344556677_${REDACTED}`);
    expect(text).toContain('dvk_8899aabbccddeeff_');
  });

  it('makes text storable: no NUL, no lone surrogates, bounded length', () => {
    const event = normalizeEvent({
      at: AT,
      action: 'auth.login',
      outcome: 'failure',
      target: `a\u0000b\ud800c${'x'.repeat(2000)}`,
      details: { s: 'y'.repeat(5000) },
    });
    expect(event.target).toMatch(/^a\uFFFDb\uFFFDc/);
    expect(event.target!.length).toBe(1024);
    expect((event.details.s as string).length).toBe(1024);
    expect(() => canonicalJson(event)).not.toThrow();
  });

  it('reduces details to plain JSON', () => {
    const event = normalizeEvent({
      at: AT,
      action: 'task.finish',
      outcome: 'success',
      details: {
        when: new Date(AT),
        big: 10n,
        gone: undefined,
        f: () => 1,
        buf: Buffer.from('x'),
        err: new Error('boom'),
        list: Array.from({ length: 105 }, (_, i) => i),
      },
    });
    expect(event.details).toMatchObject({
      when: AT.toISOString(),
      big: '10',
      buf: '[binary]',
      err: 'boom',
    });
    expect(event.details).not.toHaveProperty('gone');
    expect(event.details).not.toHaveProperty('f');
    expect((event.details.list as unknown[]).at(-1)).toBe('[5 more]');
    expect(event.ts).toBe('2026-05-01T12:00:00.123Z');
  });

  it('refuses an action name outside the vocabulary shape', () => {
    expect(() => normalizeEvent({ at: AT, action: 'Remote Create', outcome: 'success' })).toThrow(
      /not an audit action/,
    );
  });
});
