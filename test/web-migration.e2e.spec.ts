import {
  cleanupTempDirs,
  startCluster,
  type ManagedProcess,
  type TestCluster,
} from '@debvisor/testing';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  launchChromium,
  requestApi,
  screenshotChecked,
  startBuiltManager,
  type Json,
} from './browser-harness';

/**
 * The migration wizard, the tasks pages and the audit log as a user meets them: the built manager
 * serving the built UI, two clusters of real agent processes (sim drivers) registered as remotes,
 * driven through Chromium. One VM moves from dc-east to dc-west; a second, slowed down by a
 * bandwidth limit, is cancelled mid-transfer and stays where it was.
 */
const ARTIFACTS = resolve(__dirname, '../test-artifacts');
const ADMIN = 'admin@local';
const ADMIN_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Pw1`;
const GiB = 1024 ** 3;

interface Vm {
  id: string;
  name: string;
  node: string;
  memoryBytes: number;
}

describe('the migration wizard, tasks and audit log of the web UI', () => {
  let manager: ManagedProcess;
  let base: string;
  let ca: string;
  let token: string;
  let east: TestCluster;
  let west: TestCluster;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  /** The VM moved to dc-west, and the one whose migration is cancelled. */
  let moved: Vm;
  let stayed: Vm;

  const api = (method: string, path: string, body?: unknown) =>
    requestApi({ base, caPem: ca }, token, method, path, body);

  async function register(cluster: TestCluster): Promise<void> {
    const key = await cluster.createApiKey(['*'], { principal: 'manager@e2e' });
    const answer = await api('POST', '/api/v1/remotes', {
      id: cluster.clusterId,
      endpoints: cluster.agents.map((a) => a.endpoint),
      caCertPem: cluster.caPem,
      credentials: [{ name: 'admin', key }],
    });
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
  }

  let paired: Promise<void> | undefined;
  /** Its disks mirrored to dc-west through real (simulated) RBD mirroring: what the cross-remote pre-flight proves. */
  async function mirrorToWest(vm: Vm): Promise<void> {
    await (paired ??= east.pairMirroring(west));
    const detail = (await api('GET', `/api/v1/remotes/dc-east/vms/${vm.id}`)).body;
    for (const disk of detail.disks)
      await east.mirrorImage(west, { pool: disk.pool, image: disk.image });
  }

  async function screenshot(name: string): Promise<void> {
    await screenshotChecked(page, join(ARTIFACTS, `web-${name}.png`));
  }

  const next = () => page.getByRole('button', { name: 'Next', exact: true }).click();
  const stepHeading = (name: string) => page.getByRole('heading', { level: 2, name }).waitFor();

  /** Steps 1-5 of the wizard for `vm` to dc-west / `targetNode`, with `options` filled in before the start. */
  async function wizardUpToStart(
    vm: Vm,
    targetNode: string,
    shots: boolean,
    options: (page: Page) => Promise<void> = async () => {},
  ): Promise<void> {
    await page.goto(`${base}/#/migrate/dc-east/${vm.id}`);
    await page.getByRole('heading', { level: 1, name: `Migrate ${vm.name}` }).waitFor();
    expect(await page.locator('.steps li[aria-current="step"]').textContent()).toContain('VM');
    await page.getByRole('table', { name: `Disks of ${vm.name}` }).waitFor();
    if (shots) await screenshot('migrate-vm');

    await next();
    await stepHeading('2. Target');
    await page.getByLabel('Target remote').selectOption('dc-west');
    await page.getByLabel('Target node').selectOption(targetNode);
    if (shots) await screenshot('migrate-target');

    await next();
    await stepHeading('3. Storage and network');
    expect(await page.getByLabel('Target pool for rbd').inputValue()).toBe('rbd');
    if (shots) await screenshot('migrate-maps');

    await next();
    await stepHeading('4. Pre-flight');
    expect(await page.getByRole('button', { name: 'Next', exact: true }).isDisabled()).toBe(true);
    await page.getByRole('button', { name: 'Run pre-flight checks' }).click();
    const checks = page.getByTestId('preflight-check');
    await checks.first().waitFor({ timeout: 30_000 });
    const results = await checks.evaluateAll((rows) =>
      rows.map((row) => `${row.getAttribute('data-result')}: ${row.textContent}`),
    );
    expect(results.length).toBeGreaterThan(2);
    for (const result of results) expect(result).toMatch(/^(pass|warn): /);
    if (shots) await screenshot('migrate-preflight');

    await next();
    await stepHeading('5. Options');
    expect(await page.getByLabel('Online (live) migration').isChecked()).toBe(true);
    expect(await page.getByLabel('Mode').inputValue()).toBe('precopy');
    await options(page);
    if (shots) await screenshot('migrate-options');
    // Back and forth keeps what was entered.
    await page.getByRole('button', { name: 'Back', exact: true }).click();
    await stepHeading('4. Pre-flight');
    await page.getByRole('button', { name: 'Back', exact: true }).click();
    await page.getByRole('button', { name: 'Back', exact: true }).click();
    expect(await page.getByLabel('Target remote').inputValue()).toBe('dc-west');
    expect(await page.getByLabel('Target node').inputValue()).toBe(targetNode);
    await next();
    await next();
    expect(await page.getByTestId('preflight-check').count()).toBe(results.length);
    await next();
    await stepHeading('5. Options');
  }

  async function migrationTasks(vm: Vm): Promise<Json[]> {
    return (await api('GET', `/api/v1/tasks?type=vm.migrate&vm=${vm.id}`)).body.items;
  }

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const started = await startBuiltManager(ADMIN_PASSWORD);
    manager = started.process;
    base = started.base;
    ca = started.caPem;
    token = started.bootstrapToken;
    [east, west] = await Promise.all([
      startCluster({
        clusterId: 'dc-east',
        nodes: 3,
        vmsPerNode: 3,
        trustedClientCaPem: started.clientCaPem,
      }),
      startCluster({
        clusterId: 'dc-west',
        nodes: 2,
        vmsPerNode: 2,
        trustedClientCaPem: started.clientCaPem,
      }),
    ]);
    await register(east);
    await register(west);
    await api('GET', '/api/v1/resources/refresh');

    // Both sim clusters seed names from the same list: only VMs whose name (and disk images) dc-west does not have can move there.
    const westNames = new Set(
      (await api('GET', '/api/v1/resources?remote=dc-west&type=vm')).body.items.map(
        (vm: Vm) => vm.name,
      ),
    );
    const running: Vm[] = (
      await api('GET', '/api/v1/resources?remote=dc-east&type=vm&status=running')
    ).body.items.filter((vm: Vm) => !westNames.has(vm.name));
    const bySize = [...running].sort((a, b) => a.memoryBytes - b.memoryBytes);
    moved = bySize[0];
    // At 1 MiB/s a guest of 4 GiB or more needs over a minute even at the sim's time scale: time enough to cancel.
    stayed = bySize.find((vm) => vm.memoryBytes >= 4 * GiB && vm.id !== moved.id)!;
    expect(moved && stayed, 'dc-east has a small and a large running VM').toBeTruthy();
    await mirrorToWest(moved);
    await mirrorToWest(stayed);

    browser = await launchChromium(ca);
    context = await browser.newContext({
      locale: 'en-GB',
      viewport: { width: 1366, height: 768 },
      acceptDownloads: true,
    });
    page = await context.newPage();
    await page.goto(`${base}/`);
    await page.getByLabel('Username').fill(ADMIN);
    await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByTestId('signed-in-user').waitFor({ timeout: 15_000 });
  }, 240_000);

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await Promise.all([east?.stop(), west?.stop()]);
    await manager?.stop();
    cleanupTempDirs();
  });

  it('moves a running VM of dc-east to dc-west through the wizard and says where it runs now', async () => {
    await wizardUpToStart(moved, 'node-1', true, async (p) => {
      // nothing measured between the two remotes yet, and no limit: no estimate to give
      expect(await p.getByTestId('transfer-estimate').textContent()).toMatch(
        /^Estimated transfer time: No estimate yet: no live migration between dc-east and dc-west has been measured/,
      );
    });
    await page.getByRole('button', { name: 'Start migration' }).click();
    const result = page.getByTestId('migration-result');
    await result.waitFor({ timeout: 60_000 });
    await screenshot('migrate-result');
    expect(await result.getAttribute('data-state'), (await result.textContent()) ?? '').toBe(
      'succeeded',
    );
    expect(await result.textContent()).toContain('node-1 of dc-west');
    expect(await page.locator('.steps li[aria-current="step"]').textContent()).toContain('Result');
    expect(await page.getByTestId('migration-phase').textContent()).toBe('Completed');
    expect(await page.getByTestId('migration-journal').textContent()).toContain('completed');
    expect(
      await result.getByRole('link', { name: `Open ${moved.name}` }).getAttribute('href'),
    ).toBe(`#/resources/dc-west/${moved.id}`);

    const atWest = await api('GET', `/api/v1/remotes/dc-west/vms/${moved.id}`);
    expect(atWest.status).toBe(200);
    expect(atWest.body).toMatchObject({ remote: 'dc-west', node: 'node-1', status: 'running' });
    expect((await api('GET', `/api/v1/remotes/dc-east/vms/${moved.id}`)).status).toBe(404);
  });

  it('cancels a slow migration from its live progress: the task ends cancelled and the VM stays at its source', async () => {
    await wizardUpToStart(stayed, 'node-2', false, async (p) => {
      await p.getByLabel('Bandwidth limit (MiB/s)').fill('1');
      await p.getByLabel('Completion timeout (s per GiB)').fill('0');
      await p.getByLabel('Downtime limit (ms)').fill('500');
      // the estimate follows the limit as typed: 1 MiB/s is below the rate the first move measured
      const estimate = p.getByTestId('transfer-estimate');
      expect(await estimate.textContent()).toMatch(
        /^Estimated transfer time: About .+ to send [\d.]+ GiB at 1\.0 MiB\/s \(the bandwidth limit above\)/,
      );
      await estimate.scrollIntoViewIfNeeded();
      await screenshot('migrate-estimate');
    });
    await page.getByRole('button', { name: 'Start migration' }).click();
    const progress = page.getByTestId('migration-progress');
    await progress.waitFor({ timeout: 30_000 });
    // Live figures once the transfer streams: memory sent, and the pace the 1 MiB/s limit allows.
    await page.waitForFunction(
      () => {
        const transferred =
          document.querySelector('[data-testid="migration-transferred"]')?.textContent ?? '—';
        return transferred !== '—' && !transferred.startsWith('0 ');
      },
      undefined,
      { timeout: 30_000 },
    );
    expect(await page.getByTestId('migration-phase').textContent()).toBe('Transfer');
    expect(await page.getByTestId('migration-remaining').textContent()).toMatch(/\d (MiB|GiB)$/);
    expect(await page.getByTestId('migration-dirty-rate').textContent()).toMatch(/\/s$/);
    expect(await page.getByTestId('migration-eta').textContent()).toMatch(/\S/);
    const task = (await migrationTasks(stayed))[0];
    expect(task).toMatchObject({ state: 'running' });
    const detail = (await api('GET', `/api/v1/tasks/${task.id}`)).body;
    expect(detail.migration.options).toMatchObject({
      bandwidthLimitBytes: 1024 * 1024,
      completionTimeoutSecondsPerGib: 0,
      downtimeLimitMs: 500,
      transport: 'tunnel',
    });
    await screenshot('migrate-progress');

    await page.getByRole('button', { name: 'Cancel migration' }).click();
    const dialog = page.getByRole('dialog', { name: 'Cancel the migration?' });
    await dialog.waitFor();
    await screenshot('migrate-cancel-confirm');
    await dialog.getByRole('button', { name: 'Cancel migration' }).click();
    const result = page.getByTestId('migration-result');
    await result.waitFor({ timeout: 60_000 });
    expect(await result.getAttribute('data-state')).toBe('cancelled');
    expect(await result.textContent()).toMatch(/cancelled by admin@local/);
    expect(await result.textContent()).toContain(`stays at dc-east / ${stayed.node}`);
    await screenshot('migrate-cancelled');

    const atEast = await api('GET', `/api/v1/remotes/dc-east/vms/${stayed.id}`);
    expect(atEast.status).toBe(200);
    expect(atEast.body).toMatchObject({ remote: 'dc-east', node: stayed.node, status: 'running' });
    expect((await api('GET', `/api/v1/remotes/dc-west/vms/${stayed.id}`)).status).toBe(404);
  });

  it('lists both migrations on the Tasks page, and a task page shows its log and migration journal', async () => {
    const [done] = await migrationTasks(moved);
    const [cancelled] = await migrationTasks(stayed);
    await page.getByRole('link', { name: 'Tasks', exact: true }).click();
    await page.getByRole('heading', { level: 1, name: 'Tasks' }).waitFor();
    await page.getByLabel('Type').selectOption('vm.migrate');
    const row = (id: string) => page.locator(`[data-testid="task-row"][data-task-id="${id}"]`);
    await row(done.id).waitFor();
    expect(await row(done.id).getAttribute('data-state')).toBe('succeeded');
    expect(await row(cancelled.id).getAttribute('data-state')).toBe('cancelled');
    expect(await page.getByTestId('task-page').textContent()).toBe('1–2 of 2');
    await page.getByLabel('State').selectOption('cancelled');
    await page
      .locator(`[data-testid="task-row"][data-task-id="${done.id}"]`)
      .waitFor({ state: 'detached' });
    expect(await page.getByTestId('task-row').count()).toBe(1);
    await page.getByLabel('State').selectOption('');
    await row(done.id).waitFor();
    await screenshot('tasks');

    await row(done.id).getByRole('link', { name: 'vm.migrate' }).click();
    await page.getByRole('heading', { level: 1, name: 'Task: vm.migrate' }).waitFor();
    const log = page.getByTestId('task-log');
    await log.waitFor();
    const lines = await log.locator('li').allTextContents();
    expect(lines[0]).toContain(`queued by ${ADMIN}`);
    expect(lines.at(-1)).toMatch(/succeeded|node-1/);
    expect(await page.getByTestId('migration-figures').count()).toBe(1);
    // The task names the VM by its name and where it runs now, links there, and says where it came from.
    expect(
      await page
        .getByRole('link', { name: `${moved.name} on dc-west / node-1` })
        .getAttribute('href'),
    ).toBe(`#/resources/dc-west/${moved.id}`);
    expect(await page.getByTestId('task-target').textContent()).toContain('(moved from dc-east)');
    // The log leaves out the journal's lines (shown once, in the migration's journal).
    expect(lines.filter((line) => /\[(preflight|prepare|transfer|completed)\]/.test(line))).toEqual(
      [],
    );
    // A finished task offers no cancel.
    expect(await page.getByRole('button', { name: 'Cancel migration' }).count()).toBe(0);
    await screenshot('task');
  });

  it('shows the migration entries in the audit log, with details, and exports them as JSON lines', async () => {
    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('heading', { level: 1, name: 'Audit log' }).waitFor();
    await page.getByTestId('audit-row').first().waitFor();
    await page.getByLabel('Action').fill('vm.migrate');
    await page.getByLabel('From').fill('2000-01-01T00:00');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    // Until the filtered page arrives the table is replaced by "Loading…": wait for rows, all of them migrations.
    await page.waitForFunction(() => {
      const shown = [...document.querySelectorAll('[data-testid="audit-row"]')];
      return (
        shown.length > 0 &&
        shown.every((row) => row.getAttribute('data-audit-action')?.startsWith('vm.migrate'))
      );
    });
    const rows = page.getByTestId('audit-row');
    const actions = await rows.evaluateAll((elements) =>
      elements.map(
        (e) => `${e.getAttribute('data-audit-action')} ${e.querySelector('.target')?.textContent}`,
      ),
    );
    for (const vm of [moved, stayed]) {
      expect(actions).toContain(`vm.migrate /remotes/dc-east/vms/${vm.id}`);
      expect(actions).toContain(`vm.migrate.preflight /remotes/dc-east/vms/${vm.id}`);
    }
    await rows.first().getByRole('button', { name: /Show/ }).click();
    const details = page.locator('tr.audit-details');
    await details.waitFor();
    expect(await details.textContent()).toMatch(/[0-9a-f]{64}/);
    await screenshot('audit');

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export (JSON lines)' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('debvisor-audit.jsonl');
    const text = readFileSync((await download.path())!, 'utf8');
    const entries = text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Json);
    expect(entries.length).toBe(actions.length);
    for (const entry of entries) expect(entry.action).toMatch(/^vm\.migrate/);
    expect(entries.map((e) => e.target)).toContain(`/remotes/dc-east/vms/${stayed.id}`);
    expect(entries[0].seq).toBeLessThan(entries.at(-1).seq);
    expect(entries[1].prevHash).toMatch(/^[0-9a-f]{64}$/);
  });
});
