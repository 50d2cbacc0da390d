// The Debian packages the project's tests and demo need, installed when missing (as root) or
// named in a clear message. Every entry is a binary the harness or the tests run.
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export const DEBIAN_PACKAGES = [
  { binary: 'etcd', package: 'etcd-server', for: 'cluster node registries' },
  {
    binary: 'promtool',
    package: 'prometheus',
    for: 'checking the metrics, alert rules and Prometheus configuration',
  },
  { binary: 'slapd', package: 'slapd', for: 'the LDAP realm tests (a throw-away directory)' },
  {
    binary: 'pebble',
    package: 'pebble',
    for: "the ACME tests (Let's Encrypt's test CA)",
  },
  {
    binary: 'pebble-challtestsrv',
    package: 'pebble',
    for: "the ACME HTTP-01 tests (the test CA's DNS server)",
  },
  {
    binary: 'named',
    package: 'bind9',
    for: 'the ACME DNS-01 tests (a zone updated over RFC 2136)',
  },
  {
    binary: 'nsupdate',
    package: 'bind9-dnsutils',
    for: 'ACME DNS-01: RFC 2136 updates signed with TSIG (the manager runs it)',
  },
  { binary: 'slapadd', package: 'slapd', for: 'loading the test directory' },
  {
    binary: 'oathtool',
    package: 'oathtool',
    for: 'checking TOTP codes against an independent implementation',
  },
  { binary: 'zsh', package: 'zsh', for: "the debvisor CLI's zsh completion test" },
  { binary: 'chromium', package: 'chromium', for: 'the web UI tests (driven by playwright-core)' },
  {
    binary: 'qemu-system-x86_64',
    package: 'qemu-system-x86',
    for: 'the qemu hypervisor driver and live migration tests',
  },
  { binary: 'qemu-img', package: 'qemu-utils', for: 'disk images of the qemu driver tests' },
  {
    binary: 'tc',
    package: 'iproute2',
    for: 'the emulated WAN of the migration data-path test and benchmark (ip netns, ip tuntap), and the HA partition test (ip netns, veth)',
  },
  {
    binary: 'python3',
    package: 'python3',
    for: 'the emulated WAN wire (a user-space netem between two TUN devices; needs TUNSETIFF)',
  },
  {
    file: '/usr/lib/x86_64-linux-gnu/qemu/block-rbd.so',
    package: 'qemu-block-extra',
    for: "QEMU's RBD block driver (the qemu driver's VM disks on Ceph)",
  },
  {
    file: '/bin/busybox',
    package: 'busybox-static',
    for: 'the tiny test guest (a static busybox initramfs)',
  },
  {
    glob: ['/boot', /^vmlinuz-/],
    package: 'linux-image-amd64',
    for: 'the tiny test guest (a Linux kernel)',
  },
  { binary: 'virsh', package: 'libvirt-clients', for: 'the libvirt hypervisor driver' },
  {
    binary: 'libvirtd',
    package: 'libvirt-daemon-system',
    for: 'the libvirt driver tests (a private libvirtd)',
  },
  {
    file: '/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so',
    package: 'libvirt-daemon-driver-qemu',
    for: "libvirtd's QEMU driver",
  },
  {
    binary: 'ceph-mon',
    package: 'ceph-mon',
    for: 'throw-away Ceph clusters of the storage tests (monitor)',
  },
  {
    binary: 'ceph-mgr',
    package: 'ceph-mgr',
    for: 'throw-away Ceph clusters of the storage tests (manager: mirror snapshot schedules)',
  },
  {
    binary: 'ceph-osd',
    package: 'ceph-osd',
    for: 'throw-away Ceph clusters of the storage tests (a bluestore OSD on a sparse file)',
  },
  {
    binary: 'rbd-mirror',
    package: 'rbd-mirror',
    for: "RBD mirroring between the storage tests' two Ceph clusters",
  },
  { binary: 'rbd', package: 'ceph-common', for: 'the rbd storage driver' },
  {
    binary: 'ceph',
    package: 'ceph-common',
    for: 'the rbd storage driver (cluster health, blocklists)',
  },
];

/** True when what `dependency` names is on this machine. */
function present(dependency) {
  if (dependency.binary) return Boolean(findBinary(dependency.binary));
  if (dependency.file) return existsSync(dependency.file);
  const [dir, pattern] = dependency.glob;
  return existsSync(dir) && readdirSync(dir).some((name) => pattern.test(name));
}

function describe(dependency) {
  return `${dependency.binary ?? dependency.file ?? `${dependency.glob[0]}/${dependency.glob[1].source}`} (${dependency.for})`;
}

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
  const missing = needed.filter((d) => !present(d));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((d) => d.package))];
  const command = `apt-get install -y ${packages.join(' ')}`;
  if (process.getuid?.() !== 0 || !findBinary('apt-get')) {
    throw new Error(
      `missing: ${missing.map(describe).join(', ')}.\n` +
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
  const still = missing.filter((d) => !present(d));
  if (still.length)
    throw new Error(`apt-get finished but ${still.map(describe).join(', ')} is still missing`);
}

/** Runs `npm ci` in `root` when its node_modules is missing (a fresh clone). */
export function ensureNodeModules(root, log = console.log) {
  if (existsSync(join(root, 'node_modules'))) return;
  log('Installing npm packages (npm ci) …');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], {
    cwd: root,
    stdio: 'inherit',
    timeout: 1_200_000,
  });
}
