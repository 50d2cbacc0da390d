#!/usr/bin/env node
// npm run audit:verify — walks the audit log's hash chain (see verify.command.ts and docs/manager.md).
import 'reflect-metadata';
import { runVerify } from './verify.command';

runVerify(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
}).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `audit:verify: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 3;
  },
);
