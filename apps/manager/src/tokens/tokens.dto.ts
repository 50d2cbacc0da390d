import { ROLES } from '@debvisor/permissions';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { aclEntrySchema, aclPathSchema } from '../acl/acl.dto';
import { groupIdSchema, tokenNameSchema, userIdSchema } from '../common/principal';

const commentSchema = z.string().max(255);
const expiresAtSchema = z.iso
  .datetime({
    offset: true,
    error: 'expiresAt is an ISO 8601 date and time, e.g. 2027-01-31T00:00:00Z',
  })
  .transform((value) => new Date(value))
  .meta({ description: 'When the token stops working (must be in the future); none: never' });
const limitedSchema = z.boolean().meta({
  description:
    'Privilege separation: the token holds only what both its owner and its own ACL entries (principalType token) grant',
});

const newTokenFields = {
  name: tokenNameSchema.meta({ description: 'Unique per owner: alice@local!ci' }),
  comment: commentSchema.default(''),
  expiresAt: expiresAtSchema.optional(),
  limited: limitedSchema.default(false),
};

export const createOwnTokenSchema = z.strictObject(newTokenFields);
export type CreateOwnTokenInput = z.infer<typeof createOwnTokenSchema>;
export class CreateOwnTokenDto extends createZodDto(createOwnTokenSchema) {}

export const createTokenSchema = z
  .strictObject({
    ownerType: z.enum(['user', 'group']).meta({
      description:
        'A user’s token acts as the user; a group’s token acts with the group’s rights (automation)',
    }),
    owner: z
      .string()
      .min(1)
      .max(255)
      .meta({ description: 'The user id (alice@local) or the group id' }),
    ...newTokenFields,
  })
  .superRefine((body, ctx) => {
    const schema = body.ownerType === 'user' ? userIdSchema : groupIdSchema;
    const parsed = schema.safeParse(body.owner);
    if (!parsed.success)
      ctx.addIssue({
        code: 'custom',
        path: ['owner'],
        message: parsed.error.issues[0]?.message ?? 'not a valid owner',
      });
  });
export type CreateTokenInput = z.infer<typeof createTokenSchema>;
export class CreateTokenDto extends createZodDto(createTokenSchema) {}

export const updateTokenSchema = z.strictObject({
  comment: commentSchema.optional(),
  expiresAt: expiresAtSchema
    .nullable()
    .optional()
    .meta({ description: 'A new end (in the future), or null for none' }),
  limited: limitedSchema.optional(),
});
export type UpdateTokenInput = z.infer<typeof updateTokenSchema>;
export class UpdateTokenDto extends createZodDto(updateTokenSchema) {}

export const tokenIdSchema = z
  .string()
  .regex(/^[0-9a-f]{16}$/, 'a token id is 16 hex digits (the part after dvdm_)');
export class TokenParamsDto extends createZodDto(z.strictObject({ id: tokenIdSchema })) {}

export class TokenQueryDto extends createZodDto(
  z.strictObject({
    ownerType: z.enum(['user', 'group']).optional(),
    owner: z
      .string()
      .min(1)
      .max(255)
      .optional()
      .meta({ description: 'Tokens of this user or group' }),
  }),
) {}

export const ownTokenAclSchema = z.strictObject({
  path: aclPathSchema,
  role: z.enum(ROLES),
  propagate: z.boolean().default(true),
});
export type OwnTokenAclInput = z.infer<typeof ownTokenAclSchema>;
export class OwnTokenAclDto extends createZodDto(ownTokenAclSchema) {}
export class OwnTokenAclQueryDto extends createZodDto(z.strictObject({ path: aclPathSchema })) {}

// --- answers ---------------------------------------------------------------------------------------

export const tokenSchema = z.object({
  id: z.string().meta({ description: 'The public part of the token (dvdm_<id>_…)' }),
  name: z.string(),
  ownerType: z.enum(['user', 'group']),
  owner: z.string(),
  display: z.string().meta({ description: 'alice@local!ci, or @group!name for a group’s token' }),
  comment: z.string(),
  limited: z.boolean(),
  createdAt: z.iso.datetime(),
  lastUsedAt: z.iso.datetime().nullable(),
  expiresAt: z.iso.datetime().nullable(),
  revokedAt: z.iso.datetime().nullable(),
});
export type TokenView = z.infer<typeof tokenSchema>;
export class TokenDto extends createZodDto(tokenSchema) {}
export class TokenListDto extends createZodDto(z.object({ items: z.array(tokenSchema) })) {}

export const createdTokenSchema = tokenSchema.extend({
  token: z.string().meta({
    description:
      'The whole token (dvdm_<id>_<secret>): shown only in this answer, stored only as a hash',
    format: 'password',
  }),
});
export type CreatedTokenView = z.infer<typeof createdTokenSchema>;
export class CreatedTokenDto extends createZodDto(createdTokenSchema) {}

export class TokenAclListDto extends createZodDto(z.object({ items: z.array(aclEntrySchema) })) {}
