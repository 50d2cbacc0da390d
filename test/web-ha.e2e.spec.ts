import {
  cleanupTempDirs,
  startCluster,
  type ManagedProcess,
  type TestCluster,
} from '@debvisor/testing';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  launchChromium,
  requestApi,
  screenshotChecked,
  startBuiltManager,
  type Json,
} from './browser-harness';

/**
 * High availability in the web UI as users meet it: the built manager serving the built UI and a
 * three-node cluster of real agent processes (real etcd, sim hypervisor and storage) with HA on.
 * The admin protects a VM from its page, drains a node from the HA page and watches a killed node
 * be fenced and its protected VM come back elsewhere — on the HA page, the dashboard and the VM
 * page; an auditor sees the same with every HA action disabled.
 */
const SCREENSHOTS = resolve(__dirname, '../test-artifacts/web-ha');
const REMOTE = 'dc-ha';
const ADMIN = 'admin@local';
const password = () => `pw-${randomBytes(12).toString('base64url')}-A1`;
const ADMIN_PASSWORD = password();
const AUDITOR_PASSWORD = password();

describe('high availability in the web UI', () => {
  let manager: ManagedProcess;
  let base: string;
  let ca: string;
  let token: string;
  let cluster: TestCluster;
  let browser: Browser;
  let context: BrowserContext | undefined;
  /** A running VM of node-2, the node the last test kills. */
  let vm: Json;

  const api = (method: string, path: string, body?: unknown) =>
    requestApi({ base, caPem: ca }, token, method, path, body);

  async function ok(method: string, path: string, body?: unknown): Promise<Json> {
    const answer = await api(method, path, body);
    expect(answer.status, `${method} ${path}: ${JSON.stringify(answer.body)}`).toBeLessThan(300);
    return answer.body;
  }

  /** Polls until `check` answers something (not undefined), or fails with what it saw last. */
  async function until<T>(
    what: string,
    check: () => Promise<T | undefined>,
    timeoutMs = 60_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const result = await check();
      if (result !== undefined) return result;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async function openUi(
    user: string,
    secret: string,
    colorScheme: 'light' | 'dark' = 'light',
  ): Promise<Page> {
    await context?.close();
    context = await browser.newContext({
      locale: 'en-GB',
      viewport: { width: 1366, height: 768 },
      colorScheme,
    });
    context.setDefaultTimeout(60_000);
    const page = await context.newPage();
    await page.goto(`${base}/`);
    await page.getByLabel('Username').fill(user);
    await page.getByLabel('Password', { exact: true }).fill(secret);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByTestId('signed-in-user').waitFor({ timeout: 15_000 });
    return page;
  }

  async function visit(page: Page, hash: string, heading: string): Promise<void> {
    await page.goto(`${base}/${hash}`);
    await page.getByRole('heading', { level: 1, name: heading }).waitFor();
  }

  const screenshot = (page: Page, name: string, allowed: RegExp[] = []) =>
    screenshotChecked(page, join(SCREENSHOTS, `${name}.png`), allowed);

  /** The row of a node in the HA page's node table. */
  const nodeRow = (page: Page, node: string) =>
    page.getByTestId('ha-nodes').locator(`tr[data-node="${node}"]`);
  /** Waits until the HA page shows the node in this HA state. */
  const nodeIn = (page: Page, node: string, state: string, timeout = 60_000) =>
    page
      .getByTestId('ha-nodes')
      .locator(`tr[data-node="${node}"][data-state="${state}"]`)
      .waitFor({ timeout });

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    const started = await startBuiltManager(ADMIN_PASSWORD, {
      DEBVISOR_HA_POLL_INTERVAL_SECONDS: '1',
    });
    manager = started.process;
    base = started.base;
    ca = started.caPem;
    token = started.bootstrapToken;
    cluster = await startCluster({
      clusterId: REMOTE,
      nodes: 3,
      vmsPerNode: 2,
      trustedClientCaPem: started.clientCaPem,
      agentConfig: () => ({ ha: { tickMs: 250, coordinatorTtlSeconds: 3 } }),
    });
    const key = await cluster.createApiKey(['*'], { principal: 'manager@e2e' });
    await ok('POST', '/api/v1/remotes', {
      id: REMOTE,
      endpoints: cluster.agents.map((a) => a.endpoint),
      caCertPem: cluster.caPem,
      credentials: [{ name: 'admin', key }],
    });
    await ok('GET', '/api/v1/resources/refresh');
    const running: Json[] = (
      await ok('GET', `/api/v1/resources?remote=${REMOTE}&type=vm&status=running`)
    ).items;
    vm = running.find((v) => v.node === 'node-2');
    expect(vm, 'node-2 runs a VM').toBeTruthy();
    await ok('POST', '/api/v1/access/users', { username: 'auditor', password: AUDITOR_PASSWORD });
    await ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'user',
      principal: 'auditor@local',
      role: 'Audit',
    });
    // The cluster's coordinator is elected before the pages are looked at.
    await until('an HA coordinator', async () => {
      const ha = await ok('GET', `/api/v1/remotes/${REMOTE}/ha`);
      return ha.coordinator && ha.nodes.every((n: Json) => n.health) ? ha : undefined;
    });
    browser = await launchChromium(ca);
  }, 300_000);

  afterEach(async () => {
    await context?.close();
    context = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    await cluster?.stop();
    await manager?.stop();
    cleanupTempDirs();
  });

  it('protects a VM from its page and shows it protected there, on the HA page and on the dashboard', async () => {
    const page = await openUi(ADMIN, ADMIN_PASSWORD);
    await visit(page, `#/resources/${REMOTE}/${vm.id}`, vm.name);
    const section = page.getByTestId('vm-ha');
    await section.getByText('Not protected').waitFor();
    await section.getByLabel('Priority (0–1000, higher first)').fill('700');
    await section.getByLabel('Relocations per hour').fill('3');
    await section.getByRole('button', { name: 'Protect with HA' }).click();
    await section.getByTestId('vm-ha-state').filter({ hasText: 'Protected' }).waitFor();
    await section.getByRole('button', { name: 'Save HA policy' }).waitFor();
    const read = await ok('GET', `/api/v1/remotes/${REMOTE}/vms/${vm.id}/ha`);
    expect(read.ha.policy).toMatchObject({ priority: 700, maxRelocations: 3 });
    await screenshot(page, 'vm-ha-protected');

    await visit(page, '#/ha', 'High availability');
    const row = page.getByTestId('ha-vms').locator(`tr[data-vm="${vm.id}"]`);
    await row.waitFor();
    await until(
      'the HA page lists the VM by name with its policy',
      async () => {
        const text = (await row.textContent()) ?? '';
        return text.includes(vm.name) && text.includes('priority 700') ? text : undefined;
      },
      30_000,
    );
    await nodeIn(page, 'node-1', 'online');
    await screenshot(page, 'ha-page');

    await visit(page, '#/', 'Dashboard');
    const summary = page.getByTestId('ha-summary');
    await until('the dashboard counts the protected VM', async () =>
      (await summary.getByTestId('ha-protected').textContent()) === '1' ? true : undefined,
    );
    await screenshot(page, 'dashboard-ha');
  });

  it('drains a node from the HA page: the cluster moves its VMs away and the drain task succeeds', async () => {
    const page = await openUi(ADMIN, ADMIN_PASSWORD);
    await visit(page, '#/ha', 'High availability');
    const row = nodeRow(page, 'node-3');
    await row.getByRole('button', { name: 'Maintenance… node-3' }).click();
    const dialog = page.getByRole('dialog', { name: 'Maintenance of node-3' });
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain('live-migrates its VMs to other nodes');
    await screenshot(page, 'drain-confirm');
    await dialog.getByRole('button', { name: 'Drain the node' }).click();
    // The cluster live-migrates the node's VMs away; the followed task ends once none is left.
    await nodeIn(page, 'node-3', 'maintenance');
    const done = page.locator('[data-testid="followed-task"][data-state="succeeded"]');
    await done.waitFor({ timeout: 60_000 });
    await row.getByText(/no VM left on the node/).waitFor();
    await screenshot(page, 'node-maintenance');

    await row.getByRole('button', { name: 'End maintenance… node-3' }).click();
    await page
      .getByRole('dialog', { name: 'End the maintenance of node-3' })
      .getByRole('button', { name: 'Return to service' })
      .click();
    await nodeIn(page, 'node-3', 'online');
    await screenshot(page, 'maintenance-ended');
  });

  it('shows the auditor every HA action disabled, on the HA page and on the VM page', async () => {
    for (const scheme of ['light', 'dark'] as const) {
      const page = await openUi('auditor', AUDITOR_PASSWORD, scheme);
      await visit(page, '#/ha', 'High availability');
      await nodeIn(page, 'node-1', 'online');
      const ha = page.locator('main');
      expect(await ha.locator('[data-action]').count()).toBe(3);
      expect(
        await ha.locator('[data-action]:enabled').evaluateAll((b) => b.map((e) => e.textContent)),
      ).toEqual([]);
      expect(await ha.locator('[data-action]').first().getAttribute('title')).toBe(
        'Needs the node.maintenance privilege',
      );
      await screenshot(page, `auditor-ha-${scheme}`);

      await visit(page, `#/resources/${REMOTE}/${vm.id}`, vm.name);
      const section = page.getByTestId('vm-ha');
      await section.getByTestId('vm-ha-state').waitFor();
      expect(await section.locator('[data-action]').count()).toBe(2);
      expect(await section.locator('[data-action]:enabled').count()).toBe(0);
      expect(await section.getByLabel('Priority (0–1000, higher first)').isDisabled()).toBe(true);
      await screenshot(page, `auditor-vm-ha-${scheme}`);
    }
  });

  it("shows a killed node fenced and its protected VM running elsewhere, on the HA page and the VM's page", async () => {
    const page = await openUi(ADMIN, ADMIN_PASSWORD, 'dark');
    await visit(page, '#/ha', 'High availability');
    await cluster.agents.find((agent) => agent.nodeId === 'node-2')!.kill();
    await nodeIn(page, 'node-2', 'fenced', 90_000);
    const moved = await until(
      'the VM protected on another node',
      async () => {
        const read = await ok('GET', `/api/v1/remotes/${REMOTE}/vms/${vm.id}/ha`);
        return read.ha?.state === 'protected' && read.ha.node !== 'node-2' ? read : undefined;
      },
      90_000,
    );
    await page.getByTestId('ha-vms').getByText(moved.ha.node, { exact: true }).waitFor();
    // The summary (from the manager's last HA read, refreshed every 10 s) names the fenced node.
    await page
      .getByText(/node node-2 is fenced/)
      .first()
      .waitFor();
    await screenshot(page, 'ha-node-fenced');

    await visit(page, `#/resources/${REMOTE}/${vm.id}`, vm.name);
    await page.getByTestId('vm-ha-state').filter({ hasText: 'Protected' }).waitFor();
    expect(await page.getByTestId('vm-ha').textContent()).toContain(`${moved.ha.node}`);
    // The recovery is a task of the VM, with its journal.
    await page.getByRole('link', { name: 'ha.recovery' }).first().waitFor();
    await screenshot(page, 'vm-ha-recovered');

    await visit(page, '#/', 'Dashboard');
    await until('the dashboard counts the fenced node', async () =>
      (await page.getByTestId('ha-fenced-nodes').textContent()) === '1' ? true : undefined,
    );
    await screenshot(page, 'dashboard-ha-fenced');
  });
});
