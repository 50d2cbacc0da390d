import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { folderCycles, folderImports, type FolderImport } from './folder-imports';

const SRC = join(__dirname, '..', 'src');

/**
 * Loops that are known and being taken apart (issue 14). None is left: a new loop fails the test.
 * Should one ever have to be listed while it is taken apart, a listed loop that is gone fails too.
 */
const KNOWN_LOOPS: readonly { folders: string[]; because: string }[] = [];

describe('the folders of apps/manager/src', () => {
  it('form a hierarchy: no folder imports a folder that imports it back, directly or round a loop', () => {
    const imports = folderImports(SRC);
    expect(imports.length).toBeGreaterThan(100);
    expect(folderCycles(imports).map((loop) => loop.folders)).toEqual(
      KNOWN_LOOPS.map((loop) => loop.folders),
    );
  });

  it('keep the identity and access folders out of every loop', () => {
    const access = ['authz', 'authn', 'acl', 'groups', 'tokens', 'sessions', 'remote-groups'];
    const loops = folderCycles(folderImports(SRC));
    expect(loops.filter((loop) => loop.folders.some((f) => access.includes(f)))).toEqual([]);
  });
});

describe('folderCycles', () => {
  const edge = (from: string, to: string): FolderImport => ({
    from,
    to,
    via: `${from}/a.ts -> ${to}/b`,
  });

  it('finds a loop of three folders and names the imports that close it', () => {
    expect(folderCycles([edge('a', 'b'), edge('b', 'c'), edge('c', 'a'), edge('c', 'd')])).toEqual([
      {
        folders: ['a', 'b', 'c'],
        imports: ['a/a.ts -> b/b', 'b/a.ts -> c/b', 'c/a.ts -> a/b'],
      },
    ]);
  });

  it('finds two folders that import each other, and nothing in a hierarchy', () => {
    expect(folderCycles([edge('x', 'y'), edge('y', 'x')]).map((c) => c.folders)).toEqual([
      ['x', 'y'],
    ]);
    expect(folderCycles([edge('a', 'b'), edge('b', 'c'), edge('a', 'c')])).toEqual([]);
  });
});

describe('folderImports', () => {
  it('reads type-only imports and re-exports as imports of the other folder', () => {
    const imports = folderImports(SRC);
    expect(imports).toContainEqual(expect.objectContaining({ from: 'sessions', to: 'users' }));
  });
});
