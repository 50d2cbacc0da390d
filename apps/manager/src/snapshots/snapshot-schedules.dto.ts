import { labelSchema, remoteIdSchema, uuidSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import {
  cronProblem,
  MAX_INTERVAL_SECONDS,
  MIN_INTERVAL_SECONDS,
  parseInterval,
} from './schedule-timing';

const intervalSchema = z
  .string()
  .refine((text) => {
    const seconds = parseInterval(text);
    return (
      seconds !== undefined && seconds >= MIN_INTERVAL_SECONDS && seconds <= MAX_INTERVAL_SECONDS
    );
  }, 'an interval is a whole number of minutes, hours or days (15m, 1h, 7d), from 5m to 366d')
  .meta({ description: 'Every this long from the schedule’s creation: 15m, 1h, 7d (5m … 366d)' });

const cronSchema = z
  .string()
  .max(120)
  .superRefine((text, ctx) => {
    const problem = cronProblem(text);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })
  .meta({ description: 'Five-field cron expression in UTC, e.g. "0 3 * * *" (daily at 03:00)' });

const scheduleNameSchema = labelSchema.meta({
  description:
    'Shown in lists and in the names of its snapshots: 1-64 letters, digits, dots, underscores and inner hyphens',
});

export const scheduleTargetSchema = z.discriminatedUnion('type', [
  z
    .strictObject({ type: z.literal('vm'), remote: remoteIdSchema, vm: uuidSchema })
    .meta({ description: 'One VM (needs vm.snapshot on the VM)' }),
  z
    .strictObject({
      type: z.literal('labels'),
      remote: remoteIdSchema,
      labels: z
        .record(labelSchema, labelSchema)
        .refine(
          (labels) => Object.keys(labels).length >= 1 && Object.keys(labels).length <= 16,
          '1 to 16 labels',
        )
        .meta({
          description:
            'Every VM of the remote whose labels include all of these (needs vm.snapshot on the remote)',
        }),
    })
    .meta({ description: 'The VMs of a remote whose labels match, at each run' }),
  z.strictObject({ type: z.literal('pool'), remote: remoteIdSchema, pool: labelSchema }).meta({
    description:
      'Every VM of the remote with a disk in this pool, at each run (needs vm.snapshot on the remote)',
  }),
]);
export type ScheduleTarget = z.infer<typeof scheduleTargetSchema>;

const keepSchema = z.int().min(1).max(10_000).meta({
  description:
    "How many of this schedule's snapshots each VM keeps; after a run the older ones are deleted (never manual snapshots)",
});

export const createScheduleBodySchema = z
  .strictObject({
    name: scheduleNameSchema,
    target: scheduleTargetSchema,
    interval: intervalSchema.optional(),
    cron: cronSchema.optional(),
    keep: keepSchema,
    freeze: z
      .boolean()
      .default(true)
      .meta({ description: "Freeze the guests' filesystems through their guest agents (default)" }),
    enabled: z.boolean().default(true),
  })
  .refine((body) => (body.interval === undefined) !== (body.cron === undefined), {
    message: 'give exactly one of interval and cron',
    path: ['interval'],
  });
export type CreateScheduleBody = z.infer<typeof createScheduleBodySchema>;
export class CreateScheduleBodyDto extends createZodDto(createScheduleBodySchema) {}

export const updateScheduleBodySchema = z
  .strictObject({
    name: scheduleNameSchema.optional(),
    interval: intervalSchema
      .optional()
      .meta({ description: 'Replaces the timing (and a cron expression)' }),
    cron: cronSchema.optional().meta({ description: 'Replaces the timing (and an interval)' }),
    keep: keepSchema.optional(),
    freeze: z.boolean().optional(),
    enabled: z.boolean().optional(),
  })
  .refine((body) => body.interval === undefined || body.cron === undefined, {
    message: 'give at most one of interval and cron',
    path: ['interval'],
  })
  .refine((body) => Object.keys(body).length > 0, { message: 'nothing to change' });
export type UpdateScheduleBody = z.infer<typeof updateScheduleBodySchema>;
export class UpdateScheduleBodyDto extends createZodDto(updateScheduleBodySchema) {}

export class ScheduleParamsDto extends createZodDto(z.strictObject({ id: uuidSchema })) {}

export const scheduleSchema = z.object({
  id: z.string(),
  name: z.string(),
  target: z.object({
    type: z.enum(['vm', 'labels', 'pool']),
    remote: z.string(),
    vm: z.string().nullable(),
    labels: z.record(z.string(), z.string()).nullable(),
    pool: z.string().nullable(),
  }),
  interval: z.string().nullable().meta({ description: 'e.g. 1h; null for a cron schedule' }),
  cron: z.string().nullable(),
  keep: z.number().int(),
  freeze: z.boolean(),
  enabled: z.boolean(),
  owner: z
    .string()
    .meta({ description: 'Who created it: runs act as this principal, within its snapshot quota' }),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  lastRunAt: z.iso.datetime().nullable(),
  lastTaskId: z
    .string()
    .nullable()
    .meta({ description: 'The vm.snapshot.schedule task of the last run' }),
  nextRunAt: z.iso.datetime().meta({
    description: 'When the next run is due (after a downtime, missed runs are made up by one run)',
  }),
});
export type ScheduleView = z.infer<typeof scheduleSchema>;
export class ScheduleDto extends createZodDto(scheduleSchema) {}
export class ScheduleListDto extends createZodDto(z.object({ items: z.array(scheduleSchema) })) {}
