import {
  freePort,
  requireBinary,
  spawnManaged,
  tempDir,
  type ManagedProcess,
} from '@debvisor/testing';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { basename, join, resolve } from 'node:path';
import type { AxeResults } from 'axe-core';
import { chromium, type Browser, type Page } from 'playwright-core';
import { expect } from 'vitest';

export const MANAGER_MAIN = resolve(__dirname, '../apps/manager/dist/main.js');
export const WEB_DIR = resolve(__dirname, '../apps/web/dist');

/** Answers are checked field by field in the tests; their bodies are loosely typed on purpose. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export interface ApiAnswer {
  status: number;
  /** Parsed when the manager answered JSON, else the text. */
  body: Json;
}

/** One request to a manager's REST API over HTTPS, trusting only `target.caPem`, with a bearer token. */
export function requestApi(
  target: { base: string; caPem: string },
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<ApiAnswer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolveAnswer, reject) => {
    const req = request(
      `${target.base}${path}`,
      {
        method,
        ca: target.caPem,
        servername: 'localhost',
        timeout: 60_000,
        headers: {
          authorization: `Bearer ${token}`,
          ...(payload ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () =>
          resolveAnswer({
            status: res.statusCode ?? 0,
            body:
              text && (res.headers['content-type'] ?? '').includes('application/json')
                ? JSON.parse(text)
                : text,
          }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 60 s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

export interface BuiltManager {
  readonly process: ManagedProcess;
  /** https://localhost:<port> (a name the browser can use as WebAuthn relying party) */
  readonly base: string;
  readonly caPem: string;
  /** The manager's state directory. */
  readonly stateDir: string;
  /** The CA of the manager's client certificate: what agents must trust (tls.clientCas). */
  readonly clientCaPem: string;
  /** What the first start printed for the operator: the admin password line and the bootstrap token. */
  readonly bootstrapToken: string;
  /** A request to its REST API, with the bootstrap admin token unless another is given. */
  api(method: string, path: string, body?: unknown, token?: string): Promise<ApiAnswer>;
  /** The same with the bootstrap token, for set-up: fails the test unless the answer is a success (< 300); answers the body. */
  ok(method: string, path: string, body?: unknown): Promise<Json>;
}

/** The built manager process, as an operator starts it: embedded PostgreSQL, the built web UI, a known admin password. */
export async function startBuiltManager(
  adminPassword: string,
  /** Further settings (e.g. the HTTP-01 listener of the certificates tests). */
  extraEnv: Record<string, string> = {},
): Promise<BuiltManager> {
  if (!existsSync(MANAGER_MAIN))
    throw new Error(`${MANAGER_MAIN} is missing: run \`npx tsc -b tsconfig.build.json\` first`);
  if (!existsSync(join(WEB_DIR, 'index.html')))
    throw new Error(
      `${WEB_DIR}/index.html is missing: run \`npm run build -w @debvisor/web\` first`,
    );
  const stateDir = join(tempDir('debvisor-browser-e2e-'), 'manager');
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DEBVISOR_STATE_DIR: stateDir,
    DEBVISOR_LISTEN: `127.0.0.1:${port}`,
    DEBVISOR_POLL_INTERVAL_SECONDS: '3600',
    DEBVISOR_WEB_DIR: WEB_DIR,
    DEBVISOR_ADMIN_PASSWORD: adminPassword,
    // The HTTP-01 listener on a free port (port 80 is for production).
    DEBVISOR_HTTP_LISTEN: '127.0.0.1:0',
    ...extraEnv,
  };
  delete env.DATABASE_URL;
  delete env.DATABASE_ADMIN_URL;
  delete env.DEBVISOR_PUBLIC_URL;
  const manager = spawnManaged('manager', process.execPath, [MANAGER_MAIN], { env });
  await manager.waitFor(/"msg":"manager listening"/, 120_000);
  const base = `https://localhost:${port}`;
  const caPem = readFileSync(join(stateDir, 'pki/server-ca.crt'), 'utf8');
  const bootstrapToken = /bootstrap admin token: (dvdm_[A-Za-z0-9_-]+)/.exec(manager.output())![1];
  return {
    process: manager,
    base,
    caPem,
    stateDir,
    clientCaPem: readFileSync(join(stateDir, 'pki/client-ca.crt'), 'utf8'),
    bootstrapToken,
    api: (method, path, body, token = bootstrapToken) =>
      requestApi({ base, caPem }, token, method, path, body),
    async ok(method, path, body) {
      const answer = await requestApi({ base, caPem }, bootstrapToken, method, path, body);
      expect(answer.status, `${method} ${path}: ${JSON.stringify(answer.body)}`).toBeLessThan(300);
      return answer.body;
    },
  };
}

/**
 * Debian's Chromium, headless, trusting exactly the keys of these CAs (no blanket ignoring of
 * certificate errors). Every page it opens records its problems (see `watchProblems`):
 * `screenshotChecked` and `expectNoProblems` fail the test on any not allowed at that call, and
 * closing the browser fails on any left unchecked.
 */
export async function launchChromium(...caPems: string[]): Promise<Browser> {
  return recordingProblems(await launchChromiumUnchecked(...caPems));
}

/** The same browser without the problem check: only for a spec not yet walked through with it. */
export function launchChromiumUnchecked(...caPems: string[]): Promise<Browser> {
  const executablePath = requireBinary('chromium', 'chromium');
  const spkiHashes = caPems.map((pem) =>
    createHash('sha256')
      .update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }))
      .digest('base64'),
  );
  return chromium.launch({
    executablePath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--ignore-certificate-errors-spki-list=${spkiHashes.join(',')}`,
    ],
  });
}

let axeSource: string | undefined;
const WCAG_21_AA = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

/**
 * What axe-core (the accessibility engine, run in the page) finds against WCAG 2.1 A and AA on the
 * page as it is now — labels, names, contrast in the current colour scheme, ARIA use — one line per
 * rule with up to three of the elements that break it. Empty: nothing found.
 */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  if (!(await page.evaluate(() => 'axe' in window))) {
    axeSource ??= readFileSync(resolve(__dirname, '../node_modules/axe-core/axe.min.js'), 'utf8');
    // Evaluated through the DevTools protocol, not a <script> tag: the manager's Content-Security-
    // Policy refuses inline scripts, and the pages are checked with it on.
    await page.evaluate(axeSource);
  }
  const violations = await page.evaluate(async (tags) => {
    const axe = (
      window as unknown as { axe: { run(context: Document, options: object): Promise<AxeResults> } }
    ).axe;
    return (await axe.run(document, { runOnly: tags })).violations;
  }, WCAG_21_AA);
  return violations.map(
    (v) =>
      `${v.id} (${v.impact}): ${v.help} — ${v.nodes
        .slice(0, 3)
        .map((node) => node.target.join(' '))
        .join(' | ')}`,
  );
}

/**
 * A full-page screenshot of what the user sees now (to look at), and axe's check of that same
 * state: the test fails on any finding, and on any console error, page error or failed answer
 * since the last check (pages of `launchChromium`) unless `allowed` names it — what the test
 * provokes on purpose, e.g. `/^401 POST \/api\/auth\/login$/`.
 */
export async function screenshotChecked(
  page: Page,
  path: string,
  allowed: readonly RegExp[] = [],
): Promise<void> {
  await page.screenshot({ path, fullPage: true });
  expect(await accessibilityViolations(page), `WCAG 2.1 AA findings on ${basename(path)}`).toEqual(
    [],
  );
  expectNoProblems(page, allowed, `before ${basename(path)}`);
}

/** Pages of `launchChromium` and their problems not yet checked. */
const recordedProblems = new Map<Page, string[]>();

function recordProblems(page: Page): void {
  if (recordedProblems.has(page)) return;
  recordedProblems.set(page, watchProblems(page));
}

/** `browser` with every page of every context recording its problems, and a `close` that fails on any left unchecked. */
function recordingProblems(browser: Browser): Browser {
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (options) => {
    const context = await newContext(options);
    context.on('page', recordProblems);
    const newPage = context.newPage.bind(context);
    context.newPage = async () => {
      const page = await newPage();
      recordProblems(page);
      return page;
    };
    return context;
  };
  const newPage = browser.newPage.bind(browser);
  browser.newPage = async (options) => {
    const page = await newPage(options);
    recordProblems(page);
    return page;
  };
  const close = browser.close.bind(browser);
  browser.close = async (options) => {
    const pages = [...recordedProblems.keys()].filter(
      (page) => page.context().browser() === browser,
    );
    const left = pages.flatMap((page) => recordedProblems.get(page)!);
    for (const page of pages) recordedProblems.delete(page);
    await close(options);
    if (left.length > 0)
      throw new Error(
        `console errors, page errors or failed answers never checked:\n${left.join('\n')}`,
      );
  };
  return browser;
}

/**
 * Fails the test on any console error, page error or failed answer on `page` (of `launchChromium`)
 * since the last check, except those `allowed` matches (what the test provokes on purpose); the
 * problems count as checked either way.
 */
export function expectNoProblems(page: Page, allowed: readonly RegExp[] = [], when = 'now'): void {
  const problems = recordedProblems.get(page);
  if (!problems) return;
  const unexpected = problems
    .splice(0)
    .filter((problem) => !allowed.some((pattern) => pattern.test(problem)));
  expect(unexpected, `console errors, page errors or failed answers ${when}`).toEqual([]);
}

/**
 * Every console error, uncaught page error and answer of 400 or more on `page` from now on, one
 * line each (`console: …`, `page error: …`, `<status> <METHOD> <path>`); `launchChromium`'s
 * pages record them already, for `screenshotChecked` and `expectNoProblems`.
 */
export function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (message) => {
    // Chromium's own line for an answer of 400 or more: the response below names it with its path.
    if (
      message.type() === 'error' &&
      !/^Failed to load resource: the server responded with a status of \d+/.test(message.text())
    )
      problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('response', (response) => {
    if (response.status() >= 400)
      problems.push(
        `${response.status()} ${response.request().method()} ${new URL(response.url()).pathname}`,
      );
  });
  return problems;
}
