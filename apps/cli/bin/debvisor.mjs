#!/usr/bin/env node
// The `debvisor` command (npx debvisor …): runs the built CLI, apps/cli/dist/main.js.
import { existsSync } from 'node:fs';

const main = new URL('../dist/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    'debvisor: not built yet: run `npm run build` (or `npx tsc -b apps/cli`) first\n',
  );
  process.exit(1);
}
await import(main.href);
