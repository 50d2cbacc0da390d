import { labelSchema, remoteIdSchema, uuidSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';

/** Snapshot names as the agents accept them (proto SnapshotVmRequest.snapshot). */
export const snapshotNameSchema = labelSchema.meta({
  description: 'The snapshot name: 1-64 letters, digits, dots, underscores and inner hyphens',
});

export class SnapshotParamsDto extends createZodDto(
  z.strictObject({ remote: remoteIdSchema, vmid: uuidSchema, snapshot: snapshotNameSchema }),
) {}

export const createSnapshotBodySchema = z.strictObject({
  name: snapshotNameSchema
    .optional()
    .meta({ description: 'Default: manual-<UTC time>, e.g. manual-20261207t1300z' }),
  freeze: z.boolean().default(true).meta({
    description:
      "Freeze the guest's filesystems through the QEMU guest agent first (default); without an answering guest agent the snapshot is crash-consistent",
  }),
  description: z
    .string()
    .trim()
    .min(1)
    .max(200)
    .optional()
    .meta({ description: 'Free text kept by the manager with the snapshot' }),
});
export type CreateSnapshotBody = z.infer<typeof createSnapshotBodySchema>;
export class CreateSnapshotBodyDto extends createZodDto(createSnapshotBodySchema) {}

export const rollbackBodySchema = z.strictObject({
  stopFirst: z.boolean().default(false).meta({
    description:
      'Stop the VM first when it is not stopped (needs vm.power too). Without it a rollback of a VM that is not stopped is refused (409)',
  }),
});
export type RollbackBody = z.infer<typeof rollbackBodySchema>;
export class RollbackBodyDto extends createZodDto(rollbackBodySchema) {}

export const CONSISTENCIES = ['application', 'crash'] as const;

export const snapshotSchema = z.object({
  name: z.string(),
  createdAt: z.iso
    .datetime()
    .nullable()
    .meta({ description: 'When it was taken (null when the agent did not say)' }),
  consistency: z.enum(CONSISTENCIES).meta({
    description:
      'application: the guest agent froze the filesystems; crash: taken without (as after a power cut)',
  }),
  consistencyReason: z
    .string()
    .nullable()
    .meta({ description: 'Why it is crash-consistent, when it is' }),
  group: z
    .boolean()
    .meta({ description: 'Taken as one RBD group snapshot of several disks (one point in time)' }),
  disks: z.array(
    z.object({ pool: z.string(), image: z.string(), sizeBytes: z.number().int().nonnegative() }),
  ),
  createdBy: z.string().nullable().meta({
    description:
      'The principal whose quota it counts against; null: not taken through this manager',
  }),
  scheduleId: z.string().nullable().meta({
    description:
      'The schedule that took it (its retention removes it in time); null: taken by hand',
  }),
  description: z.string().nullable(),
});
export type SnapshotView = z.infer<typeof snapshotSchema>;

export const snapshotListSchema = z.object({
  items: z.array(snapshotSchema).meta({ description: 'Oldest first' }),
  quota: z.object({ limit: z.number().int(), used: z.number().int() }).meta({
    description:
      'How many snapshots of this VM the caller may hold (manual and scheduled alike), and holds',
  }),
});
export type SnapshotList = z.infer<typeof snapshotListSchema>;
export class SnapshotListDto extends createZodDto(snapshotListSchema) {}

export class SnapshotAcceptedDto extends createZodDto(
  z.object({
    taskId: z.string(),
    snapshot: z.string().meta({
      description: 'The snapshot the task works on (the generated name when none was given)',
    }),
  }),
) {}
