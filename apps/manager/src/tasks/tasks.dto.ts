import { remoteIdSchema, uuidSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { migrationDetailsSchema } from '../task-details/migration-details.dto';
import { TASK_STATES } from './task.entity';

export const taskSchema = z.object({
  id: z.string(),
  type: z.string().meta({
    description:
      'vm.start | vm.shutdown | vm.reboot | vm.stop | vm.migrate | vm.snapshot.create | vm.snapshot.delete | vm.snapshot.rollback | vm.snapshot.schedule | ' +
      'replication.pair | vm.replication.enable | vm.replication.disable | vm.replication.switchover | vm.replication.failover | vm.replication.resync',
  }),
  state: z.enum(TASK_STATES),
  target: z.object({ remote: z.string().nullable(), vm: z.string().nullable() }),
  vm: z
    .object({ name: z.string(), remote: z.string(), node: z.string() })
    .nullable()
    .meta({
      description:
        "The task's VM as the manager lists it now: its name and where it is now (a migrated VM " +
        'where it went); null without a VM, when no remote lists it, or where the caller may not see it',
    }),
  owner: z.string().meta({ description: 'Who asked for it (principal!token)' }),
  progress: z.number().min(0).max(1),
  log: z.array(z.object({ at: z.iso.datetime(), message: z.string() })),
  error: z.string().nullable(),
  createdAt: z.iso.datetime(),
  startedAt: z.iso.datetime().nullable(),
  finishedAt: z.iso.datetime().nullable(),
  updatedAt: z.iso.datetime(),
  migration: migrationDetailsSchema.optional().meta({
    description: 'vm.migrate tasks, in GET /api/v1/tasks/{id}: phase, figures and journal',
  }),
});
export type TaskView = z.infer<typeof taskSchema>;
/** What a task type's handler adds to GET /api/v1/tasks/{id}. */
export type TaskDetails = Partial<Pick<TaskView, 'migration'>>;
export class TaskDto extends createZodDto(taskSchema) {}

export class TaskListDto extends createZodDto(
  z.object({
    items: z.array(taskSchema),
    total: z.number().int(),
    limit: z.number().int(),
    offset: z.number().int(),
  }),
) {}

export const taskQuerySchema = z.strictObject({
  state: z.enum(TASK_STATES).optional(),
  type: z.string().max(64).optional(),
  remote: remoteIdSchema.optional(),
  vm: uuidSchema.optional(),
  owner: z.string().max(255).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});
export type TaskQuery = z.infer<typeof taskQuerySchema>;
export class TaskQueryDto extends createZodDto(taskQuerySchema) {}

export class TaskParamsDto extends createZodDto(z.strictObject({ id: uuidSchema })) {}

export class TaskAcceptedDto extends createZodDto(z.object({ taskId: z.string() })) {}
