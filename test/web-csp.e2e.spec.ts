import { cleanupTempDirs, startCluster, type TestCluster } from '@debvisor/testing';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_SECTIONS, href, type Page as UiPage, type Route } from '../apps/web/src/view';
import {
  expectNoProblems,
  launchChromium,
  startBuiltManager,
  type BuiltManager,
  type Json,
} from './browser-harness';

/**
 * The web UI under the manager's Content-Security-Policy (issue 14, weakness 10): every page of the
 * UI — the record below must name each page the router knows, or this file does not compile — is
 * opened in Chromium with the policy the manager sends, and no page may cause a violation
 * (`securitypolicyviolation` events and Chromium's console lines both count). The policy is
 * proved to be in force: an injected inline script does not run.
 */
const ADMIN_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Pw1`;
let manager: BuiltManager;
let cluster: TestCluster;
let browser: Browser;
let page: Page;
let vm: Json;
let taskId: string;
/** Screenshots of every page under the policy, to look at. */
const SHOTS = resolve(__dirname, '../test-artifacts/csp');

/** Collects every CSP violation of the document in window.__cspViolations, from the first script on. */
const RECORD_VIOLATIONS = `
  window.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (event) => {
    window.__cspViolations.push(event.violatedDirective + ' ' + (event.blockedURI || 'inline') + ' at ' + location.hash);
  });
`;

async function violations(target: Page): Promise<string[]> {
  return target.evaluate(
    () => (window as unknown as { __cspViolations: string[] }).__cspViolations,
  );
}

beforeAll(async () => {
  manager = await startBuiltManager(ADMIN_PASSWORD);
  cluster = await startCluster({
    clusterId: 'dc-csp',
    nodes: 1,
    vmsPerNode: 1,
    trustedClientCaPem: manager.clientCaPem,
    logLevel: 'warn',
  });
  const key = await cluster.createApiKey(['*'], { principal: 'manager' });
  await manager.ok('POST', '/api/v1/remotes', {
    id: 'dc-csp',
    endpoints: cluster.agents.map((a) => a.endpoint),
    caCertPem: cluster.caPem,
    credentials: [{ name: 'admin', key }],
  });
  for (let attempt = 0; !vm && attempt < 50; attempt++) {
    await manager.ok('GET', '/api/v1/resources/refresh');
    vm = (await manager.ok('GET', '/api/v1/resources?type=vm')).items[0];
  }
  expect(vm).toBeDefined();
  const tasks = await manager.ok('GET', '/api/v1/tasks?limit=1');
  taskId =
    tasks.items[0]?.id ??
    (await manager.ok('POST', `/api/v1/remotes/dc-csp/vms/${vm.id}/start`)).taskId;
  mkdirSync(SHOTS, { recursive: true });
  browser = await launchChromium(manager.caPem);
  const context = await browser.newContext({
    locale: 'en-GB',
    viewport: { width: 1200, height: 800 },
  });
  await context.addInitScript(RECORD_VIOLATIONS);
  page = await context.newPage();
  await page.goto(`${manager.base}/`);
  await page.getByLabel('Username').fill('admin@local');
  await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
  // The login page, before any other page: no violation either.
  expect(await violations(page)).toEqual([]);
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await manager?.process.stop();
  await cluster?.stop();
  cleanupTempDirs();
});

/** Every page of the UI's router, with the routes that open it. */
function everyPage(): Record<UiPage, Route[]> {
  return {
    dashboard: [{ page: 'dashboard' }],
    resources: [{ page: 'resources', q: '' }],
    vm: [{ page: 'vm', remote: 'dc-csp', vmid: vm.id }],
    migrate: [{ page: 'migrate', remote: 'dc-csp', vmid: vm.id }],
    console: [{ page: 'console', remote: 'dc-csp', vmid: vm.id }],
    tasks: [{ page: 'tasks' }],
    task: [{ page: 'task', id: taskId }],
    audit: [{ page: 'audit' }],
    admin: ADMIN_SECTIONS.map((section) => ({ page: 'admin', section })),
    replication: [{ page: 'replication' }],
    ha: [{ page: 'ha' }],
    certificates: [{ page: 'certificates' }],
    account: [{ page: 'account' }],
  };
}

describe('the web UI under the Content-Security-Policy', () => {
  it('is served with the policy, and the policy is in force', async () => {
    const answer = await page.goto(`${manager.base}/`);
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    const policy = answer?.headers()['content-security-policy'];
    expect(policy).toContain("script-src 'self'");
    expect(policy).toContain("frame-ancestors 'none'");
    // An inline script put into the page (as an injection would) does not run.
    const ran = await page.evaluate(() => {
      const script = document.createElement('script');
      script.textContent = 'window.__injected = true';
      document.head.appendChild(script);
      return (window as unknown as { __injected?: boolean }).__injected === true;
    });
    expect(ran).toBe(false);
    expect(await violations(page)).toEqual([expect.stringMatching(/^script-src\S* inline /)]);
    await page.evaluate(() => {
      (window as unknown as { __cspViolations: string[] }).__cspViolations.length = 0;
    });
    expectNoProblems(page, [/Content Security Policy/], 'after the injection probe');
  });

  it('opens every page without a violation', async () => {
    const opened: string[] = [];
    const consoleLines: string[] = [];
    page.on('console', (message) => {
      if (/Content Security Policy|Refused to/.test(message.text()))
        consoleLines.push(`${message.text()} at ${page.url()}`);
    });
    for (const routes of Object.values(everyPage())) {
      for (const route of routes) {
        const link = href(route);
        await page.goto(`${manager.base}/${link}`);
        await page.getByRole('heading').first().waitFor();
        await page.waitForLoadState('networkidle');
        await page.screenshot({ path: `${SHOTS}/${link.replace(/[^a-z0-9]+/gi, '-')}.png` });
        opened.push(link);
      }
    }
    expect(opened.length).toBeGreaterThanOrEqual(12 + ADMIN_SECTIONS.length - 1);
    expect(await violations(page)).toEqual([]);
    expect(consoleLines).toEqual([]);
  });
});
