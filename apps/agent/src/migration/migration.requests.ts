import { endpointSchema, nodeIdSchema, uuidSchema } from '@debvisor/common';
import { z } from 'zod';
import { vmDefinitionSchema, type VmDefinition } from '../drivers/hypervisor.driver';
import { cpuFlagSchema } from '../config/agent-config.schema';
import { emptyOr } from '../rpc/request-validation';

const NODE_ID = 'a node id is 1-63 lower-case letters, digits and inner hyphens';
/** uint64 fields arrive as decimal strings (the loader's longs: String). */
const uint64 = z
  .union([z.string().regex(/^\d{1,16}$/, 'a whole number'), z.int().min(0)])
  .transform(Number)
  .pipe(z.int().min(0).max(Number.MAX_SAFE_INTEGER));
const nameMap = z
  .record(
    z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a pool or bridge name'),
    z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a pool or bridge name'),
  )
  .refine((map) => Object.keys(map).length <= 64, 'at most 64 entries');
const pem = z
  .string()
  .max(64 * 1024, 'a PEM of at most 64 KiB')
  .refine(
    (value) => value === '' || value.includes('-----BEGIN CERTIFICATE-----'),
    'a PEM certificate',
  );
const cpuFlags = z.array(cpuFlagSchema).max(1024);

/** A source disk's mirroring as the source's PrepareMigration answered it. */
export const migrationDiskSchema = z.object({
  pool: z.string().max(64),
  image: z.string().max(64),
  globalId: z.string().max(128),
  primary: z.boolean(),
  lastSnapshotAt: z.string().max(64),
});
export type MigrationDisk = z.infer<typeof migrationDiskSchema>;

/** A VmSpec as it arrives over gRPC, turned into the driver's definition. */
export const protoVmSpecSchema: z.ZodType<VmDefinition, unknown> = z
  .object({
    uuid: z.string(),
    name: z.string(),
    vcpus: z.number(),
    memoryBytes: uint64,
    disks: z.array(
      z.object({ pool: z.string(), image: z.string(), sizeBytes: uint64, bus: z.string() }),
    ),
    nics: z.array(
      z.object({ mac: z.string(), bridge: z.string(), model: z.string(), vlan: z.number() }),
    ),
    cpuModel: z.string(),
    hugepages: z.boolean(),
    tenant: z.string(),
    labels: z.record(z.string(), z.string()),
  })
  .pipe(vmDefinitionSchema);

export const prepareMigrationRequestSchema = z
  .object({
    vm: protoVmSpecSchema,
    role: z.enum(['source', 'target'], { error: 'role is "source" or "target"' }),
    targetNodeId: emptyOr(nodeIdSchema, NODE_ID),
    storageMap: nameMap,
    networkMap: nameMap,
    online: z.boolean(),
    migrationId: emptyOr(uuidSchema, 'a migration id is a UUID'),
    checkOnly: z.boolean(),
    transport: z.enum(['', 'direct', 'tunnel'], { error: 'transport is "direct" or "tunnel"' }),
    allowPostcopy: z.boolean(),
    sourceCaPem: pem,
    sourceNodeId: emptyOr(nodeIdSchema, NODE_ID),
    sourceCpuModel: z.string().max(200),
    sourceCpuFlags: cpuFlags,
    sourceDisks: z.array(migrationDiskSchema).max(64, 'at most 64 disks'),
  })
  .refine((r) => r.checkOnly || r.role === 'source' || r.migrationId !== '', {
    message: 'a target reservation needs a migration id',
    path: ['migrationId'],
  })
  .refine((r) => r.role === 'source' || r.targetNodeId !== '', {
    message: 'the target role needs target_node_id',
    path: ['targetNodeId'],
  });
export type PrepareMigrationInput = z.infer<typeof prepareMigrationRequestSchema>;

export const migrateVmRequestSchema = z
  .object({
    uuid: uuidSchema,
    migrationId: uuidSchema,
    targetEndpoint: endpointSchema,
    cookie: z
      .string()
      .regex(/^dvmc_[A-Za-z0-9_-]{43}$/, 'a migration cookie is dvmc_ followed by 43 characters'),
    transport: z.enum(['direct', 'tunnel'], { error: 'transport is "direct" or "tunnel"' }),
    mode: z
      .enum(['', 'precopy', 'postcopy', 'auto'], {
        error: 'mode is "precopy", "postcopy" or "auto"',
      })
      .transform((m) => (m === '' ? 'precopy' : m)),
    autoConverge: z.boolean(),
    downtimeLimitMs: z.int().min(0).max(600_000),
    bandwidthLimitBytes: uint64,
    completionTimeoutSecondsPerGib: z.int().min(0).max(86_400),
    allowPostcopy: z.boolean(),
    targetCaPem: pem,
    targetNodeId: nodeIdSchema,
    offline: z.boolean(),
    targetDataEndpoint: z
      .string()
      .max(1024)
      .regex(
        /^$|^tcp:[A-Za-z0-9.:[\]-]+:\d{1,5}$|^libvirt:[A-Za-z0-9+]+:\/\/[A-Za-z0-9.:[\]_-]+\/[a-z]+$/,
        'a data endpoint is tcp:<host>:<port> or libvirt:<uri>',
      ),
  })
  .refine((r) => r.offline || r.transport === 'tunnel' || r.targetDataEndpoint !== '', {
    message: 'the direct transport needs target_data_endpoint',
    path: ['targetDataEndpoint'],
  });
export type MigrateVmInput = z.infer<typeof migrateVmRequestSchema>;

export const migrationRefSchema = z.object({
  migrationId: uuidSchema,
  vmUuid: uuidSchema,
  nodeId: emptyOr(nodeIdSchema, NODE_ID),
});
export type MigrationRef = z.infer<typeof migrationRefSchema>;

/** The first frame of a tunnel: who is migrating what, with which cookie. */
export const tunnelOpeningSchema = z.object({
  cookie: z.string().max(128),
  vmUuid: uuidSchema,
  migrationId: uuidSchema,
  controlOnly: z.boolean(),
  /** The source opens data connections for QEMU's bytes (the tunnel then carries control words only). */
  dataConnections: z.boolean(),
});
