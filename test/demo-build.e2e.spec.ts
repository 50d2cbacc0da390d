import { cleanupTempDirs, tempDir } from '@debvisor/testing';
import { mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module of the scripts, without types
import { buildPlan, markBuilt } from '../scripts/lib/build-plan.mjs';

/** `npm start` builds only what changed (scripts/lib/build-plan.mjs), on a small copy of the repository's layout. */
interface Planned {
  name: string;
  reason: string;
}

const FILES = [
  'tsconfig.build.json',
  'tsconfig.base.json',
  'proto/debvisor.proto',
  'scripts/gen-proto.mjs',
  'libs/common/src/index.ts',
  'libs/common/src/index.spec.ts',
  'libs/common/tsconfig.json',
  'libs/proto/src/generated/debvisor.ts',
  'apps/manager/src/main.ts',
  'apps/manager/tsconfig.json',
  'apps/web/src/App.tsx',
  'apps/web/index.html',
  'apps/web/dist/index.html',
  'libs/common/dist/index.js',
  'apps/manager/dist/main.js',
];

function tree(): string {
  const root = tempDir('debvisor-build-plan-');
  for (const file of FILES) {
    mkdirSync(dirname(join(root, file)), { recursive: true });
    writeFileSync(join(root, file), '// x\n');
  }
  writeFileSync(
    join(root, 'tsconfig.build.json'),
    JSON.stringify({ files: [], references: [{ path: 'libs/common' }, { path: 'apps/manager' }] }),
  );
  return root;
}

/** Sets a file's time `secondsAgo` in the past (sources older than stamps, or newer). */
function age(root: string, file: string, secondsAgo: number) {
  const at = Date.now() / 1000 - secondsAgo;
  utimesSync(join(root, file), at, at);
}

const planOf = (root: string) =>
  (buildPlan(root) as Planned[]).map((p) => `${p.name}: ${p.reason}`);

afterAll(() => cleanupTempDirs());

describe('the demo build plan', () => {
  it('builds everything the first time, nothing once built, and only the part whose source changed after that', () => {
    const root = tree();
    expect(planOf(root)).toEqual([
      'proto: no earlier build recorded',
      'typescript: after proto',
      'web: no earlier build recorded',
    ]);
    for (const file of FILES) age(root, file, 60);
    for (const part of buildPlan(root)) markBuilt(root, part, Date.now() - 30_000);
    expect(planOf(root)).toEqual([]);

    // A test file changes nothing that is built.
    age(root, 'libs/common/src/index.spec.ts', 0);
    expect(planOf(root)).toEqual([]);
    age(root, 'apps/manager/src/main.ts', 0);
    expect(planOf(root)).toEqual(['typescript: apps/manager/src/main.ts changed']);
    // A library the web UI also uses.
    age(root, 'libs/common/src/index.ts', 0);
    expect(planOf(root)).toEqual([
      'typescript: libs/common/src/index.ts changed',
      'web: libs/common/src/index.ts changed',
    ]);
  });

  it('regenerates the proto code and then compiles, and builds again an output that is gone', () => {
    const root = tree();
    for (const file of FILES) age(root, file, 60);
    for (const part of buildPlan(root)) markBuilt(root, part, Date.now() - 30_000);
    age(root, 'proto/debvisor.proto', 0);
    expect(planOf(root)).toEqual([
      'proto: proto/debvisor.proto changed',
      'typescript: after proto',
    ]);
    age(root, 'proto/debvisor.proto', 60);
    expect(planOf(root)).toEqual([]);
    writeFileSync(join(root, 'apps/web/dist/index.html'), '');
    utimesSync(join(root, 'apps/web/dist/index.html'), 0, 0);
    expect(planOf(root)).toEqual([]);
    // rm -rf apps/web/dist
    rmSync(join(root, 'apps/web/dist'), { recursive: true });
    expect(planOf(root)).toEqual(['web: apps/web/dist/index.html is missing']);
  });
});
