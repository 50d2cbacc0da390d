import { execFile, spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Linux's USER_HZ, the unit of /proc/<pid>/stat times. */
const CLOCK_TICKS = 100;
const PAGE_SIZE = 4096;
const POLL_MS = 25;
/** Files a stale run directory may hold from an earlier QEMU; the serial log is kept until the next start truncates it. */
const STALE_RUN_FILES = ['qmp', 'pid', 'mig', 'qemu.log'];

export interface ProcessSample {
  /** CPU time used so far (user + system). */
  cpuSeconds: number;
  rssBytes: number;
  /** Seconds since the process started. */
  ageSeconds: number;
}

/** RFC 7919's ffdhe2048 group (a published, fixed group; nothing secret). */
const FFDHE2048_PEM =
  [
    '-----BEGIN DH PARAMETERS-----',
    'MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz',
    '+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a',
    '87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7',
    'YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi',
    '7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD',
    'ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==',
    '-----END DH PARAMETERS-----',
  ].join('\n') + '\n';

/** QEMU refused to start; `message` is QEMU's own complaint. */
export class QemuStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QemuStartError';
  }
}

/**
 * The qemu driver's processes and runtime files: spawning daemonized QEMUs, finding and signalling
 * them by pid (checked against their command line, so that a recycled pid is never hit), /proc
 * figures, the binary's --version and CPU model list, and key files.
 */
export class QemuProcessRepository {
  constructor(private readonly binary: string) {}

  /**
   * Runs QEMU with -daemonize: the launcher exits once the VM's devices and sockets are set up (0)
   * or QEMU failed (its message is in `logFile`), so no polling for readiness is needed.
   */
  async spawnDaemon(argv: readonly string[], logFile: string, timeoutMs: number): Promise<void> {
    const log = await open(logFile, 'w', 0o600);
    let code: number | null;
    try {
      const child = spawn(this.binary, [...argv], {
        detached: true,
        stdio: ['ignore', log.fd, log.fd],
      });
      code = await new Promise<number | null>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(
            new QemuStartError(
              `QEMU did not finish starting within ${Math.round(timeoutMs / 1000)} s`,
            ),
          );
        }, timeoutMs);
        child.once('error', (error) => {
          clearTimeout(timer);
          reject(
            new QemuStartError(
              `cannot run ${this.binary}: ${(error as NodeJS.ErrnoException).code ?? error.message}`,
            ),
          );
        });
        child.once('exit', (exitCode, signal) => {
          clearTimeout(timer);
          resolve(signal ? null : exitCode);
        });
      });
    } finally {
      await log.close();
    }
    if (code !== 0)
      throw new QemuStartError(
        qemuComplaint(await readFile(logFile, 'utf8').catch(() => '')) ||
          `QEMU exited with status ${code ?? 'killed'}`,
      );
  }

  async readPid(pidFile: string): Promise<number | undefined> {
    const text = await readFile(pidFile, 'utf8').catch(() => '');
    const pid = Number(text.trim());
    return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
  }

  /** Whether `pid` is a live process with `marker` (the VM's pidfile path, unique per state dir and VM) among its arguments. */
  async isAlive(pid: number, marker: string): Promise<boolean> {
    const [cmdline, stat] = await Promise.all([
      readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''),
      readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''),
    ]);
    if (!cmdline.split('\0').includes(marker)) return false;
    return statFields(stat)?.[0] !== 'Z';
  }

  /** Sends a signal to a process that isAlive() confirmed; a process that is gone already is not an error. */
  signal(pid: number, signal: NodeJS.Signals): void {
    try {
      process.kill(pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }

  /** Resolves true once the process is gone, false after `timeoutMs`. */
  async waitForExit(pid: number, marker: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!(await this.isAlive(pid, marker))) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /** SIGKILL and wait (a process in uninterruptible I/O may take a moment). */
  async kill(pid: number, marker: string): Promise<void> {
    if (!(await this.isAlive(pid, marker))) return;
    this.signal(pid, 'SIGKILL');
    if (!(await this.waitForExit(pid, marker, 10_000)))
      throw new Error(`QEMU (pid ${pid}) did not exit after SIGKILL`);
  }

  /** CPU time, resident memory and age of a process, from /proc; undefined when it is gone. */
  async sample(pid: number): Promise<ProcessSample | undefined> {
    const [stat, statm, uptime] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''),
      readFile(`/proc/${pid}/statm`, 'utf8').catch(() => ''),
      readFile('/proc/uptime', 'utf8').catch(() => ''),
    ]);
    const fields = statFields(stat);
    if (!fields) return undefined;
    // fields[0] is the state (field 3 of proc(5)): utime is field 14, stime 15, starttime 22
    const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    const startedAt = Number(fields[19]) / CLOCK_TICKS;
    const rssBytes = Number(statm.split(' ')[1] ?? 0) * PAGE_SIZE;
    const ageSeconds = Math.max(0, Number(uptime.split(' ')[0] ?? 0) - startedAt);
    if (![cpuSeconds, rssBytes, ageSeconds].every(Number.isFinite)) return undefined;
    return { cpuSeconds, rssBytes, ageSeconds };
  }

  /** QEMU's version ("7.2.22"), from `qemu --version`. */
  async version(timeoutMs: number): Promise<string> {
    const output = await this.run(['--version'], timeoutMs);
    const match = /version (\d+\.\d+\.\d+)/.exec(output);
    if (!match) throw new Error(`unexpected output of ${this.binary} --version`);
    return match[1]!;
  }

  /** The CPU model names this QEMU knows (`-cpu help`). */
  async cpuModels(timeoutMs: number): Promise<Set<string>> {
    const output = await this.run(['-machine', 'none', '-cpu', 'help'], timeoutMs);
    const names = new Set<string>();
    for (const line of output.split('\n')) {
      const match = /^x86 +(\S+)/.exec(line);
      if (match) names.add(match[1]!);
    }
    return names;
  }

  /** Whether a file can be opened with O_DIRECT (cache=none); tmpfs, for one, cannot. */
  async supportsDirectIo(file: string): Promise<boolean> {
    try {
      const handle = await open(file, constants.O_RDONLY | constants.O_DIRECT);
      await handle.close();
      return true;
    } catch {
      return false;
    }
  }

  async isFile(path: string): Promise<boolean> {
    return (await stat(path).catch(() => undefined))?.isFile() ?? false;
  }

  /** The VM's run directory (0700: its sockets are for the agent only), emptied of an earlier QEMU's files. */
  async prepareRunDir(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await Promise.all(
      [...STALE_RUN_FILES, 'psk', 'psk-out'].map((name) =>
        rm(join(dir, name), { recursive: true, force: true }),
      ),
    );
  }

  async removeDir(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
  }

  async listDirs(dir: string): Promise<string[]> {
    return readdir(dir).catch(() => [] as string[]);
  }

  /** A tls-creds-psk directory: keys.psk holding `identity:hexkey`, readable by the agent (and QEMU, running as it) only. */
  async writePsk(dir: string, identity: string, key: Buffer): Promise<void> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { mode: 0o700 });
    await writeFile(join(dir, 'keys.psk'), `${identity}:${key.toString('hex')}\n`, {
      mode: 0o600,
      flag: 'wx',
    });
    // Without dh-params.pem QEMU generates 2048-bit DH parameters for every migration (seconds).
    await writeFile(join(dir, 'dh-params.pem'), FFDHE2048_PEM, { mode: 0o600, flag: 'wx' });
  }

  private run(args: string[], timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        this.binary,
        args,
        { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' },
        (error, stdout, stderr) => {
          if (error) {
            const reason = error.killed
              ? `timed out after ${timeoutMs} ms`
              : qemuComplaint(stderr) || error.message;
            reject(new Error(`${this.binary} ${args.join(' ')}: ${reason}`));
          } else resolve(stdout);
        },
      );
    });
  }
}

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function statFields(stat: string): string[] | undefined {
  const end = stat.lastIndexOf(')');
  if (end < 0) return undefined;
  return stat.slice(end + 2).split(' ');
}

/** QEMU's error lines, without its program-name prefix, short enough for an error message. */
function qemuComplaint(log: string): string {
  const lines = log
    .split('\n')
    .map((l) => l.replace(/^\S*qemu-system-\S+: /, '').trim())
    .filter(Boolean);
  return lines.slice(-4).join('; ').slice(0, 600);
}
