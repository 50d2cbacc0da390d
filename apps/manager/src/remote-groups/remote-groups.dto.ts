import { remoteIdSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { credentialNameSchema } from '../remotes/remotes.dto';

export const remoteGroupIdSchema = z
  .string()
  .regex(
    /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
    'a remote group id is 1-63 lower-case letters, digits and inner hyphens',
  );

const entriesSchema = z
  .array(
    z.strictObject({
      remote: remoteIdSchema,
      credential: credentialNameSchema.meta({
        description: 'The name of one of the remote’s credentials',
      }),
    }),
  )
  .max(1000)
  .refine(
    (list) => new Set(list.map((e) => e.remote)).size === list.length,
    'each remote may appear once in a remote group',
  )
  .meta({
    description: 'Which credential the manager acts with on each remote for grants on /groups/{id}',
  });

export const createRemoteGroupSchema = z.strictObject({
  id: remoteGroupIdSchema,
  comment: z.string().max(255).default(''),
  entries: entriesSchema,
});
export type CreateRemoteGroupInput = z.infer<typeof createRemoteGroupSchema>;
export class CreateRemoteGroupDto extends createZodDto(createRemoteGroupSchema) {}

export const updateRemoteGroupSchema = z.strictObject({
  comment: z.string().max(255).optional(),
  entries: entriesSchema.meta({ description: 'Replaces the entries' }),
});
export type UpdateRemoteGroupInput = z.infer<typeof updateRemoteGroupSchema>;
export class UpdateRemoteGroupDto extends createZodDto(updateRemoteGroupSchema) {}

export class RemoteGroupParamsDto extends createZodDto(
  z.strictObject({ group: remoteGroupIdSchema }),
) {}

// --- answers ---------------------------------------------------------------------------------------

export const remoteGroupSchema = z.object({
  id: z.string(),
  comment: z.string(),
  entries: z.array(z.object({ remote: z.string(), credential: z.string() })),
  createdAt: z.iso.datetime(),
});
export type RemoteGroupView = z.infer<typeof remoteGroupSchema>;
export class RemoteGroupDto extends createZodDto(remoteGroupSchema) {}
export class RemoteGroupListDto extends createZodDto(
  z.object({ items: z.array(remoteGroupSchema) }),
) {}
