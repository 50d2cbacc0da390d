import { nodeIdSchema, remoteIdSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { MIGRATION_MODES, MIGRATION_TRANSPORTS } from '../task-details/migration-details.dto';

/** Pool and bridge names as the agents accept them in storage and network maps. */
const mapNameSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
    'a pool or bridge name is 1-63 letters, digits, dots, underscores and hyphens, starting with a letter or digit',
  );
const nameMapSchema = z
  .record(mapNameSchema, mapNameSchema)
  .refine((map) => Object.keys(map).length <= 64, 'at most 64 entries');

/** What a migration request asks for (POST …/migrate and …/migrate/preflight). */
export const migrateBodySchema = z.strictObject({
  targetRemote: remoteIdSchema
    .optional()
    .meta({ description: "The remote to move the VM to (default: the VM's own remote)" }),
  targetNode: nodeIdSchema.meta({
    description: 'The node of the target remote that will run the VM',
  }),
  online: z.boolean().default(true).meta({
    description:
      'Live migration of a running VM (default); false moves the definition of a stopped VM',
  }),
  transport: z.enum(MIGRATION_TRANSPORTS).optional().meta({
    description:
      "direct: QEMU-native TLS to the target; tunnel: through the agents' mTLS port. Default: direct within a remote, tunnel across remotes",
  }),
  mode: z.enum(MIGRATION_MODES).default('precopy').meta({
    description:
      'precopy (default); postcopy: switch after the first pass; auto: switch when pre-copy does not converge (needs allowPostcopy)',
  }),
  autoConverge: z
    .boolean()
    .default(false)
    .meta({ description: "Throttle the guest's vCPUs when pre-copy does not converge" }),
  allowPostcopy: z.boolean().default(false).meta({
    description: 'Allow the policy to switch to post-copy (auto mode, completion timeout)',
  }),
  downtimeLimitMs: z
    .int()
    .min(1)
    .max(600_000)
    .default(300)
    .meta({ description: 'Longest pause at the switchover QEMU may plan for' }),
  bandwidthLimitBytes: z
    .int()
    .min(0)
    .max(Number.MAX_SAFE_INTEGER)
    .default(0)
    .meta({ description: 'Bytes per second; 0: unlimited' }),
  completionTimeoutSecondsPerGib: z.int().min(0).max(86_400).default(60).meta({
    description:
      'Pre-copy gives up (or switches to post-copy when allowed) after this many seconds per GiB of guest memory; 0: never',
  }),
  storageMap: nameMapSchema
    .default({})
    .meta({ description: 'Source pool → target pool (pools not named keep their name)' }),
  networkMap: nameMapSchema
    .default({})
    .meta({ description: 'Source bridge → target bridge (bridges not named keep their name)' }),
});
export type MigrateBody = z.infer<typeof migrateBodySchema>;
export class MigrateBodyDto extends createZodDto(migrateBodySchema) {}

export const PREFLIGHT_SIDES = ['manager', 'source', 'target'] as const;
export const PREFLIGHT_RESULTS = ['pass', 'warn', 'fail'] as const;

export const preflightCheckSchema = z.object({
  side: z
    .enum(PREFLIGHT_SIDES)
    .meta({ description: 'Who checked: the source end, the target end, or the manager itself' }),
  name: z.string(),
  result: z.enum(PREFLIGHT_RESULTS),
  reason: z.string().meta({ description: 'What was found, in words a person can act on' }),
});
export type PreflightCheckView = z.infer<typeof preflightCheckSchema>;

export const transferEstimateSchema = z.object({
  memoryBytes: z.int().min(0).meta({
    description: "The guest's memory: what a live migration sends at least (0: offline)",
  }),
  measuredBytesPerSecond: z.number().nullable().meta({
    description:
      'The median rate (transferred bytes / QEMU total time) of the last completed live migrations between the two remotes; null: none yet',
  }),
  measuredMigrations: z
    .int()
    .min(0)
    .meta({ description: 'How many migrations the measured rate is taken from' }),
  linkCapBytesPerSecond: z.number().nullable().meta({
    description:
      'The cap of the link between the two remotes (DEBVISOR_MIGRATION_LINK_CAP_BYTES); null: none applies',
  }),
  bytesPerSecond: z.number().nullable().meta({
    description:
      "The rate expected: the lowest of the measured rate, the request's bandwidth limit and the link cap; null: nothing to go by",
  }),
  seconds: z
    .number()
    .nullable()
    .meta({ description: 'memoryBytes at bytesPerSecond, rounded up; null: no rate' }),
});
export type TransferEstimate = z.infer<typeof transferEstimateSchema>;

export const preflightAnswerSchema = z.object({
  ok: z.boolean().meta({ description: 'No check failed: the migration may be started' }),
  source: z.object({ remote: z.string(), node: z.string() }),
  target: z.object({ remote: z.string(), node: z.string() }),
  transport: z.enum(MIGRATION_TRANSPORTS),
  checks: z.array(preflightCheckSchema),
  estimate: transferEstimateSchema.meta({
    description: 'How long the transfer should take, and what the estimate rests on',
  }),
});
export type PreflightAnswer = z.infer<typeof preflightAnswerSchema>;
export class PreflightAnswerDto extends createZodDto(preflightAnswerSchema) {}
