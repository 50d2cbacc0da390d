import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { userIdSchema } from '../../common/principal';

/** What a user calls an authenticator ("phone", "yubikey-otp"); unique per user. */
export const deviceNameSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/,
    'a device name is 1-64 letters, digits, spaces or . _ -, starting with a letter or digit',
  )
  .refine((v) => !v.endsWith(' '), 'a device name must not end with a space');

const passwordSchema = z
  .string()
  .min(1)
  .max(1024)
  .meta({ format: 'password', description: 'Your current password (a fresh check)' });

export class EnrolTotpDto extends createZodDto(
  z.strictObject({
    name: deviceNameSchema,
    password: passwordSchema.optional().meta({
      description:
        'Your current password. Users of an OpenID Connect realm have none: they log in again and enrol within 5 minutes.',
    }),
    enrolmentCode: z.string().min(1).max(200).optional().meta({
      description:
        'For an account that must use a second factor and has none: the one-time code an administrator issued (POST /api/v1/access/users/{user}/tfa/enrolment-code). Needed unless DEBVISOR_TFA_ENROLMENT=password.',
    }),
  }),
) {}

export class ConfirmTotpDto extends createZodDto(
  z.strictObject({
    code: z
      .string()
      .min(1)
      .max(32)
      .meta({ description: 'The 6-digit code the authenticator shows now' }),
  }),
) {}

export class PasswordCheckDto extends createZodDto(
  z.strictObject({
    password: passwordSchema.optional().meta({
      description:
        'Your current password (OpenID Connect users: omit it, within 5 minutes of logging in)',
    }),
  }),
) {}

export class DeviceParamsDto extends createZodDto(z.strictObject({ id: z.uuid() })) {}

export class UserParamsDto extends createZodDto(z.strictObject({ user: userIdSchema })) {}

export class EnrolmentCodeDto extends createZodDto(
  z.object({
    code: z.string().meta({
      description: 'The one-time enrolment code: shown only now; hand it to the user',
    }),
    expiresAt: z.iso.datetime(),
  }),
) {}

const deviceSchema = z.object({
  id: z.uuid(),
  name: z.string(),
  confirmed: z.boolean().meta({ description: 'Unconfirmed devices do not count for logins' }),
  createdAt: z.iso.datetime(),
});

export class TfaOverviewDto extends createZodDto(
  z.object({
    devices: z.array(deviceSchema),
    webauthn: z
      .array(
        z.object({
          id: z.uuid(),
          name: z.string(),
          createdAt: z.iso.datetime(),
          lastUsedAt: z.iso.datetime().nullable(),
        }),
      )
      .meta({ description: 'Your WebAuthn credentials (security keys, platform authenticators)' }),
    recoveryCodesLeft: z.number().int().meta({ description: 'Unused recovery codes' }),
    totpLocked: z.boolean().meta({
      description:
        'TOTP is refused after repeated wrong codes, until a recovery code is used or an administrator unlocks it',
    }),
    lockedUntil: z.iso
      .datetime()
      .nullable()
      .meta({ description: 'Until when every second factor is refused after repeated failures' }),
  }),
) {}

export class EnrolledTotpDto extends createZodDto(
  z.object({
    id: z.uuid(),
    uri: z
      .string()
      .meta({ description: 'The otpauth:// URI for authenticator apps; shown only now' }),
    qrCode: z
      .string()
      .meta({ description: 'The URI as a PNG QR code (data: URL); shown only now' }),
    secret: z
      .string()
      .meta({ description: 'The base32 secret, for typing it in by hand; shown only now' }),
  }),
) {}

export class ConfirmedTotpDto extends createZodDto(
  z.object({
    id: z.uuid(),
    confirmed: z.literal(true),
    recoveryCodes: z.array(z.string()).nullable().meta({
      description:
        'For the first factor: 10 single-use recovery codes, shown only now (stored as hashes); null otherwise',
    }),
    stage: z.enum(['setup', 'active']).meta({
      description:
        'The session stage now: a `setup` session is `active` once its first device is confirmed',
    }),
  }),
) {}

export class RecoveryCodesDto extends createZodDto(
  z.object({
    recoveryCodes: z.array(z.string()).meta({
      description: '10 new single-use codes, shown only now; the previous ones no longer work',
    }),
  }),
) {}
