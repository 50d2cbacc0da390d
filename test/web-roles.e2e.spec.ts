import { cleanupTempDirs, requireBinary } from '@debvisor/testing';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, screenshotChecked, type Json } from './browser-harness';
import { startDemoTopology, type DemoTopology } from './demo-topology';

/**
 * The web UI in the demo topology (two simulated datacenters behind the built manager), as three
 * kinds of user meet it: an operator who signs in with a password and TOTP and whose dashboard
 * shows what the API says; an auditor who may see everything and change nothing; a tenant who
 * sees only its own VMs.
 */
const SCREENSHOTS = resolve(__dirname, '../test-artifacts/web-roles');
const password = () => `pw-${randomBytes(12).toString('base64url')}-A1`;
const ADMIN_PASSWORD = password();
const USERS = { operator: password(), auditor: password(), tenant: password() };

describe('the web UI for an operator, an auditor and a tenant', () => {
  let demo: DemoTopology;
  let browser: Browser;
  let context: BrowserContext | undefined;
  let oathtool: string;
  let vms: Json[];

  const ok = (method: string, path: string, body?: unknown) => demo.manager.ok(method, path, body);

  function totp(secret: string, offsetSeconds = 0): string {
    const at = Math.floor(Date.now() / 1000) + offsetSeconds;
    return execFileSync(oathtool, ['--totp', '-b', '--now', `@${at}`, '--', secret], {
      encoding: 'utf8',
      timeout: 5000,
    }).trim();
  }

  async function openUi(): Promise<Page> {
    await context?.close();
    context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1366, height: 768 } });
    const page = await context.newPage();
    await page.goto(`${demo.manager.base}/`);
    return page;
  }

  async function signIn(page: Page, username: string, secret: string): Promise<void> {
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password', { exact: true }).fill(secret);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByTestId('signed-in-user').waitFor();
  }

  async function visit(page: Page, hash: string, heading: string | RegExp): Promise<void> {
    await page.goto(`${demo.manager.base}/${hash}`);
    await page.getByRole('heading', { level: 1, name: heading }).waitFor();
  }

  /** `allowed`: what the test provokes on purpose since the last screenshot. */
  async function screenshot(page: Page, name: string, allowed: RegExp[] = []): Promise<void> {
    await screenshotChecked(page, join(SCREENSHOTS, `${name}.png`), allowed);
  }

  beforeAll(async () => {
    oathtool = requireBinary('oathtool', 'oathtool');
    mkdirSync(SCREENSHOTS, { recursive: true });
    demo = await startDemoTopology(ADMIN_PASSWORD, { nodes: 2, vmsPerNode: 3 });
    browser = await launchChromium(demo.manager.caPem);
    vms = (await ok('GET', '/api/v1/resources?type=vm')).items;
    await ok('POST', '/api/v1/access/users', {
      username: 'operator',
      password: USERS.operator,
      requireTfa: true,
    });
    await ok('POST', '/api/v1/access/users', { username: 'auditor', password: USERS.auditor });
    await ok('POST', '/api/v1/access/users', { username: 'tenant', password: USERS.tenant });
    await ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'user',
      principal: 'operator@local',
      role: 'Manage',
    });
    await ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'user',
      principal: 'auditor@local',
      role: 'Audit',
    });
    await ok('POST', '/api/v1/access/groups', { id: 'tenant-red', tenant: true });
    await ok('PUT', '/api/v1/access/groups/tenant-red/members', { users: ['tenant@local'] });
    await ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'group',
      principal: 'tenant-red',
      role: 'Manage',
    });
    for (const vm of [vms[0], vms.at(-1)])
      await ok('PUT', `/api/v1/access/vm-owners/${vm.id}`, { tenantGroup: 'tenant-red' });
    // A task for the task pages: a power action by the admin.
    const stopped = vms.find((vm: Json) => vm.status === 'running');
    await ok('POST', `/api/v1/remotes/${stopped.remote}/vms/${stopped.id}/reboot`, {});
  }, 300_000);

  afterEach(async () => {
    await context?.close();
    context = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    await demo?.stop();
    cleanupTempDirs();
  });

  it('signs the operator in with a password and TOTP, and the dashboard shows what the API says', async () => {
    const page = await openUi();
    // The account must enrol a second factor first.
    await page.getByLabel('Username').fill('operator');
    await page.getByLabel('Password', { exact: true }).fill(USERS.operator);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { name: 'Set up a second factor' }).waitFor();
    await page.getByLabel('Your password').fill(USERS.operator);
    // With the one-time code an administrator issued: a password alone does not enrol it.
    const issued = await ok('POST', '/api/v1/access/users/operator@local/tfa/enrolment-code');
    await page.getByLabel('Enrolment code from your administrator').fill(issued.code);
    await page.getByRole('button', { name: 'Continue' }).click();
    const secret = (await page.locator('code.secret').textContent())!.replace(/\s+/g, '');
    await page.getByLabel('Code from your authenticator app').fill(totp(secret));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('button', { name: 'I saved them' }).click();
    await page.getByRole('button', { name: 'Log out' }).click();

    await page.getByLabel('Username').fill('operator');
    await page.getByLabel('Password', { exact: true }).fill(USERS.operator);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByLabel('Code from your authenticator app').fill(totp(secret, 30));
    await page.getByRole('button', { name: 'Verify' }).click();
    expect(await page.getByTestId('signed-in-user').textContent()).toBe('operator@local');

    await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
    const dashboard = await ok('GET', '/api/v1/dashboard');
    const figure = async (id: string) => Number(await page.getByTestId(id).textContent());
    await page
      .getByTestId('total-vms')
      .filter({ hasText: String(dashboard.totals.vms.total) })
      .waitFor();
    expect(await figure('total-remotes')).toBe(dashboard.totals.remotes.total);
    expect(await figure('total-nodes')).toBe(dashboard.totals.nodes.total);
    expect(await figure('total-nodes-alive')).toBe(dashboard.totals.nodes.alive);
    expect(await figure('total-vms-running')).toBe(dashboard.totals.vms.running);
    for (const remote of dashboard.remotes) {
      const row = page.locator(`[data-testid="remote-row"][data-remote="${remote.remote}"]`);
      expect(await row.getAttribute('data-status')).toBe(remote.status);
      expect(Number(await row.getByTestId('remote-vms-total').textContent())).toBe(
        remote.vms.total,
      );
      expect(Number(await row.getByTestId('remote-vms-running').textContent())).toBe(
        remote.vms.running,
      );
    }
    await screenshot(page, 'dashboard-operator');
  });

  it('shows the auditor every page and no enabled action on any of them', async () => {
    const page = await openUi();
    await signIn(page, 'auditor', USERS.auditor);
    const tasks = await ok('GET', '/api/v1/tasks');
    const vm = vms[1];
    const pages: [string, string, string | RegExp][] = [
      ['dashboard', '#/', 'Dashboard'],
      ['resources', '#/resources', 'Resources'],
      ['vm', `#/resources/${vm.remote}/${vm.id}`, vm.name],
      ['migrate', `#/migrate/${vm.remote}/${vm.id}`, `Migrate ${vm.name}`],
      ['tasks', '#/tasks', 'Tasks'],
      ['task', `#/tasks/${tasks.items[0].id}`, /^Task: /],
      ['audit', '#/audit', 'Audit log'],
      ...['remotes', 'remote-groups', 'users', 'groups', 'realms', 'acl', 'tokens'].map(
        (section): [string, string, string] => [
          `admin-${section}`,
          `#/admin/${section}`,
          'Administration',
        ],
      ),
    ];
    for (const [name, hash, heading] of pages) {
      await visit(page, hash, heading);
      await page.waitForLoadState('networkidle');
      const actions = await page.locator('[data-action]').count();
      const enabled = await page
        .locator('[data-action]:enabled')
        .evaluateAll((buttons) => buttons.map((b) => b.textContent));
      expect(enabled, `enabled actions on ${name}`).toEqual([]);
      if (['vm', 'admin-remotes', 'admin-users'].includes(name))
        expect(actions, `actions shown (disabled) on ${name}`).toBeGreaterThan(0);
      await screenshot(page, `auditor-${name}`);
    }
  });

  it('lists only the tenant’s own VMs, everywhere', async () => {
    const page = await openUi();
    await signIn(page, 'tenant', USERS.tenant);
    const own = [vms[0], vms.at(-1)].map((vm: Json) => vm.id).sort();
    await visit(page, '#/resources', 'Resources');
    await page.getByTestId('result-count').filter({ hasText: /^2$/ }).waitFor();
    const listed = await page
      .getByTestId('vm-row')
      .evaluateAll((rows) => rows.map((row) => row.getAttribute('data-vm-id')));
    expect(listed.sort()).toEqual(own);
    await screenshot(page, 'tenant-resources');

    await visit(page, '#/', 'Dashboard');
    await page.getByTestId('total-vms').filter({ hasText: /^2$/ }).waitFor();

    const foreign = vms[1];
    await page.goto(`${demo.manager.base}/#/resources/${foreign.remote}/${foreign.id}`);
    await page.getByText('This VM does not exist or you may not see it').waitFor();
    await screenshot(page, 'tenant-foreign-vm', [
      new RegExp(`^404 GET /api/v1/remotes/${foreign.remote}/vms/${foreign.id}$`),
    ]);
  });
});
