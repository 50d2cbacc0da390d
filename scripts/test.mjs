// The README's test command: installs what the tests need, builds, runs every project's tests.
// Extra arguments go to vitest (e.g. `npm test -- --project agent`).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDebianPackages, ensureNodeModules } from './lib/deps.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
try {
  ensureDebianPackages();
  ensureNodeModules(root);
} catch (error) {
  console.error(`Cannot run the tests: ${error.message}`);
  process.exit(1);
}

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', timeout: 4_800_000 });
  if (result.error) throw result.error;
  if (result.status !== 0) process.exit(result.status ?? 1);
}

run('npm', ['run', 'build']);
run('npm', ['run', 'typecheck']); // the tests' own types, which the build leaves out
run('npm', ['run', 'lint']);
run(process.execPath, [
  join(root, 'node_modules/vitest/vitest.mjs'),
  'run',
  '--reporter=default',
  `--reporter=${join(root, 'scripts/lib/summary-reporter.mjs')}`,
  ...process.argv.slice(2),
]);
