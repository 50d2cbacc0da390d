import { cleanupTempDirs, requireBinary, type ManagedProcess } from '@debvisor/testing';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  expectNoProblems,
  launchChromium,
  screenshotChecked,
  startBuiltManager,
} from './browser-harness';

/**
 * The web UI's account page as a user meets it: the built manager serving the built UI, driven
 * through Chromium. Adding an authenticator app and a security key (a CDP virtual authenticator),
 * removing one, changing the password, and the note for API-token sign-ins.
 */
const SCREENSHOTS = resolve(__dirname, '../test-artifacts/web-login');
const ADMIN = 'admin@local';
const ADMIN_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Pw1`;
const NEW_PASSWORD = `new-${randomBytes(12).toString('base64url')}-Pw3`;

describe('the account page of the web UI', () => {
  let manager: ManagedProcess;
  let base: string;
  let bootstrapToken: string;
  let oathtool: string;
  let browser: Browser;
  let context: BrowserContext | undefined;

  /** The TOTP code of `secret` for now plus `offsetSeconds` (oathtool, RFC 6238). */
  function totp(secret: string, offsetSeconds = 0): string {
    const at = Math.floor(Date.now() / 1000) + offsetSeconds;
    return execFileSync(oathtool, ['--totp', '-b', '--now', `@${at}`, '--', secret], {
      encoding: 'utf8',
      timeout: 5000,
    }).trim();
  }

  /** A fresh browser profile (no cookies) with a virtual security key, on the UI's start page. */
  async function openUi(): Promise<Page> {
    await context?.close();
    context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1100, height: 760 } });
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'usb',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
      },
    });
    await page.goto(`${base}/`);
    return page;
  }

  /** `allowed`: the refusals the test provokes on purpose since the last screenshot. */
  async function screenshot(page: Page, name: string, allowed: RegExp[] = []): Promise<void> {
    await screenshotChecked(page, join(SCREENSHOTS, `${name}.png`), allowed);
  }

  async function fillLogin(page: Page, username: string, password: string): Promise<void> {
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  }

  async function signedInUser(page: Page): Promise<string | null> {
    const user = page.getByTestId('signed-in-user');
    await user.waitFor({ timeout: 15_000 });
    return user.textContent();
  }

  async function openAccount(page: Page): Promise<void> {
    await page.getByRole('link', { name: 'Account' }).click();
    await page.getByRole('heading', { name: 'Account', level: 1 }).waitFor();
  }

  /** The names in the first column of a factor table. */
  const rowNames = (page: Page, table: string) =>
    page.getByRole('table', { name: table }).locator('tbody th').allTextContents();

  beforeAll(async () => {
    oathtool = requireBinary('oathtool', 'oathtool');
    mkdirSync(SCREENSHOTS, { recursive: true });
    const started = await startBuiltManager(ADMIN_PASSWORD);
    manager = started.process;
    bootstrapToken = started.bootstrapToken;
    base = started.base;
    browser = await launchChromium(started.caPem);
  });

  afterEach(async () => {
    await context?.close();
    context = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    await manager?.stop();
    cleanupTempDirs();
  });

  it('tells an API-token sign-in that account settings need a password login', async () => {
    const page = await openUi();
    await page.getByText('Sign in with an API token').click();
    await page.getByRole('textbox', { name: 'API token' }).fill(bootstrapToken);
    await page.getByRole('button', { name: 'Sign in with the token' }).click();
    expect(await signedInUser(page)).toBe('API token');
    await openAccount(page);
    expect(await page.getByRole('status').textContent()).toMatch(/need a password login/);
    expect(await page.getByRole('button', { name: 'Change password' }).count()).toBe(0);
    await page.getByRole('link', { name: 'Dashboard' }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  });

  it('adds an authenticator app and a security key, removes the key, renews the recovery codes, changes the password, and signs in with the new one', async () => {
    const page = await openUi();
    await fillLogin(page, ADMIN, ADMIN_PASSWORD);
    expect(await signedInUser(page)).toBe(ADMIN);
    await openAccount(page);
    expect(page.url()).toBe(`${base}/#/account`);
    await page.getByText('No authenticator app.').waitFor();
    await screenshot(page, 'account-empty');

    // Authenticator app: the shared enrolment (name + password → QR and secret → code → recovery codes once).
    await page.getByRole('button', { name: 'Add authenticator app' }).click();
    await page.getByLabel('Name of the authenticator').fill('e2e phone');
    await page.getByLabel('Your password').fill('wrong-password-123');
    await page.getByRole('button', { name: 'Continue' }).click();
    expect(await page.getByRole('alert').textContent()).toMatch(/\S/);
    await page.getByLabel('Your password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('img', { name: 'QR code of the authenticator secret' }).waitFor();
    const secret = (await page.locator('code.secret').textContent())!.replace(/\s+/g, '');
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    await screenshot(page, 'account-totp-qr', [/^403 POST \/api\/v1\/access\/tfa\/totp$/]);
    await page.getByLabel('Code from your authenticator app').fill(totp(secret));
    await page.getByRole('button', { name: 'Confirm' }).click();
    const codes = page.getByRole('list', { name: 'Recovery codes' }).locator('code');
    await codes.first().waitFor();
    const firstCodes = await codes.allTextContents();
    expect(firstCodes).toHaveLength(10);
    await page.getByRole('rowheader', { name: 'e2e phone' }).waitFor();
    await screenshot(page, 'account-recovery-codes');
    await page.getByRole('button', { name: 'I saved them' }).click();
    await page.getByRole('cell', { name: 'in use' }).waitFor();
    expect(await rowNames(page, 'Authenticator apps')).toEqual(['e2e phone']);
    expect(await page.getByTestId('recovery-codes-left').textContent()).toBe('10');

    // Security key: options → navigator.credentials.create() (the virtual authenticator) → stored; not the first factor, so no codes.
    await page.getByRole('button', { name: 'Add security key' }).click();
    await page.getByLabel('Name of the security key').fill('e2e key');
    await page.getByLabel('Your password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Register the security key' }).click();
    await page.getByRole('button', { name: 'Add security key' }).waitFor();
    await page.getByRole('rowheader', { name: 'e2e key' }).waitFor();
    expect(await rowNames(page, 'Security keys')).toEqual(['e2e key']);
    expect(await page.getByRole('list', { name: 'Recovery codes' }).count()).toBe(0);
    await screenshot(page, 'account-factors');

    // Removing asks for the password again; a wrong one shows the server's message and keeps the key.
    await page.getByRole('button', { name: 'Remove e2e key' }).click();
    await page.getByLabel('Your password').fill('wrong-password-123');
    await page.getByRole('button', { name: 'Remove', exact: true }).click();
    expect(await page.getByRole('alert').textContent()).toMatch(/\S/);
    await page.getByLabel('Your password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Remove', exact: true }).click();
    await page.getByText('No security key.').waitFor();
    expect(await rowNames(page, 'Authenticator apps')).toEqual(['e2e phone']);

    // New recovery codes: a fresh set of 10, shown once, replacing the first set.
    await page.getByRole('button', { name: 'New recovery codes' }).click();
    await page.getByLabel('Your password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Replace the recovery codes' }).click();
    await codes.first().waitFor();
    const renewed = await codes.allTextContents();
    expect(renewed).toHaveLength(10);
    expect(renewed).not.toContain(firstCodes[0]);
    await page.getByRole('button', { name: 'I saved them' }).click();
    expect(await page.getByRole('list', { name: 'Recovery codes' }).count()).toBe(0);

    // Password: the repetition is checked here, the policy by the manager (its message shown), then the change.
    await page.getByLabel('Current password').fill(ADMIN_PASSWORD);
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByLabel('Repeat the new password').fill(`${NEW_PASSWORD}x`);
    await page.getByRole('button', { name: 'Change password' }).click();
    expect(await page.getByRole('alert').textContent()).toBe(
      'the new password and its repetition differ',
    );
    await page.getByLabel('New password', { exact: true }).fill('short');
    await page.getByLabel('Repeat the new password').fill('short');
    await page.getByRole('button', { name: 'Change password' }).click();
    const policy = page.getByRole('alert');
    await policy.filter({ hasNotText: 'repetition' }).waitFor();
    expect(await policy.textContent()).toMatch(/\S/);
    // The wrong password when removing the key, the password the policy refuses.
    await screenshot(page, 'account-password-refused', [
      /^403 DELETE \/api\/v1\/access\/tfa\/webauthn\/[^/]+$/,
      /^400 POST \/api\/v1\/access\/password$/,
    ]);
    await page.getByLabel('Current password').fill(ADMIN_PASSWORD);
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByLabel('Repeat the new password').fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    expect(
      await page.getByText('Password changed. Your other sessions were ended.').textContent(),
    ).toBeTruthy();
    await screenshot(page, 'account-password-changed');

    // The old password no longer signs in; the new one does (with the authenticator app as second factor).
    await page.getByRole('button', { name: 'Log out', exact: true }).click();
    await fillLogin(page, ADMIN, ADMIN_PASSWORD);
    expect(await page.getByRole('alert').textContent()).toBe('invalid username or password');
    await fillLogin(page, ADMIN, NEW_PASSWORD);
    await page.getByLabel('Code from your authenticator app').fill(totp(secret, 30));
    await page.getByRole('button', { name: 'Verify' }).click();
    expect(await signedInUser(page)).toBe(ADMIN);
    // The address still says #/account: the page comes back; the link leads back to the dashboard.
    await page.getByRole('heading', { name: 'Account', level: 1 }).waitFor();
    await page.getByRole('link', { name: 'Dashboard' }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    expect(page.url()).toBe(`${base}/#/`);

    // Log out everywhere ends this session too: back to the login page.
    await openAccount(page);
    await page.getByRole('button', { name: 'Log out everywhere' }).click();
    await page.getByLabel('Username').waitFor();
    expect(await page.evaluate(() => fetch('/api/v1/auth/session').then((r) => r.status))).toBe(
      401,
    );
    // The old password refused, and the test's own question for the ended session.
    expectNoProblems(page, [
      /^401 POST \/api\/v1\/auth\/login$/,
      /^401 GET \/api\/v1\/auth\/session$/,
    ]);
  });
});
