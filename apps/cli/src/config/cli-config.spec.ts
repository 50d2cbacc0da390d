import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CliError } from '../cli-error';
import { EXIT } from '../exit-codes';
import { configPath, readConfigFile, resolveConnection, writeConfigFile } from './cli-config';

const dirs: string[] = [];
function configFile(text: string, mode = 0o600): string {
  const dir = mkdtempSync(join(tmpdir(), 'debvisor-cli-config-'));
  dirs.push(dir);
  const file = join(dir, 'config.yaml');
  writeFileSync(file, text, { mode });
  chmodSync(file, mode);
  return file;
}
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

const FP = 'AB:'.repeat(31) + 'AB';
const TWO = `current-context: prod
contexts:
  - name: prod
    server: https://prod.example.net:8443
    ca-fingerprint: "${FP}"
    token: dvdm_prod
  - name: lab
    server: https://127.0.0.1:8443/
    ca-file: /etc/lab-ca.crt
`;

function usageError(run: () => unknown): CliError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(CliError);
    expect((error as CliError).exitCode).toBe(EXIT.usage);
    return error as CliError;
  }
  throw new Error('expected a usage error');
}

describe('the config file', () => {
  it('is found through DEBVISOR_CONFIG, XDG_CONFIG_HOME or HOME', () => {
    expect(configPath({ DEBVISOR_CONFIG: '/x/c.yaml', HOME: '/home/a' })).toBe('/x/c.yaml');
    expect(configPath({ XDG_CONFIG_HOME: '/xdg', HOME: '/home/a' })).toBe(
      '/xdg/debvisor/config.yaml',
    );
    expect(configPath({ HOME: '/home/a' })).toBe('/home/a/.config/debvisor/config.yaml');
    expect(configPath({ HOME: '/home/a' }, '/given.yaml')).toBe('/given.yaml');
  });

  it('is refused when others may read it, naming the fix', () => {
    for (const mode of [0o644, 0o640, 0o604, 0o660]) {
      const file = configFile(TWO, mode);
      expect(usageError(() => readConfigFile(file)).message).toContain(`chmod 600 ${file}`);
    }
  });

  it('is refused with the setting named when it is not valid', () => {
    expect(
      usageError(() => readConfigFile(configFile('contexts: [{name: a, server: http://x}]')))
        .message,
    ).toMatch(/contexts\.0\.server: the manager URL must be https/);
    expect(
      usageError(() =>
        readConfigFile(configFile('contexts: [{name: a, server: https://x, colour: red}]')),
      ).message,
    ).toMatch(/contexts\.0/);
    expect(
      usageError(() =>
        readConfigFile(configFile('contexts: [{name: a, server: https://x, ca-fingerprint: AB}]')),
      ).message,
    ).toMatch(/ca-fingerprint: a SHA-256 fingerprint/);
    expect(usageError(() => readConfigFile(configFile('a: [b'))).message).toMatch(/is not YAML/);
    const twice = 'contexts: [{name: a, server: "https://x"}, {name: a, server: "https://y"}]';
    expect(usageError(() => readConfigFile(configFile(twice))).message).toMatch(/unique/);
  });

  it('is written 0600 and read back', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'debvisor-cli-config-')), 'sub', 'config.yaml');
    dirs.push(join(file, '..', '..'));
    writeConfigFile(file, {
      'current-context': 'a',
      contexts: [{ name: 'a', server: 'https://x:1', token: 't' }],
    });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(file, '..')).mode & 0o777).toBe(0o700);
    expect(readConfigFile(file).contexts[0]).toEqual({
      name: 'a',
      server: 'https://x:1',
      token: 't',
    });
  });
});

describe('the connection', () => {
  it('is the current context, or the one named by --context or DEBVISOR_CONTEXT', () => {
    const file = configFile(TWO);
    expect(resolveConnection({ DEBVISOR_CONFIG: file }, {})).toEqual({
      context: 'prod',
      server: 'https://prod.example.net:8443',
      token: 'dvdm_prod',
      caFile: undefined,
      caFingerprint: FP,
    });
    expect(resolveConnection({ DEBVISOR_CONFIG: file, DEBVISOR_CONTEXT: 'lab' }, {})).toMatchObject(
      {
        context: 'lab',
        server: 'https://127.0.0.1:8443',
        token: undefined,
        caFile: '/etc/lab-ca.crt',
      },
    );
    expect(
      resolveConnection({ DEBVISOR_CONFIG: file, DEBVISOR_CONTEXT: 'lab' }, { context: 'prod' })
        .context,
    ).toBe('prod');
    expect(
      usageError(() => resolveConnection({ DEBVISOR_CONFIG: file }, { context: 'gone' })).message,
    ).toContain('no context named "gone"');
  });

  it('takes the environment over the context', () => {
    const file = configFile(TWO);
    expect(
      resolveConnection(
        { DEBVISOR_CONFIG: file, DEBVISOR_TOKEN: 'dvdm_env', DEBVISOR_CA_FILE: '/env-ca.crt' },
        {},
      ),
    ).toMatchObject({ context: 'prod', token: 'dvdm_env', caFile: '/env-ca.crt' });
    // with DEBVISOR_SERVER and no config file at all
    expect(
      resolveConnection(
        { DEBVISOR_SERVER: 'https://m:1', DEBVISOR_TOKEN: 't', HOME: '/nonexistent' },
        {},
      ),
    ).toEqual({
      context: undefined,
      server: 'https://m:1',
      token: 't',
      caFile: undefined,
      caFingerprint: undefined,
    });
  });

  it('needs a manager, and an https one', () => {
    expect(usageError(() => resolveConnection({ HOME: '/nonexistent' }, {})).message).toMatch(
      /no manager to talk to/,
    );
    expect(
      usageError(() => resolveConnection({ DEBVISOR_SERVER: 'http://m:1' }, {})).message,
    ).toMatch(/https/);
    expect(
      usageError(() =>
        resolveConnection({ DEBVISOR_SERVER: 'https://m:1', DEBVISOR_CA_FINGERPRINT: 'zz' }, {}),
      ).message,
    ).toMatch(/DEBVISOR_CA_FINGERPRINT/);
  });
});
