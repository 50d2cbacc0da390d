#!/usr/bin/env node
// `debvisor`: the command-line client of the DebVisor Datacenter Manager (docs/cli.md).
import { run } from './program';

// `debvisor … | head`: a reader that stops early is not an error.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });

run(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
}).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`debvisor: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
