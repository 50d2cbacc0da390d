// `npm run gen:api`: writes apps/web/src/api/schema.d.ts (the web UI's API types) from the OpenAPI
// document of a freshly started manager. The test of the same name fails when the file is stale.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = spawnSync(
  process.execPath,
  [join(root, 'node_modules/vitest/vitest.mjs'), 'run', 'apps/manager/test/web-api-schema.spec.ts'],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, DEBVISOR_WRITE_API_SCHEMA: '1' },
    timeout: 600_000,
  },
);
process.exit(run.status ?? 1);
