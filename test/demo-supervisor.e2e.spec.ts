import { cleanupTempDirs, spawnManaged, tempDir, type ManagedProcess } from '@debvisor/testing';
import { existsSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module of the scripts, without types
import { Supervised } from '../scripts/lib/supervisor.mjs';

/**
 * The demo's supervisor (scripts/lib/supervisor.mjs) with real child processes: a child that dies
 * is reported and started again with a growing back-off, a held one stays stopped until released,
 * and Ctrl-C (stop) ends it for good.
 */
interface SupervisedLike {
  current: ManagedProcess | undefined;
  restarts: number;
  start(): Promise<ManagedProcess>;
  stop(graceMs?: number): Promise<void>;
}

const BACKOFF = { initialMs: 100, maxMs: 400, stableMs: 60_000 };
const running: SupervisedLike[] = [];

afterEach(async () => {
  for (const s of running.splice(0)) await s.stop(1000);
});
afterAll(() => cleanupTempDirs());

async function until<T>(check: () => T | undefined, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function setup(script: string, shuttingDown = () => false) {
  const dir = tempDir('debvisor-supervisor-');
  const said: string[] = [];
  let starts = 0;
  const supervised: SupervisedLike = new Supervised({
    id: 'agent-x',
    start: async () => {
      starts += 1;
      const child = spawnManaged(`agent x#${starts}`, process.execPath, ['-e', script]);
      await child.waitFor(/up/, 5000);
      return child;
    },
    say: (message: string) => said.push(message),
    holdDir: join(dir, 'hold'),
    pidDir: join(dir, 'pids'),
    backoff: BACKOFF,
    pollMs: 50,
    shuttingDown,
  });
  running.push(supervised);
  return { supervised, said, dir, starts: () => starts };
}

const LIVES = "console.log('up'); setInterval(() => {}, 1000);";

describe('the demo supervisor', () => {
  it('reports a child that died and starts it again, waiting longer each time, and writes its pid', async () => {
    const s = setup("console.log('up'); setTimeout(() => process.exit(3), 50);");
    const first = await s.supervised.start();
    expect(readFileSync(join(s.dir, 'pids/agent-x.pid'), 'utf8').trim()).toBe(
      String(first.child.pid),
    );
    await until(() => (s.starts() >= 4 ? true : undefined), 'three restarts');
    expect(s.said.filter((m) => m.includes('exited')).slice(0, 3)).toEqual([
      'agent x#1 exited with code 3; starting it again in 0.1 s (restart 1)',
      'agent x#2 exited with code 3; starting it again in 0.2 s (restart 2)',
      'agent x#3 exited with code 3; starting it again in 0.4 s (restart 3)',
    ]);
  });

  it('starts a crashed (SIGKILL) child again; a held one stays stopped until released; stop ends it for good', async () => {
    const s = setup(LIVES);
    const first = await s.supervised.start();
    await first.kill();
    const second = await until(
      () =>
        s.supervised.current !== first && s.supervised.current ? s.supervised.current : undefined,
      'a restart',
    );
    expect(s.said[0]).toBe(
      'agent x#1 exited by signal SIGKILL; starting it again in 0.1 s (restart 1)',
    );

    mkdirSync(join(s.dir, 'hold'), { recursive: true });
    writeFileSync(join(s.dir, 'hold/agent-x'), '');
    await second.exited;
    await new Promise((r) => setTimeout(r, 300)); // several hold checks and back-offs: it stays stopped
    expect(s.supervised.current).toBe(second);
    expect(existsSync(join(s.dir, 'pids/agent-x.pid'))).toBe(false);
    rmSync(join(s.dir, 'hold/agent-x'));
    const third = await until(
      () => (s.supervised.current !== second ? s.supervised.current : undefined),
      'the release',
    );
    expect(third!.child.exitCode).toBeNull();
    expect(s.said).toContain('agent-x released: starting it');

    await s.supervised.stop(1000);
    expect(third!.child.exitCode !== null || third!.child.signalCode !== null).toBe(true);
    const starts = s.starts();
    await new Promise((r) => setTimeout(r, 300));
    expect(s.starts()).toBe(starts);
  });

  it('restarts nothing while the whole demo shuts down (Ctrl-C reaches every child at once)', async () => {
    let down = false;
    const s = setup(LIVES, () => down);
    const first = await s.supervised.start();
    down = true;
    first.child.kill('SIGINT');
    await first.exited;
    await new Promise((r) => setTimeout(r, 300)); // three back-offs' time: nothing starts
    expect(s.starts()).toBe(1);
    expect(s.said).toEqual([]);
  });
});
