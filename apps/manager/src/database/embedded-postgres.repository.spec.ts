import { cleanupTempDirs, startPostgres, tempDir, type PostgresInstance } from '@debvisor/testing';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopStaleServer } from './embedded-postgres.repository';

/**
 * The crash-only start's guard, against a real PostgreSQL that is not ours: whatever a
 * postmaster.pid in our data directory says, a foreign server is never signalled.
 */
describe('stopStaleServer', () => {
  let foreign: PostgresInstance;
  let foreignPid: number;
  let foreignDir: string;

  beforeAll(async () => {
    foreign = await startPostgres();
    const client = new Client({ connectionString: foreign.url });
    await client.connect();
    try {
      foreignDir = (await client.query<{ data_directory: string }>('SHOW data_directory')).rows[0]
        .data_directory;
    } finally {
      await client.end();
    }
    foreignPid = Number(readFileSync(join(foreignDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  }, 60_000);

  afterAll(async () => {
    await foreign?.stop();
    cleanupTempDirs();
  });

  const ourDir = () => tempDir('debvisor-stale-pg-');
  const foreignLives = () => {
    process.kill(foreignPid, 0);
    return true;
  };

  it('does nothing without a pid file, or when its process is gone', async () => {
    const notes: string[] = [];
    const dir = ourDir();
    await stopStaleServer(dir, (m) => notes.push(m));
    writeFileSync(join(dir, 'postmaster.pid'), `${2 ** 22 + 1}\n${dir}\n`);
    await stopStaleServer(dir, (m) => notes.push(m));
    expect(notes).toEqual([]);
    // PostgreSQL itself discards a pid file whose process is gone.
    expect(existsSync(join(dir, 'postmaster.pid'))).toBe(true);
  });

  it('removes a pid file naming a live postgres of another data directory (a reused pid), leaving that server alone', async () => {
    const notes: string[] = [];
    const dir = ourDir();
    writeFileSync(join(dir, 'postmaster.pid'), `${foreignPid}\n${dir}\n1700000000\n5432\n`);
    await stopStaleServer(dir, (m) => notes.push(m));
    expect(existsSync(join(dir, 'postmaster.pid'))).toBe(false);
    expect(notes).toEqual([
      expect.stringContaining(`names process ${foreignPid}, which is not a PostgreSQL of ${dir}`),
    ]);
    expect(foreignLives()).toBe(true);
  });

  it('removes a pid file naming a process that is not postgres at all', async () => {
    const dir = ourDir();
    writeFileSync(join(dir, 'postmaster.pid'), `${process.pid}\n${dir}\n`);
    await stopStaleServer(dir, () => undefined);
    expect(existsSync(join(dir, 'postmaster.pid'))).toBe(false);
  });

  it('refuses a pid file that names another data directory (copied state), and a server a live process still owns', async () => {
    const dir = ourDir();
    writeFileSync(join(dir, 'postmaster.pid'), `${foreignPid}\n${foreignDir}\n`);
    await expect(stopStaleServer(dir, () => undefined)).rejects.toThrow(
      `names the data directory ${foreignDir}, not ${dir}`,
    );
    // The test's server is ours by its data directory, but its parent (this test process, like a running manager) lives.
    await expect(stopStaleServer(foreignDir, () => undefined)).rejects.toThrow(
      /belongs to the running process \d+: another manager uses this state directory/,
    );
    expect(foreignLives()).toBe(true);
  });
});
