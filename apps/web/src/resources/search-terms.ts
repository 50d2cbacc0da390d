/**
 * Small edits of a search (`remote:dc-east status:running web`) in the browser: the manager parses
 * and checks it (a bad one answers 400 with the reason); the UI only needs to split it into terms as
 * written, to put the tree's remote and node into it without losing the rest.
 */

/** The keys the manager understands, for the help text. */
export const SEARCH_KEYS = [
  'remote',
  'node',
  'status',
  'name',
  'tenant',
  'type',
  'id',
  'label',
] as const;

/** The terms of a search as written (quotes kept), split at spaces outside double quotes. */
export function searchTerms(q: string): string[] {
  const terms: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < q.length; i++) {
    const char = q[i];
    if (quoted && char === '\\' && i + 1 < q.length) {
      current += char + q[i + 1];
      i += 1;
      continue;
    }
    if (char === '"') quoted = !quoted;
    if (!quoted && /\s/.test(char)) {
      if (current) terms.push(current);
      current = '';
    } else {
      current += char;
    }
  }
  if (current) terms.push(current);
  return terms;
}

/** The key of a term (`remote` of `remote:dc-east`), lower-cased; null for a bare word. */
export function termKey(term: string): string | null {
  const match = /^([A-Za-z][A-Za-z0-9_-]*):/.exec(term);
  return match ? match[1].toLowerCase() : null;
}

/** The value of a `key:value` term without its quotes. */
export function termValue(term: string): string {
  const raw = term.slice(term.indexOf(':') + 1);
  if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"'))
    return raw.slice(1, -1).replace(/\\(["\\])/g, '$1');
  return raw;
}

/** A value as the search language wants it: quoted (with escapes) when it holds a space or a quote. */
export function quoteValue(value: string): string {
  return /[\s"\\]/.test(value) || value === '' ? `"${value.replace(/(["\\])/g, '\\$1')}"` : value;
}

/** The first value of `key` in the search, or null. */
export function valueOf(q: string, key: string): string | null {
  const term = searchTerms(q).find((t) => termKey(t) === key);
  return term === undefined ? null : termValue(term);
}

/**
 * The search narrowed to a remote (and a node of it): its remote: and node: terms replaced, every
 * other term kept.
 */
export function withScope(q: string, scope: { remote: string; node?: string }): string {
  const rest = searchTerms(q).filter((t) => {
    const key = termKey(t);
    return key !== 'remote' && key !== 'node';
  });
  const head = [
    `remote:${quoteValue(scope.remote)}`,
    ...(scope.node === undefined ? [] : [`node:${quoteValue(scope.node)}`]),
  ];
  return [...head, ...rest].join(' ');
}
