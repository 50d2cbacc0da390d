// The Debian packages the project's tests and demo need, installed when missing (as root) or
// named in a clear message. Every entry is a binary the harness or the tests run.
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export const DEBIAN_PACKAGES = [
  { binary: 'etcd', package: 'etcd-server', for: 'cluster node registries' },
  { binary: 'promtool', package: 'prometheus', for: 'checking the metrics, alert rules and Prometheus configuration' },
  { binary: 'slapd', package: 'slapd', for: 'the LDAP realm tests (a throw-away directory)' },
  { binary: 'slapadd', package: 'slapd', for: 'loading the test directory' },
  { binary: 'oathtool', package: 'oathtool', for: 'checking TOTP codes against an independent implementation' },
];

const EXTRA_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/usr/local/bin'];

export function findBinary(name) {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...EXTRA_DIRS]) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * Makes sure every binary in `needed` (default: all) is installed. As root on Debian it runs
 * apt-get; otherwise it throws with the exact command to run.
 */
export function ensureDebianPackages(needed = DEBIAN_PACKAGES, log = console.log) {
  const missing = needed.filter((d) => !findBinary(d.binary));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((d) => d.package))];
  const command = `apt-get install -y ${packages.join(' ')}`;
  if (process.getuid?.() !== 0 || !findBinary('apt-get')) {
    throw new Error(
      `missing: ${missing.map((d) => `${d.binary} (${d.for})`).join(', ')}.\n` +
        `Install the Debian packages first: sudo ${command}`,
    );
  }
  log(`Installing Debian packages: ${packages.join(', ')} …`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env, timeout: 600_000 });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', '--', ...packages], {
    stdio: 'inherit',
    env,
    timeout: 1_200_000,
  });
  const still = missing.filter((d) => !findBinary(d.binary));
  if (still.length) throw new Error(`apt-get finished but ${still.map((d) => d.binary).join(', ')} is still missing`);
}

/** Runs `npm ci` in `root` when its node_modules is missing (a fresh clone). */
export function ensureNodeModules(root, log = console.log) {
  if (existsSync(join(root, 'node_modules'))) return;
  log('Installing npm packages (npm ci) …');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit', timeout: 1_200_000 });
}
