import { describe, expect, it } from 'vitest';
import { VIEW_HASH, viewFromHash } from './view';

describe('view from the location hash', () => {
  it.each([
    ['#/account', 'account'],
    ['#/account/', 'account'],
    ['#/', 'remotes'],
    ['', 'remotes'],
    ['#/accounts', 'remotes'],
    ['#/nowhere', 'remotes'],
  ])('%j shows %s', (hash, view) => {
    expect(viewFromHash(hash)).toBe(view);
  });

  it('maps each view’s own link back to it', () => {
    expect(viewFromHash(VIEW_HASH.account)).toBe('account');
    expect(viewFromHash(VIEW_HASH.remotes)).toBe('remotes');
  });
});
