#!/usr/bin/env node
// npm run backup -- <file> / npm run restore -- <file> (see backup.command.ts and docs/manager.md).
import 'reflect-metadata';
import { runBackupCommand } from './backup.command';

const [mode, ...args] = process.argv.slice(2);
if (mode !== 'backup' && mode !== 'restore') {
  process.stderr.write('usage: backup-cli.js backup|restore <file>\n');
  process.exitCode = 2;
} else {
  runBackupCommand(mode, args, {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`${mode}: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
