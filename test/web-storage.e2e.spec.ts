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
 * Snapshots on the VM page and the Replication page as users meet them: the built manager serving
 * the built UI, two clusters of real agent processes (sim hypervisor and storage drivers, whose
 * simulated rbd-mirror replays between them) registered as remotes, driven through Chromium. The
 * admin takes a snapshot and reads what a rollback would lose; the two remotes' pools are paired
 * and one VM mirrored, and the Replication page shows the pair and the VM's RPO; the failover
 * dialog shows the data at risk before it can be confirmed; an auditor sees every action disabled.
 */
const SCREENSHOTS = resolve(__dirname, '../test-artifacts/web-storage');
const ADMIN = 'admin@local';
const password = () => `pw-${randomBytes(12).toString('base64url')}-A1`;
const ADMIN_PASSWORD = password();
const AUDITOR_PASSWORD = password();
const TENANT_PASSWORD = password();

describe('snapshots and replication in the web UI', () => {
  let manager: ManagedProcess;
  let base: string;
  let ca: string;
  let token: string;
  let east: TestCluster;
  let west: TestCluster;
  let browser: Browser;
  let context: BrowserContext | undefined;
  /** A running VM of dc-east (snapshots); one mirrored to dc-west; one mirrored with an RPO target of a minute, soon over it. */
  let vm: Json;
  let mirrored: Json;
  let late: Json;

  const api = (method: string, path: string, body?: unknown) =>
    requestApi({ base, caPem: ca }, token, method, path, body);

  async function ok(method: string, path: string, body?: unknown): Promise<Json> {
    const answer = await api(method, path, body);
    // A 500 names a trace id: the manager's log lines with it say what went wrong.
    const traceId: string | undefined = answer.body?.error?.traceId;
    const logged = traceId
      ? manager
          .output()
          .split('\n')
          .filter((line) => line.includes(traceId))
          .join('\n')
      : '';
    expect(
      answer.status,
      `${method} ${path}: ${JSON.stringify(answer.body)}\n${logged}`,
    ).toBeLessThan(300);
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

  async function taskSucceeds(taskId: string): Promise<void> {
    const task = await until(`task ${taskId} ends`, async () => {
      const t = (await api('GET', `/api/v1/tasks/${taskId}`)).body;
      return ['succeeded', 'failed', 'cancelled'].includes(t.state) ? t : undefined;
    });
    expect(task.state, JSON.stringify(task)).toBe('succeeded');
  }

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
    // Two cores shared with other test runs: give every wait for the page a minute, not the default 30 s.
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

  /** `allowed`: what the test provokes on purpose since the last screenshot. */
  const screenshot = (page: Page, name: string, allowed: RegExp[] = []) =>
    screenshotChecked(page, join(SCREENSHOTS, `${name}.png`), allowed);

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    const started = await startBuiltManager(ADMIN_PASSWORD);
    manager = started.process;
    base = started.base;
    ca = started.caPem;
    token = started.bootstrapToken;
    [east, west] = await Promise.all([
      startCluster({
        clusterId: 'dc-east',
        nodes: 2,
        vmsPerNode: 3,
        trustedClientCaPem: started.clientCaPem,
      }),
      startCluster({
        clusterId: 'dc-west',
        nodes: 1,
        vmsPerNode: 1,
        trustedClientCaPem: started.clientCaPem,
      }),
    ]);
    await register(east);
    await register(west);
    await ok('GET', '/api/v1/resources/refresh');

    // Both sim clusters seed names (and image names) from one list: only a VM whose disks dc-west does not have can be mirrored there.
    const westNames = new Set(
      (await ok('GET', '/api/v1/resources?remote=dc-west&type=vm')).items.map((v: Json) => v.name),
    );
    const running: Json[] = (
      await ok('GET', '/api/v1/resources?remote=dc-east&type=vm&status=running')
    ).items;
    vm = running[0];
    mirrored = running.find((v) => !westNames.has(v.name) && v.id !== vm.id);
    late = (await ok('GET', '/api/v1/resources?remote=dc-east&type=vm')).items.find(
      (v: Json) => !westNames.has(v.name) && ![vm.id, mirrored?.id].includes(v.id),
    );
    expect(
      vm && mirrored && late,
      'dc-east has two running VMs and another, two of them mirrorable to dc-west',
    ).toBeTruthy();

    await ok('POST', '/api/v1/access/users', { username: 'auditor', password: AUDITOR_PASSWORD });
    await ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'user',
      principal: 'auditor@local',
      role: 'Audit',
    });
    // A tenant who owns the snapshotted VM, not the mirrored one.
    await ok('POST', '/api/v1/access/users', { username: 'tenant', password: TENANT_PASSWORD });
    await ok('POST', '/api/v1/access/groups', { id: 'tenant-red', tenant: true });
    await ok('PUT', '/api/v1/access/groups/tenant-red/members', { users: ['tenant@local'] });
    await ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'group',
      principal: 'tenant-red',
      role: 'Manage',
    });
    await ok('PUT', `/api/v1/access/vm-owners/${vm.id}`, { tenantGroup: 'tenant-red' });
    browser = await launchChromium(ca);
  }, 300_000);

  afterEach(async () => {
    await context?.close();
    context = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    await Promise.all([east?.stop(), west?.stop()]);
    await manager?.stop();
    cleanupTempDirs();
  });

  it('takes a snapshot from the VM page and lists it with its time, consistency and maker', async () => {
    const page = await openUi(ADMIN, ADMIN_PASSWORD);
    await visit(page, `#/resources/dc-east/${vm.id}`, vm.name);
    const section = page.getByTestId('vm-snapshots');
    await section.getByText('No snapshots yet.').waitFor();
    await section.getByLabel('Snapshot name').fill('before-upgrade');
    await section.getByRole('button', { name: 'Take snapshot' }).click();
    await section
      .locator('[data-testid="followed-task"][data-state="succeeded"]')
      .waitFor({ timeout: 60_000 });
    const row = section.locator('[data-testid="snapshot-row"][data-snapshot="before-upgrade"]');
    await row.waitFor();
    expect(await row.textContent()).toMatch(/(application|crash)-consistent/);
    expect(await row.textContent()).toContain(`by hand (${ADMIN})`);
    // The time in the user's locale, the UTC time on hover.
    expect(await row.locator('time').getAttribute('title')).toMatch(
      /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/,
    );
    const listed = await ok('GET', `/api/v1/remotes/dc-east/vms/${vm.id}/snapshots`);
    expect(listed.items.map((s: Json) => s.name)).toEqual(['before-upgrade']);
    expect(await section.getByTestId('snapshot-quota').textContent()).toBe(
      `1 of your ${listed.quota.limit} snapshots of this VM used.`,
    );

    // A daily schedule, kept 7, from the presets.
    await section.getByLabel('Schedule', { exact: true }).selectOption('daily');
    await section.getByRole('button', { name: 'Add schedule' }).click();
    const schedule = section.locator('[data-testid="schedule-row"][data-schedule="daily"]');
    await schedule.waitFor();
    expect(await schedule.textContent()).toContain('every day, keeps 7');
    await screenshot(page, 'vm-snapshots');
  });

  it('names what a rollback loses, and stops a running VM first when asked', async () => {
    const page = await openUi(ADMIN, ADMIN_PASSWORD);
    await visit(page, `#/resources/dc-east/${vm.id}`, vm.name);
    await page.getByRole('button', { name: 'Roll back to before-upgrade' }).click();
    const dialog = page.getByRole('dialog', { name: `Roll ${vm.name} back to before-upgrade?` });
    await dialog.waitFor();
    const loss = dialog.getByTestId('rollback-loss');
    expect(await loss.textContent()).toMatch(
      /Everything written to (its disk|all \d+ of its disks) since .+ UTC.+ is lost/,
    );
    expect(await loss.textContent()).toContain('refused unless it is stopped');
    const confirm = dialog.getByRole('button', { name: 'Roll back', exact: true });
    expect(await confirm.isDisabled()).toBe(true);
    await dialog.getByLabel('Stop the VM first').check();
    expect(await loss.textContent()).toContain(`${vm.name} is running: it will be stopped first`);
    expect(await confirm.isEnabled()).toBe(true);
    await screenshot(page, 'rollback-confirm');
    // Confirmed: the task stops the VM and rolls its disks back.
    await confirm.click();
    await dialog.waitFor({ state: 'detached' });
    const followed = page.getByTestId('vm-snapshots').getByTestId('followed-task');
    await page.waitForFunction(
      () =>
        ['succeeded', 'failed'].includes(
          document
            .querySelector('[data-testid="vm-snapshots"] [data-testid="followed-task"]')
            ?.getAttribute('data-state') ?? '',
        ),
      undefined,
      { timeout: 90_000 },
    );
    expect(await followed.getAttribute('data-state'), (await followed.textContent()) ?? '').toBe(
      'succeeded',
    );
    expect(await followed.textContent()).toContain('Rollback to before-upgrade');
    await page
      .getByTestId('vm-status')
      .filter({ hasText: /^stopped$/ })
      .waitFor();
  });

  it('shows the auditor the snapshots with every action disabled', async () => {
    for (const scheme of ['light', 'dark'] as const) {
      const page = await openUi('auditor', AUDITOR_PASSWORD, scheme);
      await visit(page, `#/resources/dc-east/${vm.id}`, vm.name);
      await page.locator('[data-testid="snapshot-row"][data-snapshot="before-upgrade"]').waitFor();
      await page.waitForLoadState('networkidle');
      const section = page.getByTestId('vm-snapshots');
      expect(await section.locator('[data-action]').count()).toBeGreaterThan(3);
      expect(
        await page.locator('[data-action]:enabled').evaluateAll((b) => b.map((e) => e.textContent)),
      ).toEqual([]);
      expect(await page.getByRole('button', { name: 'Take snapshot' }).getAttribute('title')).toBe(
        'Needs the vm.snapshot privilege',
      );
      await screenshot(page, `auditor-vm-snapshots-${scheme}`);
    }
  });

  describe('with dc-east and dc-west paired and one VM mirrored', () => {
    beforeAll(async () => {
      const pair = await ok('POST', '/api/v1/replication/pairs', {
        remoteA: 'dc-east',
        poolA: 'rbd',
        remoteB: 'dc-west',
        poolB: 'rbd',
      });
      await taskSucceeds(pair.taskId);
      // Its mirror snapshots come every hour: its RPO passes its target of a minute a minute from now.
      const lateEnabled = await ok('POST', `/api/v1/remotes/dc-east/vms/${late.id}/replication`, {
        targetRemote: 'dc-west',
        scheduleInterval: '1h',
        rpoTargetSeconds: 60,
      });
      await taskSucceeds(lateEnabled.taskId);
      const enabled = await ok('POST', `/api/v1/remotes/dc-east/vms/${mirrored.id}/replication`, {
        targetRemote: 'dc-west',
        rpoTargetSeconds: 900,
      });
      await taskSucceeds(enabled.taskId);
      await until('the mirrored VM has an RPO', async () => {
        const status = (await api('GET', `/api/v1/remotes/dc-east/vms/${mirrored.id}/replication`))
          .body;
        return status.rpoSeconds === null ? undefined : status;
      });
    }, 180_000);

    it('shows the pair with its pools’ health and the mirrored VMs with their RPO against their target, light and dark', async () => {
      for (const scheme of ['light', 'dark'] as const) {
        const page = await openUi(ADMIN, ADMIN_PASSWORD, scheme);
        await page.getByRole('link', { name: 'Replication', exact: true }).click();
        await page.getByRole('heading', { level: 1, name: 'Replication' }).waitFor();
        const pair = page.locator('[data-testid="pair-row"][data-pair="dc-east/rbd-dc-west/rbd"]');
        await pair.waitFor();
        expect(await pair.getAttribute('data-state')).toBe('paired');
        expect(await pair.textContent()).toMatch(/OK|WARNING|ERROR|UNKNOWN/);
        const row = page.locator(`[data-testid="replication-row"][data-vm="${mirrored.id}"]`);
        await row.waitFor();
        expect(await row.getByTestId('dr-state').textContent()).toContain(
          'primary at dc-east, secondary at dc-west',
        );
        // The RPO in words against its 15 min target (an RPO is known: it was read in beforeAll).
        await row
          .locator('[data-testid="rpo"]')
          .filter({ hasText: /(within its|over its) 15 min target/ })
          .waitFor();
        expect(await row.textContent()).toContain('dc-east/rbd → dc-west/rbd');
        // The VM over its RPO target says so in words (the row is marked too), as its RPO grows between polls.
        const over = page.locator(
          `[data-testid="replication-row"][data-vm="${late.id}"][data-rpo="over"]`,
        );
        await over.waitFor({ timeout: 150_000 });
        expect(await over.getByTestId('rpo').textContent()).toMatch(
          /^Over target: \d+ min( \d+ s)?: over its 1 min target/,
        );
        await row.getByRole('button', { name: `Details of ${mirrored.name}` }).click();
        await page.getByTestId('image-row').first().waitFor({ timeout: 30_000 });
        expect(await page.getByTestId('image-row').first().textContent()).toMatch(
          /dc-east: .*dc-west: /,
        );
        await screenshot(page, `replication-${scheme}`);
      }
    });

    it('shows a mirrored VM’s DR state and RPO on its page, and offers the remotes to pair', async () => {
      const page = await openUi(ADMIN, ADMIN_PASSWORD);
      await visit(page, `#/resources/dc-east/${mirrored.id}`, mirrored.name);
      const section = page.getByTestId('vm-replication');
      await section.getByText('primary at dc-east, secondary at dc-west').waitFor();
      expect(await section.textContent()).toMatch(/within its 15 min target/);
      await screenshot(page, 'vm-replication');

      await visit(page, '#/replication', 'Replication');
      await page.getByRole('button', { name: 'Pair remotes…' }).click();
      const form = page.getByRole('form', { name: 'Pair two remotes' });
      await form.waitFor();
      expect(await form.getByLabel('Remote A').locator('option').allTextContents()).toEqual([
        'dc-east',
        'dc-west',
      ]);
      expect(await form.getByLabel('Remote B').inputValue()).toBe('dc-west');
      // The same pools again are refused with the manager's reason.
      await form.getByRole('button', { name: 'Pair', exact: true }).click();
      await form.getByRole('alert').filter({ hasText: 'paired already' }).waitFor();
      await screenshot(page, 'pair-form', [/^409 POST \/api\/v1\/replication\/pairs$/]);
    });

    it('shows the data at risk in the failover dialog before it can be confirmed', async () => {
      const page = await openUi(ADMIN, ADMIN_PASSWORD);
      await visit(page, '#/replication', 'Replication');
      const row = page.locator(`[data-testid="replication-row"][data-vm="${mirrored.id}"]`);
      await row.getByRole('button', { name: `Details of ${mirrored.name}` }).click();
      await page.getByRole('button', { name: 'Fail over to dc-west…' }).click();
      const dialog = page.getByRole('dialog', { name: `Fail ${mirrored.name} over to dc-west?` });
      await dialog.waitFor();
      const risk = dialog.getByTestId('data-at-risk');
      await risk.waitFor({ timeout: 30_000 });
      expect(await dialog.getByTestId('failover-rpo').textContent()).toMatch(/^\d.* of writes$/);
      expect(await risk.textContent()).toContain('is lost');
      const confirm = dialog.getByRole('button', { name: 'Fail over', exact: true });
      // Nothing ticked: no failover yet.
      expect(await confirm.isDisabled()).toBe(true);
      // dc-east answers: fencing is offered and chosen; declaring it down needs a reason and its own confirmation.
      expect(await dialog.getByLabel(/^Fence dc-east/).isChecked()).toBe(true);
      await dialog.getByLabel('Declare the source site dc-east down').check();
      await dialog.getByLabel(/^I accept losing/).check();
      expect(await confirm.isDisabled()).toBe(true);
      await dialog.getByLabel('Reason (kept in the audit log)').fill('fire in dc-east');
      await dialog.getByLabel(/^I confirm dc-east is down/).check();
      expect(await confirm.isEnabled()).toBe(true);
      await screenshot(page, 'failover-confirm');
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      await dialog.waitFor({ state: 'detached' });
      // Nothing was failed over.
      expect(
        (await ok('GET', `/api/v1/remotes/dc-east/vms/${mirrored.id}/replication`)).primaryRemote,
      ).toBe('dc-east');
    });

    it('shows the auditor the replication page with every action disabled', async () => {
      for (const scheme of ['light', 'dark'] as const) {
        const page = await openUi('auditor', AUDITOR_PASSWORD, scheme);
        await visit(page, '#/replication', 'Replication');
        const row = page.locator(`[data-testid="replication-row"][data-vm="${mirrored.id}"]`);
        await row.getByRole('button', { name: `Details of ${mirrored.name}` }).click();
        await page.getByRole('group', { name: `DR actions for ${mirrored.name}` }).waitFor();
        await page.waitForLoadState('networkidle');
        expect(await page.locator('[data-action]').count()).toBeGreaterThanOrEqual(5);
        expect(
          await page
            .locator('[data-action]:enabled')
            .evaluateAll((b) => b.map((e) => e.textContent)),
        ).toEqual([]);
        expect(
          await page.getByRole('button', { name: 'Fail over to dc-west…' }).getAttribute('title'),
        ).toBe('Needs the vm.failover privilege');
        await screenshot(page, `auditor-replication-${scheme}`);
      }
    });

    it('shows a tenant only its own VMs on the replication page', async () => {
      const page = await openUi('tenant', TENANT_PASSWORD);
      await visit(page, '#/replication', 'Replication');
      await page.getByText('No VM you may see is mirrored yet.', { exact: false }).waitFor();
      expect(await page.getByTestId('replication-row').count()).toBe(0);
      // The admin sees the mirrored VM on the same page.
      expect(
        (await ok('GET', '/api/v1/replication/vms')).items.map((row: Json) => row.vm).sort(),
      ).toEqual([mirrored.id, late.id].sort());
      await screenshot(page, 'tenant-replication');
    });
  });
});
