import {
  freePort,
  startChallTestSrv,
  startPebble,
  tempDir,
  type ChallTestSrvInstance,
  type PebbleInstance,
} from '@debvisor/testing';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  launchChromium,
  screenshotChecked,
  startBuiltManager,
  type BuiltManager,
} from './browser-harness';

/**
 * The Certificates page as an administrator meets it: the built manager with its HTTP-01 listener
 * where pebble (Let's Encrypt's test CA) validates, driven through Chromium — the self-signed
 * certificate of the first start, an ACME account registered and settings saved through the forms,
 * "Order now" swapping the certificate under the open page, and an upload refused with its reason.
 */
const SCREENSHOTS = resolve(__dirname, '../test-artifacts/web-certificates');
const HOST = 'manager.localhost';
const AUDITOR_PASSWORD = `aud-${randomBytes(12).toString('base64url')}-Pw2`;
const ADMIN_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Pw1`;

describe('the Certificates page of the web UI', () => {
  let chall: ChallTestSrvInstance;
  let pebble: PebbleInstance;
  let manager: BuiltManager;
  let browser: Browser;
  let context: BrowserContext | undefined;

  const screenshot = (page: Page, name: string, allowed: RegExp[] = []) =>
    screenshotChecked(page, join(SCREENSHOTS, `${name}.png`), allowed);

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    const httpPort = await freePort();
    chall = await startChallTestSrv();
    pebble = await startPebble({ httpPort, dnsServer: chall.dnsServer });
    const extraCa = join(tempDir('debvisor-extra-ca-'), 'pebble-tls-ca.pem');
    writeFileSync(extraCa, pebble.tlsCaPem);
    manager = await startBuiltManager(ADMIN_PASSWORD, {
      DEBVISOR_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
      DEBVISOR_EXTRA_CA_FILE: extraCa,
    });
    await manager.ok('POST', '/api/v1/access/users', {
      username: 'audrey',
      password: AUDITOR_PASSWORD,
    });
    await manager.ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'user',
      principal: 'audrey@local',
      role: 'Audit',
    });
    // The browser trusts the self-signed CA and the key pebble signs leaf certificates with.
    browser = await launchChromium(manager.caPem, await pebble.intermediatePem());
  }, 180_000);

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await manager?.process.stop();
    await pebble?.stop();
    await chall?.stop();
  });

  async function signIn(username: string, password: string): Promise<Page> {
    await context?.close();
    context = await browser.newContext({
      locale: 'en-GB',
      viewport: { width: 1280, height: 900 },
    });
    const page = await context.newPage();
    // Chromium resolves *.localhost to this machine; pebble (through challtestsrv) does too.
    await page.goto(manager.base.replace('//localhost:', `//${HOST}:`) + '/');
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByTestId('signed-in-user').waitFor();
    return page;
  }

  it('orders a certificate over ACME from the page and serves it without a reload', async () => {
    const page = await signIn('admin@local', ADMIN_PASSWORD);

    await page
      .getByRole('navigation', { name: 'Pages' })
      .getByRole('link', { name: 'Certificates' })
      .click();
    await expect
      .poll(() => page.getByTestId('certificate-source').textContent())
      .toBe('Self-signed (first start default)');
    await screenshot(page, '1-self-signed');

    const account = page.getByRole('form', { name: 'Add an ACME account' });
    await account.getByLabel('Name').fill('pebble');
    await account
      .getByLabel('Certificate authority')
      .selectOption({ label: 'Another CA (enter its directory URL)' });
    await account.getByLabel('Directory URL').fill(pebble.directoryUrl);
    await account.getByLabel('Contact e-mail').fill('ops@example.test');
    await account.getByLabel("I agree to the CA's terms of service").check();
    await account.getByRole('button', { name: 'Register the account' }).click();
    await page.getByRole('cell', { name: 'pebble', exact: true }).waitFor();

    const settings = page.getByRole('form', { name: 'ACME settings' });
    await settings.getByLabel('Names').fill(HOST);
    await settings.getByLabel('Challenge').selectOption('http-01');
    await settings.getByRole('button', { name: 'Save the settings' }).click();
    await page.getByText('Settings saved.').waitFor();
    await screenshot(page, '2-account-and-settings');

    await page.getByRole('button', { name: 'Order now' }).click();
    await page
      .getByText('Ordered: the new certificate is served now.')
      .waitFor({ timeout: 60_000 });
    await expect.poll(() => page.getByTestId('certificate-source').textContent()).toBe('ACME');
    expect(await page.getByTestId('certificate-names').textContent()).toBe(HOST);
    await page.getByText(/Pebble Intermediate/).waitFor();
    await screenshot(page, '3-acme-certificate');

    // A new connection now gets the ACME certificate, and the page keeps working.
    await page.reload();
    await expect.poll(() => page.getByTestId('certificate-source').textContent()).toBe('ACME');

    const upload = page.getByRole('form', { name: 'Upload a certificate' });
    await upload.getByLabel('Certificate chain (PEM)').fill('not a certificate');
    await upload.getByLabel('Private key (PEM)').fill('not a key');
    await upload.getByRole('button', { name: 'Upload and serve' }).click();
    await upload.getByText('the chain holds no PEM certificate').waitFor();
    await screenshot(page, '4-upload-refused', [
      /^400 PUT \/api\/v1\/system\/certificates\/custom$/,
    ]);
  });

  it('shows an auditor the certificate and the accounts, and nothing to change', async () => {
    const page = await signIn('audrey@local', AUDITOR_PASSWORD);
    await page
      .getByRole('navigation', { name: 'Pages' })
      .getByRole('link', { name: 'Certificates' })
      .click();
    await expect.poll(() => page.getByTestId('certificate-source').textContent()).toBe('ACME');
    await page.getByRole('cell', { name: 'pebble', exact: true }).waitFor();
    const changes = await page.evaluate(() =>
      [
        ...document.querySelectorAll(
          '#content button, #content input, #content textarea, #content select',
        ),
      ].map((element) => element.outerHTML.slice(0, 80)),
    );
    expect(changes).toEqual([]);
    await screenshot(page, '5-auditor');
  });
});
