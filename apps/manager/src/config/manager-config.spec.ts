import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './manager-config';

describe('loadConfig', () => {
  it('applies the documented defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      stateDir: '/var/lib/debvisor-manager',
      listen: { host: '0.0.0.0', port: 8443 },
      databaseUrl: undefined,
      pollIntervalSeconds: 60,
      remoteTimeoutMs: 5000,
      logLevel: 'info',
      publicUrl: undefined,
    });
    expect(config.webDir).toMatch(/apps\/web\/dist$/);
  });

  it('reads every setting and returns a frozen object', () => {
    const config = loadConfig({
      DEBVISOR_STATE_DIR: '/srv/dvm',
      DEBVISOR_LISTEN: '[::1]:9000',
      DATABASE_URL: 'postgres://u:p@db:5432/dvm',
      DATABASE_ADMIN_URL: 'postgres://owner:p@db:5432/dvm',
      DEBVISOR_AUDIT_FILE: '/var/log/debvisor/manager-audit.log',
      DEBVISOR_POLL_INTERVAL_SECONDS: '15',
      DEBVISOR_REMOTE_TIMEOUT_MS: '2500',
      DEBVISOR_WEB_DIR: '/srv/web',
      DEBVISOR_LOG_LEVEL: 'debug',
      DEBVISOR_PUBLIC_URL: 'https://dvm.example.com/',
    });
    expect(config).toEqual({
      stateDir: '/srv/dvm',
      listen: { host: '::1', port: 9000 },
      databaseUrl: 'postgres://u:p@db:5432/dvm',
      databaseAdminUrl: 'postgres://owner:p@db:5432/dvm',
      auditFile: '/var/log/debvisor/manager-audit.log',
      pollIntervalSeconds: 15,
      remoteTimeoutMs: 2500,
      webDir: '/srv/web',
      logLevel: 'debug',
      publicUrl: 'https://dvm.example.com',
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.listen)).toBe(true);
  });

  it('refuses DATABASE_ADMIN_URL without DATABASE_URL', () => {
    expect(() => loadConfig({ DATABASE_ADMIN_URL: 'postgres://owner:p@db:5432/dvm' })).toThrow(/DATABASE_ADMIN_URL: set only together with DATABASE_URL/);
  });

  it('treats empty values as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', DEBVISOR_LISTEN: '  ' }).listen.port).toBe(8443);
  });

  it.each([
    ['DEBVISOR_LISTEN', '8443'],
    ['DEBVISOR_LISTEN', 'host:70000'],
    ['DEBVISOR_POLL_INTERVAL_SECONDS', '0'],
    ['DEBVISOR_POLL_INTERVAL_SECONDS', 'often'],
    ['DEBVISOR_REMOTE_TIMEOUT_MS', '1.5'],
    ['DATABASE_URL', 'mysql://db/dvm'],
    ['DATABASE_ADMIN_URL', 'http://db/dvm'],
    ['DEBVISOR_LOG_LEVEL', 'loud'],
    ['DEBVISOR_PUBLIC_URL', 'ftp://x'],
  ])('stops with an error naming %s when it is %s', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`${name}: `));
  });

  it('names every bad setting at once', () => {
    expect(() => loadConfig({ DEBVISOR_LISTEN: 'x', DEBVISOR_LOG_LEVEL: 'y' })).toThrow(/DEBVISOR_LISTEN: .*DEBVISOR_LOG_LEVEL: /);
  });
});
