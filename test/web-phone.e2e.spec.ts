import { cleanupTempDirs, startCluster, type TestCluster } from '@debvisor/testing';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  launchChromium,
  screenshotChecked,
  startBuiltManager,
  watchProblems,
  type BuiltManager,
} from './browser-harness';

/**
 * The UI on a phone (390 px wide): nothing wider than the screen (tables scroll inside their own
 * frame), the navigation and the refresh button within reach. The screenshots land in
 * test-artifacts/phone/ for a person to look at.
 */
const SCREENSHOTS = resolve(__dirname, '../test-artifacts/phone');
const PHONE = { width: 390, height: 844 };
const ADMIN_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Pw1`;
let manager: BuiltManager;
let cluster: TestCluster;
let browser: Browser;
let page: Page;
let problems: string[];

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  manager = await startBuiltManager(ADMIN_PASSWORD);
  cluster = await startCluster({
    clusterId: 'dc-phone',
    nodes: 2,
    vmsPerNode: 3,
    trustedClientCaPem: manager.clientCaPem,
    logLevel: 'warn',
  });
  const key = await cluster.createApiKey(['*'], { principal: 'manager' });
  await manager.ok('POST', '/api/v1/remotes', {
    id: 'dc-phone',
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key }],
  });
  browser = await launchChromium(manager.caPem);
  const context = await browser.newContext({
    locale: 'en-GB',
    viewport: PHONE,
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  page = await context.newPage();
  problems = watchProblems(page);
  await page.goto(`${manager.base}/`);
  await page.getByLabel('Username').fill('admin@local');
  await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await manager?.process.stop();
  await cluster?.stop();
  cleanupTempDirs();
});

/** Elements that reach past the right edge of the screen, outside a frame that scrolls them. */
function cutOff(target: Page): Promise<{ page: number; elements: string[] }> {
  return target.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const scrolls = (element: Element | null): boolean => {
      for (let e = element; e; e = e.parentElement) {
        const style = getComputedStyle(e);
        if (
          e !== document.documentElement &&
          e !== document.body &&
          (style.overflowX === 'auto' || style.overflowX === 'scroll')
        )
          return true;
      }
      return false;
    };
    const elements = [...document.querySelectorAll('body *')]
      .filter((e) => {
        const box = e.getBoundingClientRect();
        return (
          box.width > 0 &&
          box.right > width + 1 &&
          !scrolls(e.parentElement) &&
          getComputedStyle(e).position !== 'fixed'
        );
      })
      .slice(0, 5)
      .map(
        (e) =>
          `${e.tagName.toLowerCase()}${e.className ? `.${String(e.className).split(' ')[0]}` : ''} right=${Math.round(e.getBoundingClientRect().right)}`,
      );
    return { page: document.documentElement.scrollWidth, elements };
  });
}

describe('the UI on a 390 px phone', () => {
  for (const [name, route, heading] of [
    ['dashboard', '#/', 'Dashboard'],
    ['resources', '#/resources', 'Resources'],
    ['tasks', '#/tasks', 'Tasks'],
    ['audit', '#/audit', 'Audit log'],
  ] as const) {
    it(`${name}: nothing is cut off, the navigation is within reach`, async () => {
      await page.goto(`${manager.base}/${route}`);
      await page.getByRole('heading', { level: 1, name: heading }).waitFor();
      await page.waitForLoadState('networkidle');
      await screenshotChecked(page, join(SCREENSHOTS, `${name}.png`));
      expect(await cutOff(page)).toEqual({ page: PHONE.width, elements: [] });
      const nav = page.getByRole('navigation').first();
      const box = await nav.boundingBox();
      expect(box && box.x >= 0 && box.x + box.width <= PHONE.width + 1).toBe(true);
      expect(problems, 'console errors and failed requests').toEqual([]);
    });
  }
});
