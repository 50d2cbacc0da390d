import {
  cleanupTempDirs,
  freePort,
  spawnManaged,
  tempDir,
  type ManagedProcess,
} from '@debvisor/testing';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually } from './manager-harness';

/** The built manager as an operator runs it, killed with SIGKILL and started again with no hand step. */
const MAIN = resolve(__dirname, '../dist/main.js');

function get(url: string, ca: string, token: string): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const req = request(
      url,
      {
        ca,
        servername: 'localhost',
        headers: { authorization: `Bearer ${token}` },
        timeout: 10_000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolvePromise(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function lives(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const started: ManagedProcess[] = [];
afterAll(async () => {
  for (const child of started) {
    if (child.child.exitCode === null && child.child.signalCode === null) {
      child.child.kill('SIGTERM');
      await child.exited;
    }
  }
  cleanupTempDirs();
});

describe('a manager killed with SIGKILL', () => {
  it('starts again by itself: the embedded PostgreSQL it left running is stopped and started anew', async () => {
    if (!existsSync(MAIN))
      throw new Error(
        `${MAIN} is missing: run \`npm run build\` before the manager's process tests`,
      );
    const stateDir = join(tempDir('debvisor-manager-crash-'), 'state');
    const port = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DEBVISOR_STATE_DIR: stateDir,
      DEBVISOR_LISTEN: `127.0.0.1:${port}`,
      DEBVISOR_WEB_DIR: join(stateDir, 'none'),
    };
    delete env.DATABASE_URL;
    const url = `https://127.0.0.1:${port}/api/v1/remotes`;

    const first = spawnManaged('manager', process.execPath, [MAIN], { env });
    started.push(first);
    await first.waitFor(/"msg":"manager listening"/, 120_000);
    const token = first.output().match(/bootstrap admin token: (dvdm_[A-Za-z0-9_-]+)/)![1];
    const ca = readFileSync(join(stateDir, 'pki/server.crt'), 'utf8');
    expect(await get(url, ca, token)).toBe(200);
    const pidFile = join(stateDir, 'postgres/postmaster.pid');
    const postgresPid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);

    first.child.kill('SIGKILL');
    await first.exited;
    // What made the next start fail before: the manager's PostgreSQL outlives it.
    expect(lives(postgresPid)).toBe(true);

    const second = spawnManaged('manager after the crash', process.execPath, [MAIN], { env });
    started.push(second);
    await second.waitFor(/"msg":"manager listening"/, 120_000);
    expect(second.output()).toContain(`outlived the manager that started it: stopping it`);
    expect(await get(url, ca, token)).toBe(200);
    await eventually(
      async () => (lives(postgresPid) ? undefined : true),
      10_000,
      'the stale PostgreSQL gone',
    );
    expect(Number(readFileSync(pidFile, 'utf8').split('\n')[0])).not.toBe(postgresPid);

    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 300_000);
});
