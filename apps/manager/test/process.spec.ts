import { cleanupTempDirs, freePort, spawnManaged, tempDir } from '@debvisor/testing';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/** The built manager as an operator runs it: `node apps/manager/dist/main.js` with environment settings. */
const MAIN = resolve(__dirname, '../dist/main.js');

function requireBuilt(): void {
  if (!existsSync(MAIN))
    throw new Error(
      `${MAIN} is missing: run \`npx tsc -b apps/manager\` before the manager's process tests`,
    );
}

function get(url: string, ca: string, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = request(
      url,
      {
        ca,
        servername: 'localhost',
        headers: token ? { authorization: `Bearer ${token}` } : {},
        timeout: 10_000,
      },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('the manager process', () => {
  afterAll(() => cleanupTempDirs());

  it('starts with its embedded PostgreSQL, announces itself, stops cleanly on SIGTERM and reuses its state', async () => {
    requireBuilt();
    const stateDir = join(tempDir('debvisor-manager-process-'), 'state');
    const port = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DEBVISOR_STATE_DIR: stateDir,
      DEBVISOR_LISTEN: `127.0.0.1:${port}`,
      DEBVISOR_WEB_DIR: join(stateDir, 'none'),
    };
    delete env.DATABASE_URL;

    const first = spawnManaged('manager', process.execPath, [MAIN], { env });
    await first.waitFor(/"msg":"manager listening"/, 120_000);
    const token = first.output().match(/bootstrap admin token: (dvdm_[A-Za-z0-9_-]+)/)?.[1];
    expect(token).toBeDefined();
    const listening = first
      .output()
      .split('\n')
      .find((line) => line.includes('"msg":"manager listening"'))!;
    expect(JSON.parse(listening)).toMatchObject({
      url: `https://127.0.0.1:${port}`,
      level: 'info',
    });
    // The token appears in the banner line only, never inside a JSON log line.
    for (const line of first
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{')))
      expect(line).not.toContain(token!.slice(22));

    const ca = readFileSync(join(stateDir, 'pki/server.crt'), 'utf8');
    expect((await get(`https://127.0.0.1:${port}/readyz`, ca)).status).toBe(200);
    expect((await get(`https://127.0.0.1:${port}/api/v1/remotes`, ca, token)).status).toBe(200);
    expect(existsSync(join(stateDir, 'postgres/PG_VERSION'))).toBe(true);
    expect(statSync(join(stateDir, 'postgres.password')).mode & 0o777).toBe(0o600);

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(first.output()).toContain('"msg":"manager stopped"');

    const second = spawnManaged('manager again', process.execPath, [MAIN], { env });
    try {
      await second.waitFor(/"msg":"manager listening"/, 120_000);
      expect(second.output()).not.toContain('bootstrap admin token');
      expect((await get(`https://127.0.0.1:${port}/api/v1/remotes`, ca, token)).status).toBe(200);
    } finally {
      second.child.kill('SIGINT');
      expect(await second.exited).toBe(0);
    }
  }, 240_000);

  it('refuses to start with a bad setting, naming it', async () => {
    requireBuilt();
    const bad = spawnManaged('manager', process.execPath, [MAIN], {
      env: {
        ...process.env,
        DEBVISOR_STATE_DIR: tempDir(),
        DEBVISOR_LISTEN: 'everywhere',
        DEBVISOR_POLL_INTERVAL_SECONDS: '0',
      },
    });
    expect(await bad.exited).toBe(1);
    expect(bad.output()).toMatch(
      /cannot start: invalid configuration: .*DEBVISOR_LISTEN: .*DEBVISOR_POLL_INTERVAL_SECONDS: must be at least 1/,
    );
  });
});
