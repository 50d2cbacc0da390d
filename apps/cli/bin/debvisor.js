#!/usr/bin/env node
// The `debvisor` command (npx debvisor …): runs the built CLI, apps/cli/dist/main.js.
'use strict';
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const main = join(__dirname, '..', 'dist', 'main.js');
if (!existsSync(main)) {
  process.stderr.write('debvisor: not built yet: run `npm run build` (or `npx tsc -b apps/cli`) first\n');
  process.exit(1);
}
require(main);
