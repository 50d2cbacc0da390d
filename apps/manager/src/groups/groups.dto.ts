import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { groupIdSchema, userIdSchema } from '../common/principal';

const commentSchema = z.string().max(255);

export const createGroupSchema = z.strictObject({
  id: groupIdSchema,
  comment: commentSchema.default(''),
  tenant: z
    .boolean()
    .default(false)
    .meta({ description: 'A tenant group: its grants hold only on the VMs it owns' }),
  requireTfa: z
    .boolean()
    .default(false)
    .meta({ description: 'Every member must log in with a second factor' }),
});
export type CreateGroupInput = z.infer<typeof createGroupSchema>;
export class CreateGroupDto extends createZodDto(createGroupSchema) {}

export const updateGroupSchema = z.strictObject({
  comment: commentSchema.optional(),
  tenant: z.boolean().optional(),
  requireTfa: z.boolean().optional(),
});
export type UpdateGroupInput = z.infer<typeof updateGroupSchema>;
export class UpdateGroupDto extends createZodDto(updateGroupSchema) {}

export class GroupMembersDto extends createZodDto(
  z.strictObject({
    users: z
      .array(userIdSchema)
      .max(10_000)
      .refine((list) => new Set(list).size === list.length, 'users must not repeat')
      .meta({
        description: 'The locally managed members (replaces them); members a realm manages stay',
      }),
  }),
) {}

export class GroupParamsDto extends createZodDto(z.strictObject({ group: groupIdSchema })) {}

// --- answers ---------------------------------------------------------------------------------------

const groupFields = {
  id: z.string(),
  comment: z.string(),
  tenant: z.boolean(),
  requireTfa: z.boolean(),
  createdAt: z.iso.datetime(),
};

export const groupSummarySchema = z.object({ ...groupFields, memberCount: z.number().int() });
export type GroupSummaryView = z.infer<typeof groupSummarySchema>;
export class GroupListDto extends createZodDto(z.object({ items: z.array(groupSummarySchema) })) {}

export const groupSchema = z.object({
  ...groupFields,
  members: z.array(
    z.object({
      user: z.string(),
      source: z
        .string()
        .meta({ description: '`local` (an administrator) or the realm that manages it' }),
    }),
  ),
});
export type GroupView = z.infer<typeof groupSchema>;
export class GroupDto extends createZodDto(groupSchema) {}
