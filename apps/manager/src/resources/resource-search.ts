/**
 * The search language of GET /api/v1/resources?q=: space-separated terms, `key:value` or a bare word.
 *
 *   web remote:dc-east status:running status:paused label:env=prod name:"web 1"
 *
 * Values may be double-quoted (`\"` and `\\` inside quotes). The same key repeated means any of its
 * values; different keys, and every bare word, must all match.
 */

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
export type SearchKey = (typeof SEARCH_KEYS)[number];

/** `label:env=prod` tests the value, `label:env` only that the label is there. */
export interface LabelTest {
  readonly key: string;
  readonly value: string | null;
}

/** One condition of a search: the item matches one of the values. Values are lower-cased. */
export type SearchClause =
  | { readonly key: Exclude<SearchKey, 'label'>; readonly values: readonly string[] }
  | { readonly key: 'label'; readonly values: readonly LabelTest[] };

/** Every clause must match. */
export interface ResourceSearch {
  readonly clauses: readonly SearchClause[];
}

/** A search that cannot be read; the message says what is wrong and is shown to the user. */
export class SearchSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SearchSyntaxError';
  }
}

const KEY_PREFIX = /^([A-Za-z][A-Za-z0-9_-]*):/;
const TYPES = ['node', 'vm'];

function isSpace(char: string | undefined): boolean {
  return char === ' ' || char === '\t' || char === '\n' || char === '\r';
}

function isSearchKey(key: string): key is SearchKey {
  return (SEARCH_KEYS as readonly string[]).includes(key);
}

/** The term that starts at `start` as the user wrote it, for messages. */
function termAt(text: string, start: number): string {
  return JSON.stringify(text.slice(start).split(/\s/)[0]);
}

/** Reads the value at `start` of the term at `termStart`, quoted or up to the next space: its text and where it ends. */
function readValue(text: string, start: number, termStart: number): { value: string; end: number } {
  if (text[start] !== '"') {
    let end = start;
    while (end < text.length && !isSpace(text[end])) {
      if (text[end] === '"')
        throw new SearchSyntaxError(`a quote may only open a value: ${termAt(text, termStart)}`);
      end += 1;
    }
    return { value: text.slice(start, end), end };
  }
  let value = '';
  let at = start + 1;
  for (;;) {
    if (at >= text.length)
      throw new SearchSyntaxError(`unterminated quote in ${JSON.stringify(text.slice(termStart))}`);
    const char = text[at];
    if (char === '\\' && (text[at + 1] === '"' || text[at + 1] === '\\')) {
      value += text[at + 1];
      at += 2;
    } else if (char === '"') {
      at += 1;
      break;
    } else {
      value += char;
      at += 1;
    }
  }
  if (at < text.length && !isSpace(text[at]))
    throw new SearchSyntaxError(`a closing quote must end the term: ${termAt(text, termStart)}`);
  return { value, end: at };
}

function labelTest(value: string): LabelTest {
  const equals = value.indexOf('=');
  const key = (equals < 0 ? value : value.slice(0, equals)).trim().toLowerCase();
  if (!key)
    throw new SearchSyntaxError(`label:${value} names no label: use label:key or label:key=value`);
  return { key, value: equals < 0 ? null : value.slice(equals + 1).toLowerCase() };
}

/** Parses a search; throws SearchSyntaxError naming the problem (an unknown key names the keys allowed). */
export function parseResourceSearch(text: string): ResourceSearch {
  const byKey = new Map<SearchKey, (string | LabelTest)[]>();
  const words: string[] = [];
  let at = 0;
  while (at < text.length) {
    if (isSpace(text[at])) {
      at += 1;
      continue;
    }
    const prefix = KEY_PREFIX.exec(text.slice(at, at + 64));
    if (!prefix) {
      const { value, end } = readValue(text, at, at);
      if (value.trim()) words.push(value.toLowerCase());
      at = end;
      continue;
    }
    const key = prefix[1].toLowerCase();
    if (!isSearchKey(key))
      throw new SearchSyntaxError(
        `unknown search key "${prefix[1]}": use one of ${SEARCH_KEYS.join(', ')}`,
      );
    const { value, end } = readValue(text, at + prefix[0].length, at);
    if (!value.trim()) throw new SearchSyntaxError(`${key}: needs a value (${key}:value)`);
    const lower = value.toLowerCase();
    if (key === 'type' && !TYPES.includes(lower))
      throw new SearchSyntaxError(`type:${value}: the type is node or vm`);
    const values = byKey.get(key) ?? [];
    values.push(key === 'label' ? labelTest(value) : lower);
    byKey.set(key, values);
    at = end;
  }
  const clauses: SearchClause[] = [...byKey].map(
    ([key, values]) => ({ key, values }) as SearchClause,
  );
  for (const word of words) clauses.push({ key: 'name', values: [word] });
  return { clauses };
}

/** The parts of a node or VM a search reads (both resource kinds have them, or `type` tells them apart). */
type Searchable =
  | {
      readonly type: 'node';
      readonly remote: string;
      readonly id: string;
      readonly name: string;
      readonly status: string;
    }
  | {
      readonly type: 'vm';
      readonly remote: string;
      readonly id: string;
      readonly name: string;
      readonly status: string;
      readonly node: string;
      readonly tenant: string | null;
      readonly labels: Readonly<Record<string, string>>;
    };

function labelMatches(labels: Readonly<Record<string, string>>, test: LabelTest): boolean {
  for (const [key, value] of Object.entries(labels)) {
    if (
      key.toLowerCase() === test.key &&
      (test.value === null || value.toLowerCase() === test.value)
    )
      return true;
  }
  return false;
}

function clauseMatches(
  clause: SearchClause,
  item: Searchable,
  nodeName: (nodeId: string) => string | undefined,
): boolean {
  switch (clause.key) {
    case 'remote':
      return clause.values.includes(item.remote.toLowerCase());
    case 'node':
      // A node by its id or its name; a VM by the id or the name of the node it runs on.
      if (item.type === 'node')
        return (
          clause.values.includes(item.id.toLowerCase()) ||
          clause.values.includes(item.name.toLowerCase())
        );
      return (
        clause.values.includes(item.node.toLowerCase()) ||
        clause.values.includes(nodeName(item.node)?.toLowerCase() ?? '')
      );
    case 'status':
      return clause.values.includes(item.status.toLowerCase());
    case 'name': {
      const name = item.name.toLowerCase();
      return clause.values.some((value) => name.includes(value));
    }
    case 'tenant':
      return (
        item.type === 'vm' &&
        item.tenant !== null &&
        clause.values.includes(item.tenant.toLowerCase())
      );
    case 'type':
      return clause.values.includes(item.type);
    case 'id':
      return clause.values.includes(item.id.toLowerCase());
    case 'label':
      return item.type === 'vm' && clause.values.some((test) => labelMatches(item.labels, test));
  }
}

/** True when every clause matches; `nodeName` resolves a VM's node id to the node's name. */
export function searchMatches(
  search: ResourceSearch,
  item: Searchable,
  nodeName: (nodeId: string) => string | undefined,
): boolean {
  for (const clause of search.clauses) if (!clauseMatches(clause, item, nodeName)) return false;
  return true;
}

/**
 * What a search can match at all, so that whole remotes and kinds are skipped before looking at
 * items: the remotes it names (undefined: any), and whether nodes and VMs can match.
 */
export function searchScope(search: ResourceSearch): {
  remotes: ReadonlySet<string> | undefined;
  nodes: boolean;
  vms: boolean;
} {
  let remotes: Set<string> | undefined;
  let nodes = true;
  let vms = true;
  for (const clause of search.clauses) {
    if (clause.key === 'remote')
      remotes = remotes
        ? new Set(clause.values.filter((v) => remotes!.has(v)))
        : new Set(clause.values);
    if (clause.key === 'type') {
      nodes &&= clause.values.includes('node');
      vms &&= clause.values.includes('vm');
    }
    if (clause.key === 'tenant' || clause.key === 'label') nodes = false;
  }
  return { remotes, nodes, vms };
}

/** Adds clauses (AND) to a search: for the older single-value query parameters. */
export function withClauses(
  search: ResourceSearch,
  clauses: readonly SearchClause[],
): ResourceSearch {
  return { clauses: [...search.clauses, ...clauses] };
}
