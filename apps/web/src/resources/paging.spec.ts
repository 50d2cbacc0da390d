import { describe, expect, it } from 'vitest';
import { ariaSort, nextSort, pageOffset, pagesFor, rowAt } from './paging';

describe('pagesFor', () => {
  it('answers the pages that hold the visible rows', () => {
    expect(pagesFor(0, 30, 200)).toEqual([0]);
    expect(pagesFor(190, 210, 200)).toEqual([0, 1]);
    expect(pagesFor(400, 400, 200)).toEqual([2]);
    expect(pagesFor(199, 601, 200)).toEqual([0, 1, 2, 3]);
  });
  it('answers no pages for an empty range', () => {
    expect(pagesFor(0, -1, 200)).toEqual([]);
    expect(pagesFor(5, 4, 200)).toEqual([]);
  });
});

describe('pageOffset and rowAt', () => {
  it('finds a row in its page, and nothing while the page is missing', () => {
    const pages = new Map([
      [0, ['a', 'b']],
      [2, ['e', 'f']],
    ]);
    expect(pageOffset(2, 2)).toBe(4);
    expect(rowAt(pages, 1, 2)).toBe('b');
    expect(rowAt(pages, 5, 2)).toBe('f');
    expect(rowAt(pages, 2, 2)).toBeUndefined();
    expect(rowAt(pages, 7, 2)).toBeUndefined();
  });
});

describe('sorting by a column', () => {
  it('sorts ascending first, then reverses, and aria-sort follows', () => {
    expect(nextSort(undefined, 'name')).toBe('name');
    expect(nextSort('name', 'name')).toBe('-name');
    expect(nextSort('-name', 'name')).toBe('name');
    expect(nextSort('-name', 'cpu')).toBe('cpu');
    expect(ariaSort('-cpu', 'cpu')).toBe('descending');
    expect(ariaSort('cpu', 'cpu')).toBe('ascending');
    expect(ariaSort('cpu', 'name')).toBe('none');
  });
});
