import { describe, expect, it } from 'vitest';
import {
  parseResourceSearch,
  searchMatches,
  searchScope,
  SearchSyntaxError,
} from './resource-search';

const node = { type: 'node', remote: 'dc-east', id: 'node-1', name: 'hv-a', status: 'ok' } as const;
const vm = {
  type: 'vm',
  remote: 'dc-east',
  id: '11111111-1111-4111-8111-111111111111',
  name: 'Web 1',
  status: 'running',
  node: 'node-1',
  tenant: 'Blue',
  labels: { Env: 'Prod', role: 'web' },
} as const;
const nodeNames = new Map([['node-1', 'hv-a']]);
const nodeName = (id: string) => nodeNames.get(id);

function matches(q: string, item: typeof node | typeof vm): boolean {
  return searchMatches(parseResourceSearch(q), item, nodeName);
}

function problem(q: string): string {
  try {
    parseResourceSearch(q);
  } catch (error) {
    expect(error).toBeInstanceOf(SearchSyntaxError);
    return (error as Error).message;
  }
  throw new Error(`${q} was accepted`);
}

describe('parseResourceSearch', () => {
  it('reads key:value terms and bare words, lower-casing values and keys', () => {
    expect(parseResourceSearch('  Web  Status:Running remote:dc-east ').clauses).toEqual([
      { key: 'status', values: ['running'] },
      { key: 'remote', values: ['dc-east'] },
      { key: 'name', values: ['web'] },
    ]);
    expect(parseResourceSearch('').clauses).toEqual([]);
  });

  it('groups a repeated key into one clause (any of its values) and keeps each bare word its own clause (all of them)', () => {
    expect(parseResourceSearch('status:running web status:paused db').clauses).toEqual([
      { key: 'status', values: ['running', 'paused'] },
      { key: 'name', values: ['web'] },
      { key: 'name', values: ['db'] },
    ]);
  });

  it('reads double-quoted values, with \\" and \\\\ inside, for keys and bare words', () => {
    expect(parseResourceSearch('name:"web 1" "db  2" tenant:"a \\"b\\" \\\\c"').clauses).toEqual([
      { key: 'name', values: ['web 1'] },
      { key: 'tenant', values: ['a "b" \\c'] },
      { key: 'name', values: ['db  2'] },
    ]);
  });

  it('reads label:key=value and label:key (presence)', () => {
    expect(
      parseResourceSearch('label:env=Prod label:team label:"note=a b" label:x=').clauses,
    ).toEqual([
      {
        key: 'label',
        values: [
          { key: 'env', value: 'prod' },
          { key: 'team', value: null },
          { key: 'note', value: 'a b' },
          { key: 'x', value: '' },
        ],
      },
    ]);
  });

  it('refuses an unknown key, naming it and every key allowed', () => {
    expect(problem('web colour:blue')).toBe(
      'unknown search key "colour": use one of remote, node, status, name, tenant, type, id, label',
    );
  });

  it('refuses empty values, an unknown type, a label without a key and misplaced or unterminated quotes', () => {
    expect(problem('name:')).toContain('name: needs a value');
    expect(problem('status:"" web')).toContain('status: needs a value');
    expect(problem('type:disk')).toContain('type:disk: the type is node or vm');
    expect(problem('label:=prod')).toContain('names no label');
    expect(problem('name:"web 1')).toBe('unterminated quote in "name:\\"web 1"');
    expect(problem('name:"web"1')).toContain('a closing quote must end the term');
    expect(problem('name:we"b')).toContain('a quote may only open a value: "name:we\\"b"');
  });

  it('takes words that only look like keys (digits first, a leading colon) as bare words', () => {
    expect(parseResourceSearch('10:30 :x').clauses).toEqual([
      { key: 'name', values: ['10:30'] },
      { key: 'name', values: [':x'] },
    ]);
  });
});

describe('searchMatches', () => {
  it('matches bare words and name: as case-insensitive substrings of the name', () => {
    expect(matches('WEB', vm)).toBe(true);
    expect(matches('web 1', vm)).toBe(true);
    expect(matches('web db', vm)).toBe(false);
    expect(matches('name:"b 1"', vm)).toBe(true);
    expect(matches('name:db name:eb', vm)).toBe(true);
  });

  it('compares remote, status, type, id and tenant whole, ignoring case', () => {
    expect(matches('remote:DC-EAST status:RUNNING type:vm', vm)).toBe(true);
    expect(matches('remote:dc', vm)).toBe(false);
    expect(matches('status:run', vm)).toBe(false);
    expect(matches(`id:${vm.id.toUpperCase()}`, vm)).toBe(true);
    expect(matches('tenant:blue', vm)).toBe(true);
    expect(matches('tenant:blu', vm)).toBe(false);
  });

  it('ORs the values of one key and ANDs different keys', () => {
    expect(matches('status:stopped status:running', vm)).toBe(true);
    expect(matches('status:stopped status:running remote:dc-west', vm)).toBe(false);
  });

  it('matches a VM by the id or the name of its node, and a node by its own id or name', () => {
    expect(matches('node:node-1', vm)).toBe(true);
    expect(matches('node:HV-A', vm)).toBe(true);
    expect(matches('node:hv-b', vm)).toBe(false);
    expect(matches('node:hv-a', node)).toBe(true);
    expect(matches('node:node-1 type:node', node)).toBe(true);
  });

  it('matches labels by key and value ignoring case, or by presence; nodes never match tenant: or label:', () => {
    expect(matches('label:env=prod', vm)).toBe(true);
    expect(matches('label:env=dev', vm)).toBe(false);
    expect(matches('label:env=dev label:role=web', vm)).toBe(true);
    expect(matches('label:role', vm)).toBe(true);
    expect(matches('label:team', vm)).toBe(false);
    expect(matches('label:env', node)).toBe(false);
    expect(matches('tenant:blue', node)).toBe(false);
    expect(matches('hv status:ok', node)).toBe(true);
  });
});

describe('searchScope', () => {
  it('narrows to the remotes named by every remote clause and to the kinds the search can match', () => {
    expect(searchScope(parseResourceSearch('web'))).toEqual({
      remotes: undefined,
      nodes: true,
      vms: true,
    });
    expect(searchScope(parseResourceSearch('remote:a remote:b type:node'))).toEqual({
      remotes: new Set(['a', 'b']),
      nodes: true,
      vms: false,
    });
    expect(searchScope(parseResourceSearch('label:env'))).toMatchObject({
      nodes: false,
      vms: true,
    });
    const twoClauses = {
      clauses: [
        ...parseResourceSearch('remote:a remote:b').clauses,
        { key: 'remote' as const, values: ['b'] },
      ],
    };
    expect(searchScope(twoClauses).remotes).toEqual(new Set(['b']));
  });
});
