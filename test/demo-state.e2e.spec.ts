import { cleanupTempDirs, spawnManaged, tempDir } from '@debvisor/testing';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module of the scripts, without types
import { prepareDemoState } from '../scripts/lib/demo-state.mjs';

/**
 * The demo's state directory is private (issue 14, weakness 15): the manager's log holds the
 * first-start admin password and bootstrap token banner, so logs are 0600 in a 0700 directory, and
 * an older demo's world-readable files are closed at the next start. The state directory itself
 * stays traversable (0711) for the embedded PostgreSQL, which runs as its own user when root starts
 * the demo, but not listable.
 */
afterAll(() => cleanupTempDirs());

const mode = (path: string) => statSync(path).mode & 0o777;

describe('the demo state directory', () => {
  it('keeps logs and state private, also those an older demo left readable', async () => {
    const stateDir = join(tempDir('debvisor-demo-'), 'state');
    // As an older demo left it: 0755 directories, a 0644 log with the banner in it.
    mkdirSync(join(stateDir, 'logs'), { recursive: true, mode: 0o755 });
    mkdirSync(join(stateDir, 'manager'), { recursive: true, mode: 0o755 });
    chmodSync(stateDir, 0o755);
    chmodSync(join(stateDir, 'logs'), 0o755);
    writeFileSync(join(stateDir, 'logs/manager.log'), 'bootstrap admin token: dvdm_…\n', {
      mode: 0o644,
    });
    writeFileSync(join(stateDir, 'ports.json'), '{}', { mode: 0o644 });

    const dirs = prepareDemoState(stateDir) as { logs: string; manager: string };
    expect(mode(stateDir)).toBe(0o711);
    expect(mode(dirs.logs)).toBe(0o700);
    expect(mode(dirs.manager)).toBe(0o711);
    expect(mode(join(stateDir, 'logs/manager.log'))).toBe(0o600);
    expect(mode(join(stateDir, 'ports.json'))).toBe(0o600);

    // A log a child process starts is created private.
    const child = spawnManaged('echo', process.execPath, ['-e', "console.log('secret banner')"], {
      logFile: join(dirs.logs, 'agent-x.log'),
    });
    await child.waitFor(/secret banner/, 10_000);
    await child.stop();
    expect(mode(join(dirs.logs, 'agent-x.log'))).toBe(0o600);
  });
});
