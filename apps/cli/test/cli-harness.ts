import { Readable } from 'node:stream';
import type { CliEnv } from '../src/config/cli-config';
import { run } from '../src/program';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: CliEnv;
  /** Piped to the CLI's standard input (not a terminal). */
  stdin?: string;
}

/**
 * Runs `debvisor <args>` in this process, as main.ts does but with collected output and its own
 * environment (nothing of the test process's environment leaks in).
 */
export async function debvisor(
  args: readonly string[],
  options: RunOptions = {},
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await run(args, {
    env: { HOME: '/nonexistent', ...options.env },
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    stdin: Readable.from(options.stdin === undefined ? [] : [options.stdin]),
    pollIntervalMs: 100,
  });
  return { code, stdout, stderr };
}

/** A result as text for an assertion message. */
export function show(result: CliResult): string {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}
