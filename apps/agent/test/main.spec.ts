import { AGENT_MAIN, createClusterPki, tempDir, writeTlsFiles } from '@debvisor/testing';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

function runAgent(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [AGENT_MAIN, ...args],
      { timeout: 30_000 },
      (error, stdout, stderr) =>
        resolve({
          code: error ? (typeof error.code === 'number' ? error.code : null) : 0,
          stdout,
          stderr,
        }),
    );
  });
}

describe('debvisor-rpcd start-up', () => {
  const dir = tempDir('agent-main-');
  const config = (values: Record<string, unknown>) => {
    const file = join(dir, `config-${Math.random().toString(16).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(values));
    return file;
  };
  const base = {
    clusterId: 'c1',
    nodeId: 'node-1',
    advertise: '127.0.0.1:9443',
    etcd: { endpoints: ['http://127.0.0.1:1'] },
    tls: { cert: 'node-1.crt', key: 'node-1.key', ca: 'ca.crt' },
    stateDir: 'state',
    hypervisor: { driver: 'sim' },
    storage: { driver: 'sim' },
  };

  it('stops with exit code 2 and a usage line without --config', async () => {
    const result = await runAgent([]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /--config is required\nusage: debvisor-rpcd --config <file.json>/,
    );
  });

  it('stops with exit code 2 naming the setting when the configuration is invalid', async () => {
    const result = await runAgent([
      '--config',
      config({ ...base, leaseTtlSeconds: 'long', logLevel: 'loud' }),
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /invalid configuration in .*\n {2}- leaseTtlSeconds: .*\n {2}- logLevel: /,
    );
  });

  it('stops with exit code 2 naming the setting when a certificate does not fit', async () => {
    const pki = await createClusterPki('c1');
    writeTlsFiles(dir, 'node-1', await pki.agent('node-2'), pki.ca.certPem);
    const result = await runAgent(['--config', config(base)]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /tls\.cert: the subject must be CN=agent:node-1, OU=debvisor-agent \(found CN=agent:node-2/,
    );
  });
});
