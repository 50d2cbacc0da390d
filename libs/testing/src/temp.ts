import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const created: string[] = [];

/**
 * A fresh directory under the system temp dir, removed by cleanupTempDirs().
 * Mode 0755 so that services dropping root (PostgreSQL) can traverse it.
 */
export function tempDir(prefix = 'debvisor-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  created.push(dir);
  return dir;
}

/** Removes one directory tempDir() made, now (unless DEBVISOR_KEEP_TEMP=1, as cleanupTempDirs). */
export function removeTempDir(dir: string): void {
  if (process.env.DEBVISOR_KEEP_TEMP === '1') return;
  const index = created.indexOf(dir);
  if (index >= 0) created.splice(index, 1);
  rmSync(dir, { recursive: true, force: true });
}

/** Removes the directories tempDir() made; with DEBVISOR_KEEP_TEMP=1 they stay (their logs, for a post-mortem). */
export function cleanupTempDirs(): void {
  const dirs = created.splice(0);
  if (process.env.DEBVISOR_KEEP_TEMP === '1') {
    for (const dir of dirs) process.stderr.write(`kept ${dir} (DEBVISOR_KEEP_TEMP=1)\n`);
    return;
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}
