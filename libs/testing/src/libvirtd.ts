import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireBinary } from './binaries';
import { spawnManaged, type ManagedProcess } from './processes';
import { tempDir } from './temp';

const execFileAsync = promisify(execFile);

/** The system directories libvirtd (system mode) keeps its state in, each replaced by one of ours. */
const PRIVATE_DIRS = {
  etc: '/etc/libvirt',
  lib: '/var/lib/libvirt',
  cache: '/var/cache/libvirt',
  log: '/var/log/libvirt',
} as const;
/** QEMU capabilities probed by one daemon, reused by the next (libvirt re-probes when they are stale). */
const CAPS_CACHE = join(tmpdir(), `debvisor-libvirt-qemu-caps-${process.getuid?.() ?? 0}`);
const VIRSH_TIMEOUT_MS = 60_000;

export interface LibvirtdOptions {
  /** The daemon's host UUID (libvirt refuses to migrate to a daemon with its own UUID); random by default. */
  hostUuid?: string;
  /** Also append libvirtd's output to this file. */
  logFile?: string;
}

export interface LibvirtdInstance {
  /** qemu+unix:///system?socket=<dir>/sock/libvirt-sock: a privileged (system-mode) daemon of its own. */
  readonly uri: string;
  readonly hostUuid: string;
  /** The temp dir holding its configuration, sockets, state, logs (log/qemu/<vm>.log) and cache. */
  readonly dir: string;
  readonly process: ManagedProcess;
  /** Runs virsh against this daemon (argument array, never a shell); answers stdout. */
  virsh(args: string[]): Promise<string>;
  /**
   * The host's path to a file the daemon names (a domain's VNC socket under /var/lib/libvirt):
   * libvirtd runs in a mount namespace of its own, reached through /proc/<pid>/root.
   */
  hostPath(path: string): string;
  /** Destroys every domain (no QEMU outlives the test), stops the daemon and removes its directory. */
  stop(): Promise<void>;
}

/**
 * A private libvirtd (Debian package libvirt-daemon-system) in system mode, as root.
 *
 * System mode keeps its state in fixed paths (/etc/libvirt, /var/lib/libvirt, /run/libvirt …), so
 * the daemon runs in a mount namespace of its own where temp directories are bind-mounted over those
 * paths and /run is a fresh tmpfs: it shares nothing with a system libvirtd or with another test's
 * daemon. The namespace is held by `unshare … sleep`; mounts and the daemon enter it with nsenter
 * (util-linux), all through argument arrays. Its socket lives in the temp dir, outside the mounts, so
 * virsh reaches it from the host. QEMU runs as root without cgroups or a security driver, logs to
 * files (no virtlogd) and migrates on 127.0.0.2 (loopback).
 */
export async function startLibvirtd(options: LibvirtdOptions = {}): Promise<LibvirtdInstance> {
  const libvirtd = requireBinary('libvirtd', 'libvirt-daemon-system');
  const virsh = requireBinary('virsh', 'libvirt-clients');
  requireBinary('qemu-system-x86_64', 'qemu-system-x86');
  const unshare = requireBinary('unshare', 'util-linux');
  const nsenter = requireBinary('nsenter', 'util-linux');
  const mount = requireBinary('mount', 'mount');
  if (process.getuid?.() !== 0)
    throw new Error(
      'startLibvirtd needs root: it runs a system-mode libvirtd in a mount namespace of its own',
    );
  for (const target of Object.values(PRIVATE_DIRS)) {
    if (!existsSync(target))
      throw new Error(
        `${target} is missing: install the Debian package libvirt-daemon-system (apt-get install libvirt-daemon-system)`,
      );
  }

  const hostUuid = options.hostUuid ?? randomUUID();
  const dir = tempDir('debvisor-libvirtd-');
  const sockDir = join(dir, 'sock');
  for (const sub of [...Object.keys(PRIVATE_DIRS), 'sock'])
    mkdirSync(join(dir, sub), { mode: 0o700 });
  const configFile = join(dir, 'libvirtd.conf');
  writeFileSync(configFile, libvirtdConf(sockDir, hostUuid), { mode: 0o600 });
  writeFileSync(join(dir, 'etc', 'qemu.conf'), QEMU_CONF, { mode: 0o600 });
  seedCapabilities(join(dir, 'cache'));
  const uri = `qemu+unix:///system?socket=${sockDir}/libvirt-sock`;

  let holder: ManagedProcess | undefined;
  let daemon: ManagedProcess | undefined;
  const run = async (args: string[]): Promise<string> => {
    try {
      const { stdout } = await execFileAsync(virsh, ['-q', '-c', uri, ...args], {
        timeout: VIRSH_TIMEOUT_MS,
      });
      return stdout;
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      throw new Error(`virsh ${args.join(' ')} failed: ${stderr || (error as Error).message}`);
    }
  };
  const stop = async () => {
    if (daemon && daemon.child.exitCode === null) {
      const uuids = await run(['list', '--all', '--uuid']).catch(() => '');
      for (const uuid of uuids.split('\n').filter(Boolean))
        await run(['destroy', '--', uuid]).catch(() => undefined);
    }
    if (holder) killLeftoverQemus(holder);
    await daemon?.stop(10_000);
    await holder?.stop(2_000);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    holder = spawnManaged('libvirtd namespace', unshare, [
      '--mount',
      '--propagation',
      'private',
      '--',
      'sleep',
      'infinity',
    ]);
    const pid = String(holder.child.pid);
    await waitForOwnNamespace(holder);
    const inNamespace = (args: string[]) =>
      execFileAsync(nsenter, ['-t', pid, '-m', '--', ...args], { timeout: 10_000 });
    await inNamespace([mount, '-t', 'tmpfs', '-o', 'mode=0755', 'tmpfs', '/run']);
    for (const [sub, target] of Object.entries(PRIVATE_DIRS))
      await inNamespace([mount, '--bind', join(dir, sub), target]);

    daemon = spawnManaged(
      'libvirtd',
      nsenter,
      ['-t', pid, '-m', '--', libvirtd, '-f', configFile],
      { logFile: options.logFile },
    );
    await waitForSocket(join(sockDir, 'libvirt-sock'), daemon);
    // The first call waits for the QEMU driver to probe the emulator (seconds, unless seeded).
    await run(['version']);
    saveCapabilities(join(dir, 'cache'));
  } catch (error) {
    const output = daemon?.output().slice(-4000) ?? holder?.output().slice(-4000) ?? '';
    await stop().catch(() => undefined);
    throw new Error(
      `libvirtd did not start: ${(error as Error).message}${output ? `\n${output}` : ''}`,
    );
  }
  const namespacePid = holder.child.pid;
  const hostPath = (path: string) => `/proc/${namespacePid}/root${path}`;
  return { uri, hostUuid, dir, process: daemon, virsh: run, hostPath, stop };
}

function libvirtdConf(sockDir: string, hostUuid: string): string {
  return [
    `unix_sock_dir = "${sockDir}"`,
    'unix_sock_group = "root"',
    'unix_sock_ro_perms = "0700"',
    'unix_sock_rw_perms = "0700"',
    'auth_unix_ro = "none"',
    'auth_unix_rw = "none"',
    `host_uuid = "${hostUuid}"`,
    'log_outputs = "3:stderr"',
    '',
  ].join('\n');
}

const QEMU_CONF = [
  'user = "root"',
  'group = "root"',
  'dynamic_ownership = 0',
  'remember_owner = 0',
  'security_driver = "none"',
  'stdio_handler = "file"',
  'cgroup_controllers = [ ]',
  // libvirt refuses 127.0.0.1 as the advertised host; the rest of 127/8 is loopback too.
  'migration_address = "127.0.0.2"',
  'migration_host = "127.0.0.2"',
  '',
].join('\n');

/** Resolves once `unshare` switched to its new mount namespace (so that nothing is mounted on the host). */
async function waitForOwnNamespace(holder: ManagedProcess, timeoutMs = 10_000): Promise<void> {
  const own = readlinkSync('/proc/self/ns/mnt');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (holder.child.exitCode !== null) throw new Error(`unshare exited: ${holder.output()}`);
    const theirs = (() => {
      try {
        return readlinkSync(`/proc/${holder.child.pid}/ns/mnt`);
      } catch {
        return own;
      }
    })();
    if (theirs !== own) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('unshare did not enter a new mount namespace');
}

async function waitForSocket(
  path: string,
  daemon: ManagedProcess,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (daemon.child.exitCode !== null) throw new Error('libvirtd exited early');
    if (Date.now() > deadline) throw new Error(`no socket ${path} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Kills QEMU processes whose pid files remain in the namespace's /run (a domain that did not die). */
function killLeftoverQemus(holder: ManagedProcess): void {
  const runDir = `/proc/${holder.child.pid}/root/run/libvirt/qemu`;
  let names: string[] = [];
  try {
    names = readdirSync(runDir).filter((n) => n.endsWith('.pid'));
  } catch {
    return;
  }
  for (const name of names) {
    try {
      const pid = Number(readFileSync(join(runDir, name), 'utf8').trim());
      if (Number.isInteger(pid) && pid > 1) process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

function seedCapabilities(cacheDir: string): void {
  if (!existsSync(CAPS_CACHE)) return;
  const target = join(cacheDir, 'qemu', 'capabilities');
  mkdirSync(target, { recursive: true, mode: 0o700 });
  for (const name of readdirSync(CAPS_CACHE).filter((n) => n.endsWith('.xml')))
    copyFileSync(join(CAPS_CACHE, name), join(target, name));
}

function saveCapabilities(cacheDir: string): void {
  const source = join(cacheDir, 'qemu', 'capabilities');
  if (!existsSync(source)) return;
  mkdirSync(CAPS_CACHE, { recursive: true, mode: 0o700 });
  for (const name of readdirSync(source).filter((n) => n.endsWith('.xml'))) {
    // Written aside and renamed: a daemon seeding at the same time never reads half a file.
    const partial = join(CAPS_CACHE, `.${name}.${process.pid}`);
    copyFileSync(join(source, name), partial);
    renameSync(partial, join(CAPS_CACHE, name));
  }
}
