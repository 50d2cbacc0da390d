// What `npm start` must build: only the parts whose sources changed since their last build. Each
// part's last successful build is a stamp file (node_modules/.cache/debvisor-build/<part>.stamp);
// a part is stale when a stamp or an output is missing, or a source file is newer than its stamp.
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';

const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.git']);

/** The newest file under `paths` (files or directories; missing ones are skipped) that `wanted` accepts. */
export function newestFile(paths, wanted = () => true) {
  let newest = { path: undefined, mtimeMs: 0 };
  const visit = (path) => {
    let stat;
    try {
      stat = statSync(path);
    } catch {
      return;
    }
    if (stat.isDirectory()) {
      for (const entry of readdirSync(path)) if (!SKIPPED_DIRS.has(entry)) visit(join(path, entry));
    } else if (wanted(path) && stat.mtimeMs > newest.mtimeMs) {
      newest = { path, mtimeMs: stat.mtimeMs };
    }
  };
  for (const path of paths) visit(path);
  return newest;
}

const notTest = (path) => !/\.(spec|test)\.tsx?$/.test(path) && !path.endsWith('.e2e.spec.ts');

/** The TypeScript projects tsc -b builds (tsconfig.build.json's references). */
function tsProjects(root) {
  const config = JSON.parse(readFileSync(join(root, 'tsconfig.build.json'), 'utf8'));
  return config.references.map((ref) => ref.path);
}

/** The parts, in build order: what they are built from, what they produce, how to build them. */
export function buildParts(root) {
  const projects = tsProjects(root);
  const libSources = projects.filter((p) => p.startsWith('libs/')).map((p) => join(root, p, 'src'));
  return [
    {
      name: 'proto',
      sources: [join(root, 'proto'), join(root, 'scripts/gen-proto.mjs')],
      outputs: [join(root, 'libs/proto/src/generated')],
      command: ['npm', 'run', 'gen:proto', '--silent'],
    },
    {
      name: 'typescript',
      sources: [
        join(root, 'tsconfig.base.json'),
        join(root, 'tsconfig.build.json'),
        ...projects.flatMap((p) => [
          join(root, p, 'src'),
          join(root, p, 'tsconfig.json'),
          join(root, p, 'package.json'),
        ]),
      ],
      outputs: projects.map((p) => join(root, p, 'dist')),
      command: [
        process.execPath,
        join(root, 'node_modules/typescript/bin/tsc'),
        '-b',
        'tsconfig.build.json',
      ],
      filter: notTest,
      // libs/proto compiles the generated code.
      after: 'proto',
    },
    {
      name: 'web',
      sources: [
        join(root, 'apps/web/src'),
        join(root, 'apps/web/index.html'),
        join(root, 'apps/web/vite.config.ts'),
        join(root, 'apps/web/tsconfig.json'),
        join(root, 'apps/web/package.json'),
        ...libSources,
      ],
      outputs: [join(root, 'apps/web/dist/index.html')],
      command: ['npm', 'run', 'build', '-w', '@debvisor/web', '--silent'],
      filter: notTest,
    },
  ];
}

function stampOf(root, part) {
  return join(root, 'node_modules/.cache/debvisor-build', `${part.name}.stamp`);
}

/**
 * The parts to build now, each with why (for the operator); empty when everything is up to date.
 * A part built from another's outputs (`after`) is rebuilt when that one is.
 */
export function buildPlan(root) {
  const plan = [];
  for (const part of buildParts(root)) {
    const stamp = stampOf(root, part);
    let reason;
    if (part.after && plan.some((p) => p.name === part.after)) reason = `after ${part.after}`;
    else if (!existsSync(stamp)) reason = 'no earlier build recorded';
    else if (part.outputs.some((output) => !existsSync(output)))
      reason = `${relative(
        root,
        part.outputs.find((o) => !existsSync(o)),
      )} is missing`;
    else {
      const newest = newestFile(part.sources, part.filter);
      if (newest.mtimeMs > statSync(stamp).mtimeMs)
        reason = `${relative(root, newest.path)} changed`;
    }
    if (reason) plan.push({ ...part, reason });
  }
  return plan;
}

/** Records that `part` was built from the sources as they are now. */
export function markBuilt(root, part, startedAtMs) {
  const stamp = stampOf(root, part);
  mkdirSync(join(stamp, '..'), { recursive: true });
  writeFileSync(stamp, `${new Date(startedAtMs).toISOString()}\n`);
  // The stamp is as old as the build's start: a source saved during the build is newer, and builds next time.
  utimesSync(stamp, startedAtMs / 1000, startedAtMs / 1000);
}
