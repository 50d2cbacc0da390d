#!/usr/bin/env node
// `debvisor`: the command-line client of the DebVisor Datacenter Manager (docs/cli.md).
import { run } from './program';

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
