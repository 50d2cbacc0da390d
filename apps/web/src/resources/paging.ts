/**
 * The VM list shows `total` rows but holds only the pages the user scrolled to: rows are fetched
 * in pages of PAGE_SIZE by offset, and the visible rows say which pages are needed.
 */
export const PAGE_SIZE = 200;

/** The pages that hold rows first..last (inclusive); none for an empty range. */
export function pagesFor(first: number, last: number, pageSize = PAGE_SIZE): number[] {
  if (last < first || last < 0) return [];
  const from = Math.floor(Math.max(0, first) / pageSize);
  const to = Math.floor(last / pageSize);
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** The offset of a page. */
export function pageOffset(page: number, pageSize = PAGE_SIZE): number {
  return page * pageSize;
}

/** Row `index` from the loaded pages, or undefined while its page is not there. */
export function rowAt<T>(
  pages: ReadonlyMap<number, readonly T[]>,
  index: number,
  pageSize = PAGE_SIZE,
): T | undefined {
  return pages.get(Math.floor(index / pageSize))?.[index % pageSize];
}

export const SORT_COLUMNS = ['name', 'status', 'remote', 'node', 'cpu', 'memory'] as const;
export type SortColumn = (typeof SORT_COLUMNS)[number];
export type Sort = SortColumn | `-${SortColumn}`;

/** A click on a column header: that column ascending, or reversed when it already sorts. */
export function nextSort(current: Sort | undefined, column: SortColumn): Sort {
  return current === column ? `-${column}` : column;
}

/** aria-sort of a column header. */
export function ariaSort(
  current: Sort | undefined,
  column: SortColumn,
): 'ascending' | 'descending' | 'none' {
  if (current === column) return 'ascending';
  if (current === `-${column}`) return 'descending';
  return 'none';
}
