import { describe, expect, it } from 'vitest';
import { quoteValue, searchTerms, termKey, termValue, valueOf, withScope } from './search-terms';

describe('searchTerms', () => {
  it('splits at spaces outside double quotes and keeps the quotes', () => {
    expect(searchTerms('  web remote:dc-east   name:"web 1" status:running ')).toEqual([
      'web',
      'remote:dc-east',
      'name:"web 1"',
      'status:running',
    ]);
  });
  it('keeps escaped quotes inside a quoted value', () => {
    expect(searchTerms('name:"a \\" b" x')).toEqual(['name:"a \\" b"', 'x']);
  });
  it('answers no terms for an empty search', () => {
    expect(searchTerms('   ')).toEqual([]);
  });
});

describe('termKey and termValue', () => {
  it('reads the key (lower-cased) and the unquoted value', () => {
    expect(termKey('Remote:dc-east')).toBe('remote');
    expect(termKey('web')).toBeNull();
    expect(termValue('name:"a \\" b"')).toBe('a " b');
    expect(termValue('node:node-1')).toBe('node-1');
  });
});

describe('quoteValue', () => {
  it('quotes values with spaces, quotes or backslashes, and empty ones', () => {
    expect(quoteValue('dc-east')).toBe('dc-east');
    expect(quoteValue('web 1')).toBe('"web 1"');
    expect(quoteValue('a"b')).toBe('"a\\"b"');
    expect(quoteValue('')).toBe('""');
  });
});

describe('valueOf', () => {
  it('answers the first value of a key, or null', () => {
    expect(valueOf('web remote:dc-east remote:dc-west', 'remote')).toBe('dc-east');
    expect(valueOf('web', 'node')).toBeNull();
  });
});

describe('withScope', () => {
  it('replaces the remote and node terms and keeps the others', () => {
    expect(
      withScope('node:old web remote:dc-west status:running', {
        remote: 'dc-east',
        node: 'node-2',
      }),
    ).toBe('remote:dc-east node:node-2 web status:running');
  });
  it('narrows to a remote alone, dropping a node of another remote', () => {
    expect(withScope('node:node-1', { remote: 'dc-east' })).toBe('remote:dc-east');
  });
  it('quotes names that need it', () => {
    expect(withScope('', { remote: 'lab', node: 'rack 1' })).toBe('remote:lab node:"rack 1"');
  });
});
