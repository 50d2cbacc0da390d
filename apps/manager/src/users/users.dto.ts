import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { realmIdSchema, userIdSchema, usernameSchema } from '../common/principal';

/** Passwords reach the policy as sent (its messages say what is wrong); this only bounds the size. */
const passwordSchema = z
  .string()
  .min(1)
  .max(4096)
  .meta({ format: 'password', description: 'Checked against the password policy' });
const displayNameSchema = z.string().trim().max(255).nullable();
const emailSchema = z.email({ error: 'not a valid e-mail address' }).max(255).nullable();

export const createUserSchema = z.strictObject({
  username: usernameSchema,
  realm: realmIdSchema.default('local').meta({
    description:
      'Only users of the local realm get a password here; directory users log in with their directory password',
  }),
  password: passwordSchema.optional().meta({
    description:
      'Local realm only; without it the user can only use API tokens until an administrator sets one',
  }),
  displayName: displayNameSchema.optional(),
  email: emailSchema.optional(),
  enabled: z.boolean().default(true),
  requireTfa: z
    .boolean()
    .default(false)
    .meta({ description: 'The user must log in with a second factor' }),
});
export type CreateUserInput = z.infer<typeof createUserSchema>;
export class CreateUserDto extends createZodDto(createUserSchema) {}

export const updateUserSchema = z.strictObject({
  displayName: displayNameSchema.optional(),
  email: emailSchema.optional(),
  enabled: z
    .boolean()
    .optional()
    .meta({ description: 'Disabling ends the user’s sessions and stops its API tokens' }),
  requireTfa: z.boolean().optional(),
});
export type UpdateUserInput = z.infer<typeof updateUserSchema>;
export class UpdateUserDto extends createZodDto(updateUserSchema) {}

export class ResetPasswordDto extends createZodDto(z.strictObject({ password: passwordSchema })) {}

export class ChangePasswordDto extends createZodDto(
  z.strictObject({
    currentPassword: z.string().min(1).max(4096).meta({ format: 'password' }),
    newPassword: passwordSchema,
  }),
) {}

export class UserParamsDto extends createZodDto(z.strictObject({ user: userIdSchema })) {}
export class UserQueryDto extends createZodDto(
  z.strictObject({ realm: realmIdSchema.optional() }),
) {}

// --- answers ---------------------------------------------------------------------------------------

export const userSchema = z.object({
  id: z.string().meta({ description: 'name@realm' }),
  realm: z.string(),
  username: z.string(),
  displayName: z.string().nullable(),
  email: z.string().nullable(),
  enabled: z.boolean(),
  requireTfa: z.boolean(),
  hasPassword: z
    .boolean()
    .meta({ description: 'A password is stored in the manager (local realm)' }),
  passwordChangedAt: z.iso.datetime().nullable(),
  lockedUntil: z.iso
    .datetime()
    .nullable()
    .meta({ description: 'Passwords are refused until then after repeated failures' }),
  totpLocked: z.boolean(),
  groups: z.array(
    z.object({
      id: z.string(),
      source: z
        .string()
        .meta({ description: '`local` (an administrator) or the realm that manages it' }),
    }),
  ),
  createdAt: z.iso.datetime(),
  syncedAt: z.iso
    .datetime()
    .nullable()
    .meta({ description: 'When the realm’s directory last listed this user' }),
});
export type UserView = z.infer<typeof userSchema>;
export class UserDto extends createZodDto(userSchema) {}
export class UserListDto extends createZodDto(z.object({ items: z.array(userSchema) })) {}
