import { z } from 'zod';

/*
 * What a vm.migrate task adds to GET /api/v1/tasks/{id}. A leaf: tasks/ documents it in the task
 * view and migration/ fills it in, so neither folder imports the other back.
 */

/** The phases of a migration as the manager runs it; the last three are final. */
export const MIGRATION_PHASES = [
  'preflight',
  'prepare',
  'transfer',
  'completed',
  'failed',
  'cancelled',
] as const;
export const MIGRATION_TRANSPORTS = ['direct', 'tunnel'] as const;
export const MIGRATION_MODES = ['precopy', 'postcopy', 'auto'] as const;

/** The options of a migration as it runs them (defaults filled in). Never holds a cookie or a key. */
export const migrationOptionsSchema = z.object({
  online: z.boolean(),
  transport: z.enum(MIGRATION_TRANSPORTS),
  mode: z.enum(MIGRATION_MODES),
  autoConverge: z.boolean(),
  allowPostcopy: z.boolean(),
  downtimeLimitMs: z.number().int(),
  bandwidthLimitBytes: z.number().int(),
  completionTimeoutSecondsPerGib: z.number().int(),
  storageMap: z.record(z.string(), z.string()),
  networkMap: z.record(z.string(), z.string()),
});
export type MigrationOptions = z.infer<typeof migrationOptionsSchema>;

/** The last progress the source reported. */
export const migrationFiguresSchema = z.object({
  stage: z.string().meta({
    description: "The source's own stage: setup, precopy, postcopy, switchover, completed …",
  }),
  transferredBytes: z.number(),
  remainingBytes: z.number(),
  totalBytes: z.number(),
  dirtyRateBytes: z.number().meta({ description: 'Bytes per second the guest dirties' }),
  expectedDowntimeMs: z.number(),
  etaSeconds: z.number().meta({ description: '0 when unknown' }),
  iteration: z.number().int().meta({ description: 'Pre-copy pass' }),
  downtimeMs: z
    .number()
    .nullable()
    .meta({ description: 'The pause QEMU measured at the switchover (once completed)' }),
  totalTimeMs: z.number().nullable(),
  message: z.string(),
});
export type MigrationFigures = z.infer<typeof migrationFiguresSchema>;

export const migrationDetailsSchema = z
  .object({
    phase: z.enum(MIGRATION_PHASES),
    vm: z.string(),
    source: z.object({ remote: z.string(), node: z.string().nullable() }),
    target: z.object({ remote: z.string(), node: z.string() }),
    options: migrationOptionsSchema,
    progress: migrationFiguresSchema.nullable(),
    journal: z.array(
      z.object({ at: z.iso.datetime(), phase: z.enum(MIGRATION_PHASES), message: z.string() }),
    ),
    createdAt: z.iso.datetime(),
    transferStartedAt: z.iso.datetime().nullable(),
    finishedAt: z.iso.datetime().nullable(),
    updatedAt: z.iso.datetime(),
  })
  .meta({
    description: 'A migration task (vm.migrate): phase, last figures and the phase journal',
  });
export type MigrationDetails = z.infer<typeof migrationDetailsSchema>;
