import {
  cleanupTempDirs,
  startOidcProvider,
  startSlapd,
  type OidcProviderInstance,
  type SlapdInstance,
} from '@debvisor/testing';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  launchChromium,
  screenshotChecked,
  startBuiltManager,
  type BuiltManager,
  type Json,
} from './browser-harness';

/**
 * The login page's realm choice as a user meets it: the built manager with a local realm, an LDAP
 * realm on a throw-away slapd and an OpenID Connect realm on a real oidc-provider, driven through
 * Chromium — the realms offered before anyone logs in, a directory login through the choice (and
 * through `name@realm`), and single sign-on through the provider's own login and consent pages.
 */
const SCREENSHOTS = resolve(__dirname, '../test-artifacts/web-realms');
const ADMIN_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Pw1`;
const CARLA_PASSWORD = `carla-${randomBytes(9).toString('base64url')}`;
const CLIENT_ID = 'debvisor-manager';
const CLIENT_SECRET = randomBytes(24).toString('base64url');

describe('the realms of the login page', () => {
  let manager: BuiltManager;
  let ldap: SlapdInstance;
  let provider: OidcProviderInstance;
  let browser: Browser;
  let context: BrowserContext | undefined;

  const ok = (method: string, path: string, body?: unknown) => manager.ok(method, path, body);

  async function openUi(): Promise<Page> {
    context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1366, height: 768 } });
    const page = await context.newPage();
    await page.goto(`${manager.base}/`);
    await page.getByLabel('Username').waitFor();
    return page;
  }

  /** `allowed`: what the test provokes on purpose since the last screenshot. */
  const screenshot = (page: Page, name: string, allowed: RegExp[] = []) =>
    screenshotChecked(page, join(SCREENSHOTS, `${name}.png`), allowed);

  async function signedInUser(page: Page): Promise<string | null> {
    const user = page.getByTestId('signed-in-user');
    await user.waitFor({ timeout: 15_000 });
    return user.textContent();
  }

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    manager = await startBuiltManager(ADMIN_PASSWORD);
    ldap = await startSlapd();
    await ldap.addUser({
      uid: 'carla',
      password: CARLA_PASSWORD,
      cn: 'Carla Example',
      mail: 'carla@example.test',
    });
    await ldap.addGroup('debvisor-auditors', ['carla']);
    provider = await startOidcProvider({
      clients: [
        {
          clientId: CLIENT_ID,
          clientSecret: CLIENT_SECRET,
          redirectUris: [`${manager.base}/api/v1/auth/oidc/callback`],
        },
      ],
      // The provider's development login page takes the account id (the sub claim): here the login itself.
      accounts: {
        dora: {
          claims: {
            preferred_username: 'dora',
            name: 'Dora Example',
            groups: ['debvisor-auditors'],
          },
        },
      },
    });
    await ok('POST', '/api/v1/access/realms', {
      id: 'corp',
      type: 'ldap',
      comment: 'Corporate directory',
      settings: {
        url: ldap.url,
        startTls: true,
        caPem: ldap.caPem,
        bindDn: ldap.bindDn,
        userBaseDn: ldap.usersDn,
        groupBaseDn: ldap.groupsDn,
      },
      secret: ldap.bindPassword,
      groupMappings: [{ pattern: 'debvisor-*' }],
    });
    await ok('POST', '/api/v1/access/realms', {
      id: 'sso',
      type: 'openid',
      comment: 'Company SSO',
      settings: {
        issuerUrl: provider.issuer,
        clientId: CLIENT_ID,
        caPem: provider.caPem,
        scopes: ['openid', 'profile', 'groups'],
      },
      secret: CLIENT_SECRET,
      groupMappings: [{ pattern: 'debvisor-*' }],
    });
    await ok('POST', '/api/v1/access/groups', { id: 'debvisor-auditors' });
    await ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'group',
      principal: 'debvisor-auditors',
      role: 'Audit',
    });
    browser = await launchChromium(manager.caPem, provider.caPem);
  }, 180_000);

  afterEach(async () => {
    await context?.close();
    context = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    await provider?.stop();
    await ldap?.stop();
    await manager?.process.stop();
    cleanupTempDirs();
  });

  it('offers the password realms to choose from and a button per single sign-on realm, before anyone logs in', async () => {
    const page = await openUi();
    const realm = page.getByLabel('Realm');
    await realm.waitFor();
    const options = await realm
      .locator('option')
      .evaluateAll((all) => all.map((o) => [(o as HTMLOptionElement).value, o.textContent]));
    expect(options).toEqual([
      ['local', 'local — Users with a password stored in the manager'],
      ['corp', 'corp — Corporate directory'],
    ]);
    expect(await realm.inputValue()).toBe('local');
    expect(await page.getByRole('button', { name: 'Sign in with Company SSO' }).isVisible()).toBe(
      true,
    );
    // Nothing of a realm's settings reaches the page.
    expect(await page.content()).not.toContain(provider.issuer);
    await screenshot(page, 'login-realms');

    // A username that names a password realm takes it, and the choice follows.
    await realm.selectOption('corp');
    await page.getByLabel('Username').fill('admin@local');
    expect(await realm.inputValue()).toBe('local');
    expect(await realm.isDisabled()).toBe(true);
    await page.getByLabel('Username').fill('admin');
    expect(await realm.isDisabled()).toBe(false);
  });

  it('logs a directory user in through the realm choice, names the realm on a wrong password, and remembers the choice', async () => {
    const page = await openUi();
    await page.getByLabel('Username').fill('carla');
    await page.getByLabel('Password', { exact: true }).fill('not-her-password');
    await page.getByLabel('Realm').selectOption('corp');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').textContent()).toBe('invalid username or password');

    await page.getByLabel('Password', { exact: true }).fill(CARLA_PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    expect(await signedInUser(page)).toBe('carla@corp');
    await page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor();
    await screenshot(page, 'dashboard-directory-user', [/^401 POST \/api\/v1\/auth\/login$/]);
    // Her role comes from the directory group, mapped at the login.
    expect((await ok('GET', '/api/v1/access/groups/debvisor-auditors')).members).toContainEqual({
      user: 'carla@corp',
      source: 'corp',
    });

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Username').waitFor();
    expect(await page.getByLabel('Realm').inputValue()).toBe('corp');
  });

  it('logs a directory user in as name@realm whatever the choice says', async () => {
    const page = await openUi();
    await page.getByLabel('Username').fill('carla@corp');
    await page.getByLabel('Password', { exact: true }).fill(CARLA_PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    expect(await signedInUser(page)).toBe('carla@corp');
  });

  it('signs in through the identity provider’s own pages with the single sign-on button, and comes back signed in', async () => {
    const page = await openUi();
    await page.getByRole('button', { name: 'Sign in with Company SSO' }).click();
    await page.waitForURL((url) => url.origin === new URL(provider.issuer).origin);
    await page.locator('input[name="login"]').fill('dora');
    await page.locator('input[name="password"]').fill('any');
    // The provider's own page: looked at, not ours to check.
    await page.screenshot({ path: join(SCREENSHOTS, 'provider-login.png'), fullPage: true });
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.waitForURL((url) => url.origin === manager.base);
    expect(await signedInUser(page)).toBe('dora@sso');
    await page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor();
    // The test identity provider's own pages ask for an outside resource this machine cannot resolve.
    await screenshot(page, 'dashboard-sso-user', [
      /^console: Failed to load resource: net::ERR_NAME_NOT_RESOLVED$/,
    ]);
    const audit = (await ok('GET', '/api/v1/audit?action=auth.login&principal=dora@sso')).items;
    expect(audit.map((e: Json) => [e.outcome, e.details?.method])).toContainEqual([
      'success',
      'oidc',
    ]);
  });
});
