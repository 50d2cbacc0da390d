import { createCa, issueCertificate } from '@debvisor/pki';
import { cleanupTempDirs, freePort, tempDir } from '@debvisor/testing';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runBackupCommand } from '../src/backup/backup.command';
import { RemotesRepository } from '../src/remotes/remotes.repository';
import { startTestManager, type TestManager } from './manager-harness';

/**
 * `npm run backup` / `npm run restore` (issue 14, weakness 18): the manager's state — every table of
 * its embedded PostgreSQL 17 and the state directory's key and PKI — survives a round trip into a
 * new state directory, without Debian's pg_dump (15, which refuses a server 17).
 */
const KEY = `dvk_0123456789abcdef_${'A'.repeat(20)}secretpartA${'a'.repeat(12)}`;
const started: TestManager[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((m) => m.stop()));
});
afterAll(() => cleanupTempDirs());

async function run(mode: 'backup' | 'restore', stateDir: string, file: string) {
  let out = '';
  let err = '';
  const code = await runBackupCommand(mode, [file], {
    env: { DEBVISOR_STATE_DIR: stateDir },
    out: (text) => (out += text),
    err: (text) => (err += text),
  });
  return { code, out, err };
}

describe('backup and restore of the manager state', () => {
  it('round-trips the embedded PostgreSQL and the sealed credentials into a new state directory', async () => {
    const ca = await createCa('backup test CA');
    // An uploaded HTTPS certificate (state directory https/) comes along too: one issued by the
    // manager's own HTTPS CA, which the test's requests trust (and the manager is told to).
    const trustOwnCa = (stateDir: string) => ({
      DEBVISOR_EXTRA_CA_FILE: join(stateDir, 'pki/server-ca.crt'),
    });
    const firstDir = tempDir('debvisor-manager-');
    const first = await startTestManager({ stateDir: firstDir, env: trustOwnCa(firstDir) });
    started.push(first);
    const ownCa = {
      certPem: readFileSync(join(firstDir, 'pki/server-ca.crt'), 'utf8'),
      keyPem: readFileSync(join(firstDir, 'pki/server-ca.key'), 'utf8'),
    };
    const https = await issueCertificate(ownCa, {
      commonName: 'localhost',
      dnsNames: ['localhost'],
      usage: 'server',
    });
    const uploaded = await first.api('PUT', '/api/v1/system/certificates/custom', {
      chainPem: https.certPem,
      keyPem: https.keyPem,
    });
    expect(uploaded.status, uploaded.text).toBe(200);
    const remote = await first.api('POST', '/api/v1/remotes', {
      id: 'dc-kept',
      description: 'kept across a restore',
      endpoints: [`127.0.0.1:${await freePort()}`],
      caCertPem: ca.certPem,
      credentials: [{ name: 'admin', key: KEY }],
      addAnyway: true,
    });
    expect(remote.status, remote.text).toBe(201);
    const created = await first.api('POST', '/api/v1/access/tokens', {
      ownerType: 'user',
      owner: 'admin@local',
      name: 'automation',
    });
    expect(created.status, created.text).toBe(201);
    const token = created.body.token as string;

    // Backed up while the manager runs: its embedded PostgreSQL is read where it listens.
    const file = join(tempDir('debvisor-backup-'), 'manager.backup');
    const backup = await run('backup', first.stateDir, file);
    expect(backup, backup.err).toMatchObject({ code: 0 });
    expect(backup.out).toMatch(/backed up \d+ tables/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // A backup never overwrites a file.
    expect((await run('backup', first.stateDir, file)).code).toBe(1);
    await first.stop();
    started.splice(0);

    const restoredDir = tempDir('debvisor-restored-');
    const restored = await run('restore', restoredDir, file);
    expect(restored, restored.err).toMatchObject({ code: 0 });
    expect(statSync(join(restoredDir, 'secret.key')).mode & 0o777).toBe(0o600);
    // Never over a state directory that holds a manager's state.
    const again = await run('restore', restoredDir, file);
    expect(again.code).toBe(1);
    expect(again.err).toContain('already holds');

    const second = await startTestManager({
      stateDir: restoredDir,
      token,
      env: trustOwnCa(restoredDir),
    });
    started.push(second);
    expect(second.operatorOutput()).toBe('');
    const kept = await second.api('GET', '/api/v1/remotes/dc-kept');
    expect(kept.status, kept.text).toBe(200);
    expect(kept.body).toMatchObject({ description: 'kept across a restore' });
    expect(kept.body.credentials).toEqual([
      { name: 'admin', keyId: '0123456789abcdef', createdAt: expect.any(String) },
    ]);
    // The restored secret key opens the restored sealed key.
    expect((await second.manager.app.get(RemotesRepository).credential('dc-kept', null))?.key).toBe(
      KEY,
    );
    const served = await second.api('GET', '/api/v1/system/certificates');
    expect(served.body.current).toMatchObject({
      source: 'custom',
      fingerprintSha256: uploaded.body.current.fingerprintSha256,
    });
    // The audit log came along.
    const audit = await second.api('GET', '/api/v1/audit?limit=1');
    expect(audit.status).toBe(200);
    expect(audit.body.items.length).toBe(1);
  });

  it('refuses a file that is no backup, naming it', async () => {
    const dir = tempDir('debvisor-restored-');
    const file = join(tempDir('debvisor-backup-'), 'not-a-backup');
    writeFileSync(file, 'hello');
    const answer = await run('restore', dir, file);
    expect(answer.code).toBe(1);
    expect(answer.err).toContain('restore:');
    expect((await run('restore', dir, '')).code).toBe(2);
  });
});
