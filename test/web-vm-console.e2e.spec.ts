import {
  buildTinyGuest,
  cleanupTempDirs,
  startCluster,
  tempDir,
  writeQemuVm,
  type TestCluster,
  type TestVmSpec,
} from '@debvisor/testing';
import { randomBytes, randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { request } from 'node:https';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  launchChromium,
  screenshotChecked,
  startBuiltManager,
  type BuiltManager,
  type Json,
} from './browser-harness';

/**
 * VM consoles end to end: the built manager and UI, a real agent with the qemu driver running the
 * tiny guest under TCG (booted from the host's bzImage so that its text shows on the VGA screen),
 * Chromium showing the console through noVNC, and the console WebSocket driven directly to prove
 * what it refuses: reused, expired, another user's and another VM's tickets, a foreign origin, API
 * tokens, tenants on foreign VMs, and a console whose login session ends.
 */
const ARTIFACTS = resolve(__dirname, '../test-artifacts');
const ADMIN = 'admin@local';
const ADMIN_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Pw1`;
const BOB_PASSWORD = `bob-${randomBytes(12).toString('base64url')}-Pw2`;
const AUDITOR_PASSWORD = `aud-${randomBytes(12).toString('base64url')}-Pw3`;
const TENANT_PASSWORD = `ten-${randomBytes(12).toString('base64url')}-Pw4`;
const REMOTE = 'con-east';
const PROTOCOL = 'debvisor-console.v1';
const MiB = 1024 ** 2;

/** A tiny guest whose console (/dev/console, the last console=) is the VGA screen. */
function guest(name: string): TestVmSpec {
  return {
    uuid: randomUUID(),
    name,
    vcpus: 1,
    memoryBytes: 128 * MiB,
    disks: [],
    nics: [],
    cpuModel: 'x86-64-v2',
    hugepages: false,
    tenant: '',
    labels: {
      'qemu-kernel': 'vmlinuz',
      'qemu-initrd': 'initrd.cpio',
      'qemu-append': 'console=ttyS0 console=tty0 quiet nokaslr panic=-1 rdinit=/init dirty_mib_s=0',
    },
  };
}

const shown = guest('console-guest');
const stopped = guest('tenant-guest');

/**
 * The host's newest bzImage: the tiny guest's own kernel is the unpacked vmlinux booted through
 * PVH, which sets up no VGA text console; booted as a bzImage the same kernel prints on the screen.
 */
function hostBzImage(): string {
  const kernels = readdirSync('/boot')
    .filter((name) => /^vmlinuz-/.test(name))
    .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  if (kernels.length === 0)
    throw new Error('no /boot/vmlinuz-*: install the Debian package linux-image-amd64');
  return join('/boot', kernels[kernels.length - 1]!);
}

interface Session {
  cookie: string;
  csrf: string;
}

describe('VM consoles through the manager', () => {
  let built: BuiltManager;
  let cluster: TestCluster;
  let browser: Browser;
  let context: BrowserContext | undefined;

  /** An HTTPS request with a session cookie (and its CSRF token for writes); answers status, headers and body. */
  function call(
    method: string,
    path: string,
    options: { session?: Session; token?: string; body?: unknown } = {},
  ): Promise<{
    status: number;
    headers: Record<string, string | string[] | undefined>;
    body: Json;
  }> {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    return new Promise((resolveAnswer, reject) => {
      const req = request(
        `${built.base}${path}`,
        {
          method,
          ca: built.caPem,
          timeout: 60_000,
          headers: {
            ...(payload ? { 'content-type': 'application/json' } : {}),
            ...(options.session
              ? { cookie: options.session.cookie, 'x-csrf-token': options.session.csrf }
              : {}),
            ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () =>
            resolveAnswer({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body:
                text && /json/.test(res.headers['content-type'] ?? '') ? JSON.parse(text) : text,
            }),
          );
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in time`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  async function login(username: string, password: string): Promise<Session> {
    const answer = await call('POST', '/api/v1/auth/login', { body: { username, password } });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    const cookies = ([] as string[]).concat(answer.headers['set-cookie'] ?? []);
    const session = cookies.find((c) => c.startsWith('debvisor_session='));
    expect(session).toBeDefined();
    return { cookie: session!.split(';')[0]!, csrf: answer.body.csrfToken as string };
  }

  async function ticket(session: Session, vmid: string): Promise<Json> {
    const answer = await call('POST', `/api/v1/remotes/${REMOTE}/vms/${vmid}/console/ticket`, {
      session,
    });
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    return answer.body;
  }

  type Opened =
    | { kind: 'open'; socket: WebSocket; firstBytes: Buffer }
    | { kind: 'refused'; status: number; body: Json };

  /** Opens the console WebSocket of `vmid` with `secret`; answers the RFB greeting or the refusal. */
  function openConsole(
    vmid: string,
    secret: string,
    options: { session?: Session; origin?: string } = {},
  ): Promise<Opened> {
    return new Promise((resolveOpened, reject) => {
      const socket = new WebSocket(
        `${built.base.replace('https:', 'wss:')}/api/v1/remotes/${REMOTE}/vms/${vmid}/console/ws`,
        [PROTOCOL, secret],
        {
          ca: built.caPem,
          origin: options.origin ?? built.base,
          headers: options.session ? { cookie: options.session.cookie } : {},
          handshakeTimeout: 30_000,
        },
      );
      socket.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () =>
          resolveOpened({ kind: 'refused', status: res.statusCode ?? 0, body: JSON.parse(text) }),
        );
      });
      socket.once('message', (data: Buffer) =>
        resolveOpened({ kind: 'open', socket, firstBytes: Buffer.from(data) }),
      );
      socket.once('close', (code, reason) =>
        reject(new Error(`the console closed before its greeting: ${code} ${reason.toString()}`)),
      );
      socket.once('error', (error) => {
        if (!/Unexpected server response/.test(error.message)) reject(error);
      });
    });
  }

  async function refusal(vmid: string, secret: string, session?: Session, origin?: string) {
    const opened = await openConsole(vmid, secret, { session, origin });
    if (opened.kind === 'open') {
      opened.socket.close();
      throw new Error('the console opened');
    }
    return opened;
  }

  /** Waits, with a deadline, until the audit log has an entry of `action` on the VM, and answers the newest. */
  async function auditEntry(action: string, vmid: string): Promise<Json> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const page = await built.ok('GET', `/api/v1/audit?action=${action}&limit=50`);
      const entry = (page.items as Json[]).find((e) => String(e.target).endsWith(`/vms/${vmid}`));
      if (entry) return entry;
      if (Date.now() > deadline) throw new Error(`no ${action} audit entry for ${vmid}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function signIn(page: Page, username: string, password: string): Promise<void> {
    await page.goto(`${built.base}/`);
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByTestId('signed-in-user').waitFor({ timeout: 15_000 });
  }

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const tiny = await buildTinyGuest();
    const bootDir = tempDir('debvisor-console-boot-');
    copyFileSync(hostBzImage(), join(bootDir, 'vmlinuz'));
    copyFileSync(tiny.initrdPath, join(bootDir, 'initrd.cpio'));
    built = await startBuiltManager(ADMIN_PASSWORD);
    const clientCa = (await built.ok('GET', '/api/v1/manager/identity')).clientCa.pem as string;
    cluster = await startCluster({
      clusterId: REMOTE,
      nodes: 1,
      vmsPerNode: 0,
      trustedClientCaPem: clientCa,
      logLevel: 'warn',
      agentConfig: () => ({
        hypervisor: { driver: 'qemu' },
        qemu: { accel: 'tcg', machine: 'pc', bootDir },
      }),
      prepareNode: (_nodeId, stateDir) => {
        writeQemuVm(stateDir, shown);
        writeQemuVm(stateDir, stopped);
      },
    });
    const key = await cluster.createApiKey(['*'], { principal: 'manager' });
    await built.ok('POST', '/api/v1/remotes', {
      id: REMOTE,
      endpoints: cluster.agents.map((a) => a.endpoint),
      caCertPem: cluster.caPem,
      credentials: [{ name: 'admin', key }],
    });
    const { taskId } = await built.ok('POST', `/api/v1/remotes/${REMOTE}/vms/${shown.uuid}/start`);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const task = await built.ok('GET', `/api/v1/tasks/${taskId}`);
      if (task.state === 'succeeded') break;
      if (task.state === 'failed' || Date.now() > deadline)
        throw new Error(`the start task ended ${task.state}: ${task.error}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    await built.ok('GET', '/api/v1/resources/refresh');

    await built.ok('POST', '/api/v1/access/users', { username: 'bob', password: BOB_PASSWORD });
    await built.ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'user',
      principal: 'bob@local',
      role: 'Manage',
    });
    await built.ok('POST', '/api/v1/access/users', {
      username: 'audrey',
      password: AUDITOR_PASSWORD,
    });
    await built.ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'user',
      principal: 'audrey@local',
      role: 'Audit',
    });
    await built.ok('POST', '/api/v1/access/users', { username: 'tina', password: TENANT_PASSWORD });
    await built.ok('POST', '/api/v1/access/groups', { id: 'blue', tenant: true });
    await built.ok('PUT', '/api/v1/access/groups/blue/members', { users: ['tina@local'] });
    await built.ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'group',
      principal: 'blue',
      role: 'Manage',
    });
    await built.ok('PUT', `/api/v1/access/vm-owners/${stopped.uuid}`, { tenantGroup: 'blue' });
    browser = await launchChromium(built.caPem);
  }, 300_000);

  afterEach(async () => {
    await context?.close();
    context = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    await built?.process.stop();
    await cluster?.stop();
    cleanupTempDirs();
  });

  it("shows the tiny QEMU guest's console output in Chromium, and audits opening and closing", async () => {
    context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await signIn(page, ADMIN, ADMIN_PASSWORD);
    await page.goto(`${built.base}/#/resources/${REMOTE}/${shown.uuid}`);
    await page.getByRole('heading', { name: shown.name, level: 1 }).waitFor();
    await page.getByRole('button', { name: 'Console', exact: true }).click();
    await page.getByRole('heading', { name: `Console of ${shown.name}` }).waitFor();
    await page.getByRole('status').getByText('Connected.').waitFor({ timeout: 60_000 });
    // The guest prints a line a second below the firmware's and the kernel's: wait until they
    // reach the bottom fifth of the screen.
    await page.waitForFunction(
      () => {
        const canvas = document.querySelector<HTMLCanvasElement>(
          '[data-testid="console-screen"] canvas',
        );
        const context2d = canvas?.getContext('2d');
        if (!canvas || !context2d || canvas.width < 100) return false;
        const { data, width, height } = context2d.getImageData(0, 0, canvas.width, canvas.height);
        let litRows = 0;
        for (let y = Math.floor(height * 0.8); y < height; y++) {
          for (let x = 0; x < width; x++) {
            const i = (y * width + x) * 4;
            if (data[i]! + data[i + 1]! + data[i + 2]! > 300) {
              litRows++;
              break;
            }
          }
        }
        return litRows >= 12; // a line of 16-pixel text
      },
      undefined,
      { timeout: 90_000, polling: 500 },
    );
    expect(await page.getByRole('button', { name: 'Send Ctrl-Alt-Del' }).isEnabled()).toBe(true);
    await screenshotChecked(page, join(ARTIFACTS, 'vm-console.png'));
    const opened = await auditEntry('vm.console.open', shown.uuid);
    expect(opened).toMatchObject({ principal: ADMIN, outcome: 'success' });

    await page.getByRole('link', { name: 'Back to the VM' }).click();
    await page.getByRole('heading', { name: shown.name, level: 1 }).waitFor();
    const closed = await auditEntry('vm.console.close', shown.uuid);
    expect(closed.principal).toBe(ADMIN);
    expect(closed.details.durationMs).toBeGreaterThan(0);
    expect(closed.details.reason).toBe('the viewer closed the console');
    expect(JSON.stringify([opened, closed])).not.toMatch(/dvct_/);
  });

  it('says clearly that a stopped VM has no console', async () => {
    context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await signIn(page, ADMIN, ADMIN_PASSWORD);
    await page.goto(`${built.base}/#/resources/${REMOTE}/${stopped.uuid}`);
    await page.getByRole('heading', { name: stopped.name, level: 1 }).waitFor();
    const button = page.getByRole('button', { name: 'Console', exact: true });
    expect(await button.isDisabled()).toBe(true);
    expect(await button.getAttribute('title')).toBe(
      'The VM is off: a VM has a console only while it runs',
    );
    await page.goto(`${built.base}/#/console/${REMOTE}/${stopped.uuid}`);
    await page
      .getByRole('status')
      .getByText(`${stopped.name} is stopped: a VM has a console only while it runs.`, {
        exact: false,
      })
      .waitFor();
    await screenshotChecked(page, join(ARTIFACTS, 'vm-console-off.png'));
  });

  it("refuses reused, expired, other users' and other VMs' tickets, foreign origins and API tokens", async () => {
    const [admin, bob] = await Promise.all([
      login(ADMIN, ADMIN_PASSWORD),
      login('bob', BOB_PASSWORD),
    ]);
    // Asked for first: it expires while the other cases run.
    const expiring = await ticket(admin, shown.uuid);
    expect(expiring.ticket).toMatch(/^dvct_/);
    expect(Date.parse(expiring.expiresAt) - Date.now()).toBeLessThanOrEqual(60_000);

    const first = await ticket(admin, shown.uuid);
    const opened = await openConsole(shown.uuid, first.ticket, { session: admin });
    expect(opened.kind).toBe('open');
    if (opened.kind === 'open') {
      expect(opened.firstBytes.toString('latin1')).toMatch(/^RFB 003\.00\d\n/);
      opened.socket.close();
    }
    const reused = await refusal(shown.uuid, first.ticket, admin);
    expect(reused.status).toBe(401);
    expect(reused.body.error.code).toBe('unauthenticated');

    const bobs = await refusal(shown.uuid, (await ticket(admin, shown.uuid)).ticket, bob);
    expect(bobs.status).toBe(401);
    const otherVm = await refusal(stopped.uuid, (await ticket(admin, shown.uuid)).ticket, admin);
    expect(otherVm.status).toBe(401);
    const foreign = await refusal(
      shown.uuid,
      (await ticket(admin, shown.uuid)).ticket,
      admin,
      'https://evil.example',
    );
    expect(foreign.status).toBe(403);
    const noSession = await refusal(shown.uuid, (await ticket(admin, shown.uuid)).ticket);
    expect(noSession.status).toBe(401);

    const byToken = await call(
      'POST',
      `/api/v1/remotes/${REMOTE}/vms/${shown.uuid}/console/ticket`,
      {
        token: built.bootstrapToken,
      },
    );
    expect(byToken.status).toBe(403);
    expect(byToken.body.error.message).toMatch(/DEBVISOR_CONSOLE_ALLOW_API_TOKENS/);

    // The expiring ticket, once its time is up.
    const expiry = Date.parse(expiring.expiresAt);
    const deadline = expiry + 30_000;
    while (Date.now() <= expiry) {
      if (Date.now() > deadline) throw new Error('the clock did not pass the expiry');
      await new Promise((r) => setTimeout(r, 250));
    }
    const expired = await refusal(shown.uuid, expiring.ticket, admin);
    expect(expired.status).toBe(401);
  }, 120_000);

  it("answers a tenant 404 for a foreign VM's console, and an auditor 403", async () => {
    const [tina, audrey] = await Promise.all([
      login('tina', TENANT_PASSWORD),
      login('audrey', AUDITOR_PASSWORD),
    ]);
    const path = (vmid: string) => `/api/v1/remotes/${REMOTE}/vms/${vmid}/console/ticket`;
    const foreign = await call('POST', path(shown.uuid), { session: tina });
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.message).toBe('virtual machine not found');
    // Its own VM: allowed, but stopped.
    const own = await call('POST', path(stopped.uuid), { session: tina });
    expect(own.status).toBe(409);
    expect(own.body.error.message).toBe(
      `VM ${stopped.name} is stopped: it has no console until it runs`,
    );
    const auditor = await call('POST', path(shown.uuid), { session: audrey });
    expect(auditor.status).toBe(403);
  });

  it('closes an open console when its login session ends', async () => {
    const session = await login('bob', BOB_PASSWORD);
    const opened = await openConsole(shown.uuid, (await ticket(session, shown.uuid)).ticket, {
      session,
    });
    if (opened.kind !== 'open') throw new Error(`refused: ${JSON.stringify(opened.body)}`);
    const closed = new Promise<{ code: number; reason: string }>((resolveClose, reject) => {
      const timer = setTimeout(() => reject(new Error('the console stayed open')), 30_000);
      opened.socket.once('close', (code, reason) => {
        clearTimeout(timer);
        resolveClose({ code, reason: reason.toString() });
      });
    });
    expect((await call('POST', '/api/v1/auth/logout', { session })).status).toBe(204);
    expect(await closed).toEqual({ code: 4401, reason: 'the login session ended' });
  });
  it('closes an open console when its user loses the console right', async () => {
    const password = `car-${randomBytes(12).toString('base64url')}-Pw5`;
    await built.ok('POST', '/api/v1/access/users', { username: 'carol', password });
    await built.ok('PUT', '/api/v1/access/acl', {
      path: '/',
      principalType: 'user',
      principal: 'carol@local',
      role: 'Manage',
    });
    const session = await login('carol', password);
    const opened = await openConsole(shown.uuid, (await ticket(session, shown.uuid)).ticket, {
      session,
    });
    if (opened.kind !== 'open') throw new Error(`refused: ${JSON.stringify(opened.body)}`);
    const closed = new Promise<{ code: number; reason: string }>((resolveClose, reject) => {
      const timer = setTimeout(() => reject(new Error('the console stayed open')), 30_000);
      opened.socket.once('close', (code, reason) => {
        clearTimeout(timer);
        resolveClose({ code, reason: reason.toString() });
      });
    });
    const revoked = await built.api(
      'DELETE',
      '/api/v1/access/acl?path=%2F&principalType=user&principal=carol%40local',
    );
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(204);
    expect(await closed).toEqual({
      code: 4403,
      reason: 'you no longer hold the console right on this VM',
    });
  });
});
