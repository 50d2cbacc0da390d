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
      haPollIntervalSeconds: 10,
      remoteTimeoutMs: 5000,
      logLevel: 'info',
      publicUrl: undefined,
      snapshots: { quotaPerVm: 100, scheduleTickSeconds: 60 },
      console: { allowApiTokens: false },
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
      DEBVISOR_SESSION_IDLE_MINUTES: '10',
      DEBVISOR_SESSION_MAX_HOURS: '8',
      DEBVISOR_ADMIN_PASSWORD: 'correct horse battery staple',
      DEBVISOR_BOOTSTRAP_TOKEN_HOURS: '48',
      DEBVISOR_METRICS_LISTEN: '127.0.0.1:9100',
      DEBVISOR_PASSWORD_MIN_LENGTH: '14',
      DEBVISOR_LOGIN_ATTEMPTS_PER_MINUTE: '10',
      DEBVISOR_LOGIN_FAILURES_BEFORE_LOCK: '3',
      DEBVISOR_LOGIN_LOCK_MINUTES: '30',
      DEBVISOR_RATE_LIMIT_PER_PRINCIPAL: '600',
      DEBVISOR_RATE_LIMIT_GLOBAL: '200',
      DEBVISOR_TOKENS_PER_OWNER: '20',
      DEBVISOR_TFA_ENROLMENT: 'password',
      DEBVISOR_TRUSTED_PROXIES: '10.0.0.5, 192.0.2.0/24,::1',
      DEBVISOR_SNAPSHOT_QUOTA_PER_VM: '20',
      DEBVISOR_SNAPSHOT_SCHEDULE_TICK_SECONDS: '30',
      DEBVISOR_MIGRATION_RECOVERY_WAIT_SECONDS: '45',
      DEBVISOR_MIGRATION_LINK_CAP_BYTES: '125000000',
      DEBVISOR_HTTP_LISTEN: '127.0.0.1:8080',
      DEBVISOR_EXTRA_CA_FILE: '/etc/debvisor/private-ca.pem',
      DEBVISOR_CERTIFICATE_CHECK_SECONDS: '600',
      DEBVISOR_CLIENT_CERTIFICATE_LIFETIME_SECONDS: '3600',
      DEBVISOR_CONSOLE_ALLOW_API_TOKENS: 'true',
      DEBVISOR_HA_POLL_INTERVAL_SECONDS: '30',
    });
    expect(config).toEqual({
      stateDir: '/srv/dvm',
      listen: { host: '::1', port: 9000 },
      metricsListen: { host: '127.0.0.1', port: 9100 },
      databaseUrl: 'postgres://u:p@db:5432/dvm',
      databaseAdminUrl: 'postgres://owner:p@db:5432/dvm',
      auditFile: '/var/log/debvisor/manager-audit.log',
      pollIntervalSeconds: 15,
      remoteTimeoutMs: 2500,
      webDir: '/srv/web',
      logLevel: 'debug',
      publicUrl: 'https://dvm.example.com',
      access: {
        sessionIdleSeconds: 600,
        sessionMaxSeconds: 28_800,
        adminPassword: 'correct horse battery staple',
        bootstrapTokenSeconds: 172_800,
        passwordMinLength: 14,
        loginAttemptsPerMinute: 10,
        loginFailuresBeforeLock: 3,
        lockSeconds: 1800,
        rateLimitPerPrincipal: 600,
        rateLimitGlobal: 200,
        tokensPerOwner: 20,
        trustedProxies: ['10.0.0.5', '192.0.2.0/24', '::1'],
        tfaEnrolment: 'password',
      },
      snapshots: { quotaPerVm: 20, scheduleTickSeconds: 30 },
      migrationRecoveryWaitSeconds: 45,
      migrationLinkCapBytes: 125_000_000,
      certificates: {
        httpListen: { host: '127.0.0.1', port: 8080 },
        extraCaFile: '/etc/debvisor/private-ca.pem',
        renewCheckSeconds: 600,
        clientLifetimeSeconds: 3600,
      },
      console: { allowApiTokens: true },
      haPollIntervalSeconds: 30,
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.access)).toBe(true);
    expect(Object.isFrozen(config.listen)).toBe(true);
  });

  it('refuses DATABASE_ADMIN_URL without DATABASE_URL', () => {
    expect(() => loadConfig({ DATABASE_ADMIN_URL: 'postgres://owner:p@db:5432/dvm' })).toThrow(
      /DATABASE_ADMIN_URL: set only together with DATABASE_URL/,
    );
  });

  it('serves HTTP-01 on port 80 by default and not at all when off', () => {
    expect(loadConfig({}).certificates.httpListen).toEqual({ host: '0.0.0.0', port: 80 });
    expect(loadConfig({ DEBVISOR_HTTP_LISTEN: 'off' }).certificates.httpListen).toBeUndefined();
  });

  it('treats empty values as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', DEBVISOR_LISTEN: '  ' }).listen.port).toBe(8443);
  });

  it.each([
    ['DEBVISOR_ADMIN_PASSWORD', 'short'],
    ['DEBVISOR_RATE_LIMIT_GLOBAL', '0'],
    ['DEBVISOR_CONSOLE_ALLOW_API_TOKENS', 'yes'],
    ['DEBVISOR_TRUSTED_PROXIES', '10.0.0.0/33'],
    ['DEBVISOR_TRUSTED_PROXIES', 'proxy.example'],
    ['DEBVISOR_TFA_ENROLMENT', 'anyone'],
    ['DEBVISOR_SNAPSHOT_QUOTA_PER_VM', '0'],
    ['DEBVISOR_LISTEN', '8443'],
    ['DEBVISOR_LISTEN', 'host:70000'],
    ['DEBVISOR_POLL_INTERVAL_SECONDS', '0'],
    ['DEBVISOR_POLL_INTERVAL_SECONDS', 'often'],
    ['DEBVISOR_REMOTE_TIMEOUT_MS', '1.5'],
    ['DATABASE_URL', 'mysql://db/dvm'],
    ['DATABASE_ADMIN_URL', 'http://db/dvm'],
    ['DEBVISOR_LOG_LEVEL', 'loud'],
    ['DEBVISOR_PUBLIC_URL', 'ftp://x'],
    ['DEBVISOR_HTTP_LISTEN', 'on'],
    ['DEBVISOR_CERTIFICATE_CHECK_SECONDS', '0'],
    ['DEBVISOR_CLIENT_CERTIFICATE_LIFETIME_SECONDS', '4'],
  ])('stops with an error naming %s when it is %s', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`${name}: `));
  });

  it('names every bad setting at once', () => {
    expect(() => loadConfig({ DEBVISOR_LISTEN: 'x', DEBVISOR_LOG_LEVEL: 'y' })).toThrow(
      /DEBVISOR_LISTEN: .*DEBVISOR_LOG_LEVEL: /,
    );
  });
});
