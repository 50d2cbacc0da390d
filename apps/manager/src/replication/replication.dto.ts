import { nodeIdSchema, remoteIdSchema, uuidSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { DR_ACTIONS, REPLICATION_PHASES, SITE_ROLES } from './dr-state';
import { PAIR_STATES } from './replication-pair.entity';

/** RBD pool names as the agents accept them. */
export const poolNameSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
    'a pool name is 1-63 letters, digits, dots, underscores and hyphens, starting with a letter or digit',
  );

/** A mirror-snapshot interval as rbd's schedules take it. */
export const scheduleIntervalSchema = z
  .string()
  .regex(/^[1-9]\d{0,3}[mhd]$/, 'an interval like 5m, 1h or 1d (minutes, hours, days)');

// --- pairs -----------------------------------------------------------------------------------

export const createPairSchema = z
  .strictObject({
    remoteA: remoteIdSchema.meta({
      description: 'The remote whose agents create the peer bootstrap token',
    }),
    poolA: poolNameSchema,
    remoteB: remoteIdSchema.meta({ description: 'The remote whose agents import it' }),
    poolB: poolNameSchema,
  })
  .refine((body) => body.remoteA !== body.remoteB, {
    message: 'remoteB must be another remote than remoteA',
    path: ['remoteB'],
  });
export type CreatePairBody = z.infer<typeof createPairSchema>;
export class CreatePairDto extends createZodDto(createPairSchema) {}

export class PairParamsDto extends createZodDto(z.strictObject({ id: uuidSchema })) {}

export const poolHealthSchema = z.object({
  remote: z.string(),
  pool: z.string(),
  reachable: z
    .boolean()
    .meta({ description: "False when the remote's agents did not answer (error says why)" }),
  error: z.string().nullable(),
  mode: z.string().meta({ description: 'image once pairing is possible; disabled before' }),
  siteName: z.string(),
  peers: z.array(z.object({ siteName: z.string(), direction: z.string() })),
  health: z
    .string()
    .meta({ description: 'OK | WARNING | ERROR | UNKNOWN (rbd mirror pool status)' }),
  daemonHealth: z.string(),
  imageHealth: z.string(),
  states: z
    .record(z.string(), z.number().int())
    .meta({ description: 'Images per mirroring state' }),
});
export type PoolHealthView = z.infer<typeof poolHealthSchema>;

export const pairSchema = z.object({
  id: z.string(),
  remoteA: z.string(),
  poolA: z.string(),
  remoteB: z.string(),
  poolB: z.string(),
  state: z.enum(PAIR_STATES),
  error: z.string().nullable(),
  taskId: z.string().meta({ description: 'The pairing task' }),
  vms: z.number().int().meta({ description: 'How many VMs mirror through this pair' }),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  health: z.object({ a: poolHealthSchema, b: poolHealthSchema }).optional().meta({
    description: 'Pool mirroring health of both sides, read now (absent with ?health=false)',
  }),
});
export type PairView = z.infer<typeof pairSchema>;
export class PairDto extends createZodDto(pairSchema) {}
export class PairListDto extends createZodDto(z.object({ items: z.array(pairSchema) })) {}

export const pairQuerySchema = z.strictObject({
  health: z
    .enum(['true', 'false'])
    .default('true')
    .transform((value) => value === 'true')
    .meta({
      description:
        "Read both sides' pool health for every pair (default); false answers from the manager's records only",
    }),
});
export class PairQueryDto extends createZodDto(pairQuerySchema) {}

// --- per VM ----------------------------------------------------------------------------------

export const enableReplicationSchema = z
  .strictObject({
    pair: uuidSchema.optional().meta({
      description:
        "The pair to mirror through (default: the one pairing the VM's remote with targetRemote)",
    }),
    targetRemote: remoteIdSchema
      .optional()
      .meta({ description: 'The remote to mirror to (when pair is not given)' }),
    scheduleInterval: scheduleIntervalSchema
      .default('5m')
      .meta({ description: 'Mirror-snapshot schedule of every disk (default 5m)' }),
    rpoTargetSeconds: z
      .int()
      .min(60)
      .max(30 * 86_400)
      .default(900)
      .meta({
        description: 'The RPO this VM should keep; an alert fires above it (default 900 s)',
      }),
  })
  .refine((body) => body.pair !== undefined || body.targetRemote !== undefined, {
    message: 'give pair or targetRemote',
    path: ['pair'],
  });
export type EnableReplicationBody = z.infer<typeof enableReplicationSchema>;
export class EnableReplicationDto extends createZodDto(enableReplicationSchema) {}

export const switchoverSchema = z.strictObject({
  targetNode: nodeIdSchema.optional().meta({
    description:
      'The node of the other remote to start the VM on (default: the first node that is up)',
  }),
});
export type SwitchoverBody = z.infer<typeof switchoverSchema>;
export class SwitchoverDto extends createZodDto(switchoverSchema) {}

export const failoverSchema = z
  .strictObject({
    confirmDataLoss: z.literal(true, {
      error:
        'confirmDataLoss must be true: a failover loses what was written since the last mirrored snapshot (GET …/replication/failover shows it)',
    }),
    declareSourceDown: z.boolean().default(false).meta({
      description:
        "The source's cluster cannot be reached to fence it; the operator declares it down (recorded in the audit log with the reason)",
    }),
    reason: z
      .string()
      .trim()
      .min(1)
      .max(500)
      .optional()
      .meta({ description: 'Why the source is declared down (required with declareSourceDown)' }),
    targetNode: nodeIdSchema.optional(),
  })
  .refine((body) => !body.declareSourceDown || body.reason !== undefined, {
    message: 'declareSourceDown needs a reason',
    path: ['reason'],
  });
export type FailoverBody = z.infer<typeof failoverSchema>;
export class FailoverDto extends createZodDto(failoverSchema) {}

export class EmptyBodyDto extends createZodDto(z.strictObject({})) {}

export const siteSchema = z.object({
  remote: z.string(),
  pool: z.string(),
  role: z.enum(SITE_ROLES).meta({
    description:
      'primary (the VM runs here) | secondary (receives mirror snapshots) | resync (being resynced)',
  }),
});

export const imageSiteSchema = z.object({
  remote: z.string(),
  pool: z.string(),
  reachable: z.boolean(),
  error: z.string().nullable(),
  primary: z.boolean().nullable(),
  state: z.string().meta({ description: 'up+replaying, up+stopped, up+error, down+unknown …' }),
  description: z.string(),
  lastMirroredSnapshotAt: z.string().nullable(),
  lastSnapshotAt: z.string().nullable(),
  bytesPerSecond: z.number(),
  secondsUntilSynced: z.number().int(),
  splitBrain: z.boolean(),
});
export type ImageSiteView = z.infer<typeof imageSiteSchema>;

export const imageStatusSchema = z.object({
  image: z.string(),
  sourcePool: z.string(),
  targetPool: z.string(),
  sites: z.array(imageSiteSchema),
  lastMirroredSnapshotAt: z
    .string()
    .nullable()
    .meta({ description: 'The newest mirror snapshot the secondary holds completely' }),
  lagSeconds: z.number().int().nullable().meta({
    description: "How far the secondary's newest complete snapshot is behind the primary's newest",
  }),
  bytesPerSecond: z.number(),
  secondsUntilSynced: z.number().int(),
  splitBrain: z.boolean(),
});
export type ImageStatusView = z.infer<typeof imageStatusSchema>;

export const MIRROR_HEALTH = ['ok', 'syncing', 'error', 'split-brain', 'unknown'] as const;
export type MirrorHealth = (typeof MIRROR_HEALTH)[number];

export const vmReplicationSchema = z.object({
  vm: z.string(),
  name: z.string(),
  pair: z.string(),
  state: z.enum(SITE_ROLES).meta({
    description:
      "The VM's DR state at its source remote: primary, secondary once it runs at the target, resync while the source is resynced",
  }),
  primaryRemote: z
    .string()
    .meta({ description: 'Where the VM runs (its images are primary there)' }),
  source: siteSchema,
  target: siteSchema,
  phase: z.enum(REPLICATION_PHASES),
  scheduleInterval: z.string(),
  rpoTargetSeconds: z.number().int(),
  rpoSeconds: z.number().int().nullable().meta({
    description:
      "now − the oldest of its disks' last mirrored snapshot; null when no site answered",
  }),
  rpoExceeded: z.boolean().nullable(),
  lastMirroredSnapshotAt: z
    .string()
    .nullable()
    .meta({ description: 'The oldest of the disks’ last mirrored snapshots' }),
  lagSeconds: z
    .number()
    .int()
    .nullable()
    .meta({ description: "The most behind disk's lag (null: not read yet)" }),
  bytesPerSecond: z
    .number()
    .meta({ description: 'Replication rate of all its disks together, as rbd-mirror reports it' }),
  health: z.enum(MIRROR_HEALTH),
  splitBrain: z
    .boolean()
    .meta({ description: 'Some image is primary at both sites: resync the stale one' }),
  observedAt: z.iso
    .datetime()
    .nullable()
    .meta({ description: 'When the sites were read (null: not yet)' }),
  pending: z.object({ action: z.enum(DR_ACTIONS), taskId: z.string() }).nullable(),
  lastChange: z.string(),
  lastChangeAt: z.iso.datetime(),
  images: z
    .array(imageStatusSchema)
    .optional()
    .meta({ description: 'Per image and site (GET of one VM)' }),
});
export type VmReplicationView = z.infer<typeof vmReplicationSchema>;
export class VmReplicationDto extends createZodDto(vmReplicationSchema) {}
export class VmReplicationListDto extends createZodDto(
  z.object({ items: z.array(vmReplicationSchema) }),
) {}

export const vmReplicationQuerySchema = z.strictObject({
  remote: remoteIdSchema
    .optional()
    .meta({ description: 'Only VMs mirrored from or to this remote' }),
});
export type VmReplicationQuery = z.infer<typeof vmReplicationQuerySchema>;
export class VmReplicationQueryDto extends createZodDto(vmReplicationQuerySchema) {}

export const failoverPreviewSchema = z.object({
  vm: z.string(),
  from: z.string().meta({ description: 'The remote the VM runs at now (to be given up)' }),
  to: z.string().meta({ description: 'The surviving remote that would be promoted' }),
  rpoSeconds: z
    .number()
    .int()
    .nullable()
    .meta({ description: 'The data at risk: what was written in these last seconds is lost' }),
  lastMirroredSnapshotAt: z.string().nullable(),
  sourceReachable: z.boolean().meta({
    description:
      "The source's cluster answered: it will be fenced (its clients blocklisted) before the promotion",
  }),
  requires: z.object({
    confirmDataLoss: z.literal(true),
    declareSourceDown: z.boolean().meta({
      description:
        'True when the source cannot be fenced: the operator must declare it down, with a reason',
    }),
  }),
  dataAtRisk: z.string().meta({ description: 'The same, in words for the confirmation dialog' }),
});
export type FailoverPreview = z.infer<typeof failoverPreviewSchema>;
export class FailoverPreviewDto extends createZodDto(failoverPreviewSchema) {}

export class PairAcceptedDto extends createZodDto(
  z.object({ taskId: z.string(), pairId: z.string() }),
) {}
