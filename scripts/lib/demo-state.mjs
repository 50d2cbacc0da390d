// The demo's state directory, kept private (issue 14): logs hold the first start's admin password
// and bootstrap token banner. Used by scripts/demo.mjs; tested by test/demo-state.e2e.spec.ts.
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Creates (or closes) the demo's state directory: the directory itself 0711 (the embedded
 * PostgreSQL, run as its own user when root starts the demo, must traverse it; nobody may list it),
 * `logs/` 0700, the manager's state 0711 (the manager keeps its secrets 0600 inside), and every
 * file directly in the state directory or in `logs/` 0600 — also those an older demo left readable.
 * Answers the paths of `logs/` and `manager/`.
 */
export function prepareDemoState(stateDir) {
  const logs = join(stateDir, 'logs');
  const manager = join(stateDir, 'manager');
  for (const [dir, mode] of [
    [stateDir, 0o711],
    [logs, 0o700],
    [manager, 0o711],
  ]) {
    mkdirSync(dir, { recursive: true, mode });
    chmodSync(dir, mode);
  }
  for (const dir of [stateDir, logs]) {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (existsSync(path) && statSync(path).isFile()) chmodSync(path, 0o600);
    }
  }
  return { logs, manager };
}
