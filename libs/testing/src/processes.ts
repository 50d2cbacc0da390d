import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far (bounded to the last 256 KiB). */
  output(): string;
  /** Resolves once a line matching `pattern` was written; rejects if the process exits first or on timeout. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL at once (a crash, as far as the process's peers can tell). */
  kill(): Promise<void>;
  readonly exited: Promise<number | null>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

const MAX_OUTPUT = 256 * 1024;

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Also append the output to this file. */
  logFile?: string;
}

/** Starts a program (never through a shell) and keeps it on a leash for the test. */
export function spawnManaged(
  name: string,
  command: string,
  args: string[],
  options: SpawnOptions = {},
): ManagedProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let buffer = '';
  const listeners = new Set<() => void>();
  // Logs are private (0600): a child's output may hold secrets (the manager's first-start banner).
  const log = options.logFile
    ? createWriteStream(options.logFile, { flags: 'a', mode: 0o600 })
    : undefined;
  const onData = (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    if (buffer.length > MAX_OUTPUT) buffer = buffer.slice(-MAX_OUTPUT);
    log?.write(chunk);
    for (const listener of listeners) listener();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      running.delete(child);
      log?.end();
      for (const listener of listeners) listener();
      resolve(code);
    });
    child.once('error', (error) => {
      buffer += `\n[spawn error] ${error.message}\n`;
      running.delete(child);
      resolve(null);
    });
  });
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  const stopWith = async (signal: NodeJS.Signals, graceMs: number) => {
    if (hasExited) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };

  return {
    name,
    child,
    exited,
    output: () => buffer,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = buffer.match(pattern);
          if (match) return done(() => resolve(match));
          if (hasExited || child.exitCode !== null) {
            return done(() =>
              reject(
                new Error(
                  `${name} exited (code ${child.exitCode}) before printing ${pattern}:\n${buffer.slice(-4000)}`,
                ),
              ),
            );
          }
        };
        const timer = setTimeout(
          () =>
            done(() =>
              reject(
                new Error(
                  `${name} did not print ${pattern} within ${timeoutMs} ms:\n${buffer.slice(-4000)}`,
                ),
              ),
            ),
          timeoutMs,
        );
        const done = (finish: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          finish();
        };
        listeners.add(check);
        check();
      });
    },
    stop: (graceMs = 10_000) => stopWith('SIGTERM', graceMs),
    kill: () => stopWith('SIGKILL', 0),
  };
}
