import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ProtoGrpcType } from './generated/debvisor';

export type * from './generated/debvisor/v1/all';
export type { ProtoGrpcType };

/** Must match the flags in scripts/gen-proto.mjs, which generates the types from the same file. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** proto/debvisor.proto, found from the source tree, the built tree or DEBVISOR_PROTO_DIR's parent layout. */
export function protoPath(): string {
  for (const candidate of [join(__dirname, '../../../proto/debvisor.proto'), join(process.cwd(), 'proto/debvisor.proto')]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('proto/debvisor.proto not found next to the installation');
}

let cached: ProtoGrpcType['debvisor']['v1'] | undefined;

/** The loaded debvisor.v1 package: service constructors and definitions. */
export function debvisorV1(): ProtoGrpcType['debvisor']['v1'] {
  if (!cached) {
    const definition = protoLoader.loadSync(protoPath(), LOADER_OPTIONS);
    cached = (grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType).debvisor.v1;
  }
  return cached;
}
