// Generates the TypeScript types of proto/debvisor.proto (the agent contract) and
// proto/grpc/health/v1/health.proto (gRPC's health checking protocol) into libs/proto/src/generated.
// The loader options here must match LOADER_OPTIONS in libs/proto/src/index.ts.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The generator of the proto-loader that libs/proto itself uses (another version may be hoisted to
// the root node_modules; its types would not match the library's).
const loaderPackage = createRequire(join(root, 'libs/proto/package.json')).resolve(
  '@grpc/proto-loader/package.json',
);
const generator = join(dirname(loaderPackage), 'build/bin/proto-loader-gen-types.js');
const out = join(root, 'libs/proto/src/generated');
rmSync(out, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [
    generator,
    '--longs=String',
    '--enums=String',
    '--defaults',
    '--oneofs',
    '--grpcLib=@grpc/grpc-js',
    '--outDir',
    out,
    '-I',
    join(root, 'proto'),
    '--',
    'debvisor.proto',
    'grpc/health/v1/health.proto',
  ],
  { stdio: 'inherit', timeout: 60_000 },
);

// One barrel so consumers import message types by name from @debvisor/proto.
import { readdirSync, writeFileSync } from 'node:fs';
const dir = join(out, 'debvisor/v1');
const lines = readdirSync(dir)
  .filter((f) => f.endsWith('.ts'))
  .sort()
  .map((f) => `export type * from './${f.replace(/\.ts$/, '')}';`);
writeFileSync(join(dir, 'all.ts'), lines.join('\n') + '\n');
