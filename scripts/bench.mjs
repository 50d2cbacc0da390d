// `npm run bench -- <name>`: runs bench/<name>.bench.mjs after a build. Benchmarks print their
// figures as JSON on stdout, each with a baseline measured in the same run.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDebianPackages } from './lib/deps.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const available = readdirSync(join(root, 'bench'))
  .filter((f) => f.endsWith('.bench.mjs'))
  .map((f) => f.replace(/\.bench\.mjs$/, ''));
const name = process.argv[2];
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <name>   (one of: ${available.join(', ')})`);
  process.exit(2);
}
try {
  ensureDebianPackages(undefined, (m) => console.error(m));
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
// The built manager and the built web UI (the ui benchmark serves it); BENCH_BUILD=0 uses them as they are.
const built =
  existsSync(join(root, 'apps/manager/dist/main.js')) &&
  existsSync(join(root, 'apps/web/dist/index.html'));
if (!built || process.env.BENCH_BUILD !== '0') {
  const build = spawnSync('npm', ['run', 'build', '--silent'], {
    cwd: root,
    stdio: ['ignore', 2, 2],
  }); // keep stdout for the JSON
  if (build.status !== 0) process.exit(build.status ?? 1);
}
const run = spawnSync(
  process.execPath,
  [join(root, 'bench', `${name}.bench.mjs`), ...process.argv.slice(3)],
  {
    cwd: root,
    stdio: 'inherit',
  },
);
process.exit(run.status ?? 1);
