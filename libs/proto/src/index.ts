import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ProtoGrpcType } from './generated/debvisor';
import type { ProtoGrpcType as HealthProtoGrpcType } from './generated/health';

export type * from './generated/debvisor/v1/all';
export type { ProtoGrpcType, HealthProtoGrpcType };
export type {
  HealthClient,
  HealthDefinition,
  HealthHandlers,
} from './generated/grpc/health/v1/Health';
export type {
  HealthCheckRequest,
  HealthCheckRequest__Output,
} from './generated/grpc/health/v1/HealthCheckRequest';
export type {
  HealthCheckResponse,
  HealthCheckResponse__Output,
} from './generated/grpc/health/v1/HealthCheckResponse';
export type { HealthListRequest } from './generated/grpc/health/v1/HealthListRequest';
export type {
  HealthListResponse,
  HealthListResponse__Output,
} from './generated/grpc/health/v1/HealthListResponse';

/** Must match the flags in scripts/gen-proto.mjs, which generates the types from the same file. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** proto/debvisor.proto (or another file under proto/), found from the source tree, the built tree or the working directory. */
export function protoPath(file = 'debvisor.proto'): string {
  for (const candidate of [
    join(__dirname, '../../../proto', file),
    join(process.cwd(), 'proto', file),
  ]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`proto/${file} not found next to the installation`);
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

let cachedHealth: HealthProtoGrpcType['grpc']['health']['v1'] | undefined;

/** The loaded grpc.health.v1 package (gRPC's health checking protocol): the Health service. */
export function grpcHealthV1(): HealthProtoGrpcType['grpc']['health']['v1'] {
  if (!cachedHealth) {
    const definition = protoLoader.loadSync(
      protoPath('grpc/health/v1/health.proto'),
      LOADER_OPTIONS,
    );
    cachedHealth = (grpc.loadPackageDefinition(definition) as unknown as HealthProtoGrpcType).grpc
      .health.v1;
  }
  return cachedHealth;
}
