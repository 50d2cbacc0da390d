import { describe, expect, it } from 'vitest';
import { nestingDepth } from './json-body.middleware';

describe('nestingDepth', () => {
  it('counts objects and arrays, not brackets inside strings or escaped quotes', () => {
    expect(nestingDepth(Buffer.from('1'))).toBe(0);
    expect(nestingDepth(Buffer.from('{"a":[1,{"b":2}]}'))).toBe(3);
    expect(nestingDepth(Buffer.from('{"a":"[[[[{{{{"}'))).toBe(1);
    expect(nestingDepth(Buffer.from('{"a":"\\"[[[[","b":[]}'))).toBe(2);
    expect(nestingDepth(Buffer.from('['.repeat(10_000) + ']'.repeat(10_000)))).toBe(10_000);
  });
});
