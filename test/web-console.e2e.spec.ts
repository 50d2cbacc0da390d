import { cleanupTempDirs } from '@debvisor/testing';
import { randomBytes } from 'node:crypto';
import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  launchChromium,
  startBuiltManager,
  watchProblems,
  type BuiltManager,
} from './browser-harness';

/**
 * A normal page load logs nothing in the browser console: no 401 for a visitor who is not logged
 * in (the UI asks for the session only when the manager's signed-in marker is there), no 404 for a
 * favicon, no error after signing in, reloading and opening the main pages.
 */
const ADMIN_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Pw1`;
let manager: BuiltManager;
let browser: Browser;
let context: BrowserContext | undefined;

beforeAll(async () => {
  manager = await startBuiltManager(ADMIN_PASSWORD);
  browser = await launchChromium(manager.caPem);
}, 180_000);

afterEach(async () => {
  await context?.close();
  context = undefined;
});

afterAll(async () => {
  await browser?.close();
  await manager?.process.stop();
  cleanupTempDirs();
});

describe('the browser console on a normal page load', () => {
  it('stays empty for a visitor, through sign-in, a reload and the main pages', async () => {
    context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1100, height: 760 } });
    const page = await context.newPage();
    const problems = watchProblems(page);
    await page.goto(`${manager.base}/`);
    await page.getByLabel('Username').waitFor();
    // Settled: the login page asked everything it asks on load.
    await page.waitForLoadState('networkidle');
    expect(problems).toEqual([]);

    await page.getByLabel('Username').fill('admin@local');
    await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await page.waitForLoadState('networkidle');
    await page.reload();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await page.waitForLoadState('networkidle');
    for (const route of ['#/resources', '#/tasks', '#/audit']) {
      await page.goto(`${manager.base}/${route}`);
      await page.getByRole('heading', { level: 1 }).first().waitFor();
      await page.waitForLoadState('networkidle');
    }
    expect(problems).toEqual([]);
  }, 120_000);
});
