import { cleanupTempDirs, type ManagedProcess } from '@debvisor/testing';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, screenshotChecked, startBuiltManager } from './browser-harness';

/**
 * WebAuthn as a second factor, end to end: the built manager process and Chromium with a virtual
 * authenticator (CDP), on a page the manager serves at https://localhost:<port> (RP ID localhost).
 * Enrolment after a password login, then a login completed with an assertion; replayed assertions
 * and assertions for another challenge are refused.
 */
const SCREENSHOTS = resolve(__dirname, '../test-artifacts/web-login');
const ADMIN = 'admin@local';
const ADMIN_PASSWORD = `e2e-${randomBytes(12).toString('base64url')}-Pw1`;

interface ApiAnswer {
  status: number;
  body: Record<string, unknown> | undefined;
}

/**
 * Evaluated in the page: fetch with the browser's cookies, and navigator.credentials with the
 * base64url ↔ ArrayBuffer conversions the JSON options and answers need.
 */
const PAGE_HELPERS = `(() => {
  const toBuffer = (text) => {
    const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((text.length + 3) % 4);
    const raw = atob(b64);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  };
  const toText = (buffer) => {
    let raw = '';
    for (const byte of new Uint8Array(buffer)) raw += String.fromCharCode(byte);
    return btoa(raw).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  };
  const descriptors = (list) => (list || []).map((c) => ({ ...c, id: toBuffer(c.id) }));
  window.__webauthn = {
    async api(method, path, body, csrf) {
      const headers = {};
      if (body !== undefined) headers['content-type'] = 'application/json';
      if (csrf) headers['x-csrf-token'] = csrf;
      const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    async create(options) {
      const credential = await navigator.credentials.create({
        publicKey: { ...options, challenge: toBuffer(options.challenge), user: { ...options.user, id: toBuffer(options.user.id) }, excludeCredentials: descriptors(options.excludeCredentials) },
      });
      return {
        id: credential.id,
        rawId: toText(credential.rawId),
        type: credential.type,
        response: {
          clientDataJSON: toText(credential.response.clientDataJSON),
          attestationObject: toText(credential.response.attestationObject),
          transports: credential.response.getTransports(),
        },
        clientExtensionResults: credential.getClientExtensionResults(),
      };
    },
    async get(options) {
      const credential = await navigator.credentials.get({
        publicKey: { ...options, challenge: toBuffer(options.challenge), allowCredentials: descriptors(options.allowCredentials) },
      });
      const response = {
        clientDataJSON: toText(credential.response.clientDataJSON),
        authenticatorData: toText(credential.response.authenticatorData),
        signature: toText(credential.response.signature),
      };
      if (credential.response.userHandle) response.userHandle = toText(credential.response.userHandle);
      return { id: credential.id, rawId: toText(credential.rawId), type: credential.type, response, clientExtensionResults: credential.getClientExtensionResults() };
    },
  };
})()`;

describe('WebAuthn as a second factor in the browser', () => {
  let manager: ManagedProcess;
  let base: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;

  const api = (method: string, path: string, body?: unknown, csrf?: string): Promise<ApiAnswer> =>
    page.evaluate(
      ([m, p, b, c]) =>
        (
          window as unknown as { __webauthn: { api: (...a: unknown[]) => Promise<ApiAnswer> } }
        ).__webauthn.api(m, p, b, c),
      [method, path, body, csrf] as const,
    );
  const create = (options: unknown): Promise<unknown> =>
    page.evaluate(
      (o) =>
        (
          window as unknown as { __webauthn: { create: (o: unknown) => Promise<unknown> } }
        ).__webauthn.create(o),
      options,
    );
  const get = (options: unknown): Promise<unknown> =>
    page.evaluate(
      (o) =>
        (
          window as unknown as { __webauthn: { get: (o: unknown) => Promise<unknown> } }
        ).__webauthn.get(o),
      options,
    );

  async function passwordLogin(): Promise<{ stage: string; csrfToken: string; methods: string[] }> {
    const login = await api('POST', '/api/v1/auth/login', {
      username: ADMIN,
      password: ADMIN_PASSWORD,
    });
    expect(login.status).toBe(200);
    return login.body as { stage: string; csrfToken: string; methods: string[] };
  }

  beforeAll(async () => {
    // The ceremonies run on the manager's own origin: its web UI (which also has the security-key login).
    const started = await startBuiltManager(ADMIN_PASSWORD);
    manager = started.process;
    base = started.base;
    browser = await launchChromium(started.caPem);
    context = await browser.newContext();
    page = await context.newPage();
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
      },
    });
    await page.goto(`${base}/`);
    await page.evaluate(PAGE_HELPERS);
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await manager?.stop();
    cleanupTempDirs();
  });

  it('enrols a credential after the password login, then completes a login with it; replays and foreign challenges are refused', async () => {
    // Enrolment: fresh password check → options → navigator.credentials.create() → stored.
    const first = await passwordLogin();
    expect(first.stage).toBe('active');
    const wrongPassword = await api(
      'POST',
      '/api/v1/access/tfa/webauthn/options',
      { name: 'virtual key', password: 'not-the-password-1' },
      first.csrfToken,
    );
    expect(wrongPassword.status).toBe(403);
    const creation = await api(
      'POST',
      '/api/v1/access/tfa/webauthn/options',
      { name: 'virtual key', password: ADMIN_PASSWORD },
      first.csrfToken,
    );
    expect(creation.status).toBe(200);
    expect(creation.body).toMatchObject({
      rp: { id: 'localhost', name: 'DebVisor Datacenter Manager' },
      attestation: 'none',
      excludeCredentials: [],
    });
    const attestation = await create(creation.body);
    const registered = await api(
      'POST',
      '/api/v1/access/tfa/webauthn',
      { response: attestation },
      first.csrfToken,
    );
    expect(registered.status).toBe(201);
    expect(registered.body).toMatchObject({ name: 'virtual key', stage: 'active' });
    expect(registered.body!.recoveryCodes).toHaveLength(10);
    // The registration challenge was single use.
    expect(
      (await api('POST', '/api/v1/access/tfa/webauthn', { response: attestation }, first.csrfToken))
        .status,
    ).toBe(409);
    const overview = await api('GET', '/api/v1/access/tfa');
    expect(overview.body).toMatchObject({
      webauthn: [{ name: 'virtual key', lastUsedAt: null }],
      recoveryCodesLeft: 10,
    });
    expect((await api('POST', '/api/v1/auth/logout', undefined, first.csrfToken)).status).toBe(204);

    // Login: password → stage tfa offering webauthn → options → navigator.credentials.get() → active.
    const pending = await passwordLogin();
    expect(pending.stage).toBe('tfa');
    expect(pending.methods).toEqual(['webauthn', 'recovery']);
    const noCsrf = await api('POST', '/api/v1/auth/tfa/webauthn/options');
    expect(noCsrf.status).toBe(403);
    const request = await api(
      'POST',
      '/api/v1/auth/tfa/webauthn/options',
      undefined,
      pending.csrfToken,
    );
    expect(request.status).toBe(200);
    expect(request.body).toMatchObject({
      rpId: 'localhost',
      allowCredentials: [{ id: (attestation as { id: string }).id }],
    });
    const assertion = await get(request.body);
    const done = await api('POST', '/api/v1/auth/tfa', { webauthn: assertion }, pending.csrfToken);
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ stage: 'active', user: ADMIN });
    expect((await api('GET', '/api/v1/auth/session')).body).toMatchObject({
      user: ADMIN,
      stage: 'active',
    });
    const afterLogin = await api('GET', '/api/v1/access/tfa');
    expect(
      (afterLogin.body!.webauthn as { lastUsedAt: string | null }[])[0]!.lastUsedAt,
    ).not.toBeNull();
    expect(
      (
        await api(
          'POST',
          '/api/v1/auth/logout',
          undefined,
          (done.body as { csrfToken: string }).csrfToken,
        )
      ).status,
    ).toBe(204);

    // Replaying the accepted assertion: refused without a challenge, and refused against a new one.
    const again = await passwordLogin();
    expect(again.stage).toBe('tfa');
    const replayed = await api(
      'POST',
      '/api/v1/auth/tfa',
      { webauthn: assertion },
      again.csrfToken,
    );
    expect(replayed).toMatchObject({
      status: 401,
      body: { error: { message: 'invalid or already used code' } },
    });
    const fresh = await api(
      'POST',
      '/api/v1/auth/tfa/webauthn/options',
      undefined,
      again.csrfToken,
    );
    expect(fresh.status).toBe(200);
    const foreign = await api('POST', '/api/v1/auth/tfa', { webauthn: assertion }, again.csrfToken);
    expect(foreign.status).toBe(401);
    expect((await api('GET', '/api/v1/auth/session')).body).toMatchObject({ stage: 'tfa' });
    // The refused attempt spent that challenge too: a new one, answered by the authenticator, logs in.
    const retry = await api(
      'POST',
      '/api/v1/auth/tfa/webauthn/options',
      undefined,
      again.csrfToken,
    );
    const accepted = await api(
      'POST',
      '/api/v1/auth/tfa',
      { webauthn: await get(retry.body) },
      again.csrfToken,
    );
    expect(accepted).toMatchObject({ status: 200, body: { stage: 'active' } });
  });

  it('signs in through the web UI with the security key after the password', async () => {
    await context.clearCookies();
    await page.goto(`${base}/`);
    await page.getByLabel('Username').fill(ADMIN);
    await page.getByLabel('Password', { exact: true }).fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    // The security key is the first choice when the account has one; the virtual authenticator answers.
    const useKey = page.getByRole('button', { name: 'Use security key' });
    await useKey.waitFor();
    mkdirSync(SCREENSHOTS, { recursive: true });
    // The refusals the API calls above provoke on purpose (wrong password, a second registration, replays).
    await screenshotChecked(page, join(SCREENSHOTS, 'tfa-webauthn.png'), [
      /^403 POST \/api\/v1\/access\/tfa\/webauthn\/options$/,
      /^403 POST \/api\/v1\/auth\/tfa\/webauthn\/options$/,
      /^409 POST \/api\/v1\/access\/tfa\/webauthn$/,
      /^401 POST \/api\/v1\/auth\/tfa$/,
    ]);
    await useKey.click();
    await page.getByText('Signed in as').waitFor({ timeout: 15_000 });
    expect(await page.getByText(ADMIN).first().isVisible()).toBe(true);
  });
});
