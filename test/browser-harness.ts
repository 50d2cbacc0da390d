import { freePort, requireBinary, spawnManaged, tempDir, type ManagedProcess } from '@debvisor/testing';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export const MANAGER_MAIN = resolve(__dirname, '../apps/manager/dist/main.js');
export const WEB_DIR = resolve(__dirname, '../apps/web/dist');

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
}

/** The built manager process, as an operator starts it: embedded PostgreSQL, the built web UI, a known admin password. */
export async function startBuiltManager(adminPassword: string): Promise<BuiltManager> {
  if (!existsSync(MANAGER_MAIN)) throw new Error(`${MANAGER_MAIN} is missing: run \`npx tsc -b tsconfig.build.json\` first`);
  if (!existsSync(join(WEB_DIR, 'index.html'))) throw new Error(`${WEB_DIR}/index.html is missing: run \`npm run build -w @debvisor/web\` first`);
  const stateDir = join(tempDir('debvisor-browser-e2e-'), 'manager');
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DEBVISOR_STATE_DIR: stateDir,
    DEBVISOR_LISTEN: `127.0.0.1:${port}`,
    DEBVISOR_POLL_INTERVAL_SECONDS: '3600',
    DEBVISOR_WEB_DIR: WEB_DIR,
    DEBVISOR_ADMIN_PASSWORD: adminPassword,
  };
  delete env.DATABASE_URL;
  delete env.DATABASE_ADMIN_URL;
  delete env.DEBVISOR_PUBLIC_URL;
  const manager = spawnManaged('manager', process.execPath, [MANAGER_MAIN], { env });
  await manager.waitFor(/"msg":"manager listening"/, 120_000);
  return {
    process: manager,
    base: `https://localhost:${port}`,
    caPem: readFileSync(join(stateDir, 'pki/server-ca.crt'), 'utf8'),
    stateDir,
    clientCaPem: readFileSync(join(stateDir, 'pki/client-ca.crt'), 'utf8'),
    bootstrapToken: /bootstrap admin token: (dvdm_[A-Za-z0-9_-]+)/.exec(manager.output())![1],
  };
}

/** Debian's Chromium, headless, trusting exactly the key of `caPem` (no blanket ignoring of certificate errors). */
export function launchChromium(caPem: string): Promise<Browser> {
  const executablePath = requireBinary('chromium', 'chromium');
  const caSpki = new X509Certificate(caPem).publicKey.export({ type: 'spki', format: 'der' });
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
      `--ignore-certificate-errors-spki-list=${createHash('sha256').update(caSpki).digest('base64')}`,
    ],
  });
}
