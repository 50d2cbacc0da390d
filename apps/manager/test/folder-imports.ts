import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

/** One import of a production file of another top-level folder: `from` imports `to`. */
export interface FolderImport {
  readonly from: string;
  readonly to: string;
  /** `sessions/login.service.ts -> users/users.service.ts` */
  readonly via: string;
}

/**
 * Every import (type-only ones too: they couple folders as much) between the top-level folders of
 * a source tree, read with the TypeScript parser. Specs, `*.test.ts` fixtures and the files at the
 * root (the composition root: app.module.ts, main.ts, manager-app.ts) are left out.
 */
export function folderImports(srcDir: string): FolderImport[] {
  const root = resolve(srcDir);
  const imports: FolderImport[] = [];
  for (const file of sourceFiles(root)) {
    const from = folderOf(root, file);
    if (from === undefined) continue;
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
    for (const specifier of moduleSpecifiers(source)) {
      if (!specifier.startsWith('.')) continue;
      const target = resolve(dirname(file), specifier);
      const to = folderOf(root, `${target}.ts`) ?? folderOf(root, join(target, 'index.ts'));
      if (to === undefined || to === from) continue;
      imports.push({ from, to, via: `${rel(root, file)} -> ${rel(root, target)}` });
    }
  }
  return imports;
}

/**
 * The groups of folders that import each other, directly or round a longer loop (the strongly
 * connected components of more than one folder, by Tarjan's algorithm), each sorted, with the
 * imports that close the loop. Empty when the folders form a hierarchy.
 */
export function folderCycles(
  imports: readonly FolderImport[],
): { folders: string[]; imports: string[] }[] {
  const edges = new Map<string, Set<string>>();
  for (const i of imports) {
    if (!edges.has(i.from)) edges.set(i.from, new Set());
    if (!edges.has(i.to)) edges.set(i.to, new Set());
    edges.get(i.from)!.add(i.to);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const v of [...edges.keys()].sort()) if (!index.has(v)) visit(v);
  return components
    .map((folders) => ({
      folders,
      imports: imports
        .filter((i) => folders.includes(i.from) && folders.includes(i.to))
        .map((i) => i.via)
        .sort(),
    }))
    .sort((a, b) => a.folders.join().localeCompare(b.folders.join()));
}

function* sourceFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(path);
    else if (/\.ts$/.test(entry.name) && !/\.(spec|test)\.ts$/.test(entry.name)) yield path;
  }
}

/** The top-level folder a file of the tree is in; undefined for root files and files outside it. */
function folderOf(root: string, file: string): string | undefined {
  const parts = relative(root, file).split(sep);
  if (parts.length < 2 || parts[0] === '..') return undefined;
  try {
    readFileSync(file);
  } catch {
    return undefined;
  }
  return parts[0];
}

function moduleSpecifiers(source: ts.SourceFile): string[] {
  const specifiers: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    )
      specifiers.push(node.moduleSpecifier.text);
    else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments.length === 1 &&
      ts.isStringLiteral(node.arguments[0])
    )
      specifiers.push(node.arguments[0].text);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return specifiers;
}

function rel(root: string, path: string): string {
  return relative(root, path).split(sep).join('/');
}
