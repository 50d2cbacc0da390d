import { cleanupTempDirs, startCluster, type TestCluster } from '@debvisor/testing';
import { randomBytes } from 'node:crypto';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  launchChromium,
  startBuiltManager,
  watchProblems,
  type BuiltManager,
  type Json,
} from './browser-harness';

/**
 * An auditor never meets an enabled control or an editable field that would change something:
 * not in the migration wizard opened by its URL, not in a user's details on the users page.
 */
const ADMIN_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Pw1`;
const AUDITOR_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Au1`;
let manager: BuiltManager;
let cluster: TestCluster;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let vm: Json;
let problems: string[];

/** The controls on the page that would change something and are not disabled, and the editable fields. */
function enabledChanges(target: Page): Promise<string[]> {
  return target.evaluate(() =>
    [
      ...document.querySelectorAll(
        'main [data-action]:not(:disabled), main input:not(:disabled):not([type="search"]), main textarea:not(:disabled), main select:not(:disabled)',
      ),
    ]
      .filter(
        (element) => !element.closest('[role="search"], form[aria-label*="Filter"], .filters'),
      )
      .map(
        (element) =>
          `${element.tagName.toLowerCase()} ${element.getAttribute('aria-label') ?? element.textContent?.trim() ?? ''}`,
      ),
  );
}

beforeAll(async () => {
  manager = await startBuiltManager(ADMIN_PASSWORD);
  cluster = await startCluster({
    clusterId: 'dc-aud',
    nodes: 1,
    vmsPerNode: 1,
    trustedClientCaPem: manager.clientCaPem,
    logLevel: 'warn',
  });
  const key = await cluster.createApiKey(['*'], { principal: 'manager' });
  await manager.ok('POST', '/api/v1/remotes', {
    id: 'dc-aud',
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key }],
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
  for (let attempt = 0; !vm && attempt < 50; attempt++) {
    await manager.ok('GET', '/api/v1/resources/refresh');
    vm = (await manager.ok('GET', '/api/v1/resources?type=vm')).items[0];
  }
  expect(vm).toBeDefined();
  browser = await launchChromium(manager.caPem);
  context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1100, height: 760 } });
  page = await context.newPage();
  problems = watchProblems(page);
  await page.goto(`${manager.base}/`);
  await page.getByLabel('Username').fill('audrey@local');
  await page.getByLabel('Password', { exact: true }).fill(AUDITOR_PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await manager?.process.stop();
  await cluster?.stop();
  cleanupTempDirs();
});

describe('an auditor', () => {
  it('opening the migration wizard by its URL gets no wizard, only what is missing', async () => {
    await page.goto(`${manager.base}/#/migrate/dc-aud/${vm.id}`);
    await page.getByTestId('wizard-not-allowed').waitFor();
    expect(await page.getByTestId('wizard-not-allowed').textContent()).toContain(
      'needs the vm.migrate privilege',
    );
    expect(await page.getByRole('button', { name: 'Next' }).count()).toBe(0);
    expect(await enabledChanges(page)).toEqual([]);
  });

  it("sees a user's details without a password field or a group editor, and every action disabled", async () => {
    await page.goto(`${manager.base}/#/admin/users`);
    const details = page.getByRole('button', { name: 'Details of admin@local' });
    await details.click();
    await page.getByRole('region', { name: 'Manage admin@local' }).waitFor();
    expect(await page.locator('input[type="password"]').count()).toBe(0);
    expect(await page.getByRole('note').first().textContent()).toContain(
      'needs the access.modify privilege',
    );
    expect(await enabledChanges(page)).toEqual([]);
    expect(problems, 'console errors and failed requests').toEqual([]);
  });
});
