import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical-json';

describe('canonicalJson (RFC 8785)', () => {
  it('writes the example of RFC 8785 section 3.2.2 exactly', () => {
    const input = JSON.parse(
      '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], ' +
        '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}',
    );
    expect(canonicalJson(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it('sorts keys by UTF-16 code units as in RFC 8785 section 3.2.3', () => {
    const input = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    const keys = Object.keys(JSON.parse(canonicalJson(input)) as object);
    // JSON.parse puts the integer-like key first; compare the text order instead.
    const text = canonicalJson(input);
    const order = ['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33'].map((k) =>
      text.indexOf(JSON.stringify(k)),
    );
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(keys).toHaveLength(7);
  });

  it('has no whitespace and sorts nested objects, keeping array order', () => {
    expect(canonicalJson({ b: [3, { z: 1, a: 2 }], a: { y: null, x: 'x y' } })).toBe(
      '{"a":{"x":"x y","y":null},"b":[3,{"a":2,"z":1}]}',
    );
  });

  it('leaves out undefined members, like JSON.stringify', () => {
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
  });

  it('gives the same text after a round trip through JSON with keys in another order', () => {
    const value = {
      seq: 7,
      details: { code: 'x', n: 0.1, list: [1, 'two'] },
      ts: '2026-01-01T00:00:00.000Z',
    };
    const reordered = JSON.parse(
      '{"ts":"2026-01-01T00:00:00.000Z","details":{"list":[1,"two"],"n":0.1,"code":"x"},"seq":7}',
    );
    expect(canonicalJson(reordered)).toBe(canonicalJson(value));
  });

  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a bigint', 1n],
    ['a function', () => 1],
    ['undefined in an array', [undefined]],
    ['a Date', new Date(0)],
    ['a lone surrogate', '\ud800x'],
  ])('refuses %s', (_, value) => {
    expect(() => canonicalJson({ value })).toThrow(TypeError);
  });
});
