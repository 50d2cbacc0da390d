import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { realmIdSchema } from '../common/principal';
import { authenticationResponseSchema } from './tfa/webauthn.dto';

export class LoginBodyDto extends createZodDto(
  z.strictObject({
    username: z
      .string()
      .min(1)
      .max(255)
      .meta({ description: '`alice`, `alice@corp`, or with `realm`' }),
    password: z.string().min(1).max(1024).meta({ format: 'password' }),
    realm: realmIdSchema
      .optional()
      .meta({ description: 'Default: the realm after @ in username, else local' }),
  }),
) {}

export class TfaBodyDto extends createZodDto(
  z
    .strictObject({
      code: z.string().max(32).optional().meta({ description: 'The 6-digit TOTP code' }),
      recoveryCode: z
        .string()
        .max(64)
        .optional()
        .meta({ description: 'One of the recovery codes' }),
      webauthn: authenticationResponseSchema.optional().meta({
        description:
          'PublicKeyCredential.toJSON() of navigator.credentials.get() for the options of POST /api/v1/auth/tfa/webauthn/options',
      }),
    })
    .refine(
      (b) => [b.code, b.recoveryCode, b.webauthn].filter((v) => v !== undefined).length === 1,
      'send exactly one of code, recoveryCode and webauthn',
    ),
) {}

const sessionSchema = z.object({
  stage: z.enum(['tfa', 'setup', 'active']).meta({
    description:
      '`active`: logged in; `tfa`: POST /api/v1/auth/tfa next; `setup`: a second factor is required, enrol one (POST /api/v1/access/tfa/totp)',
  }),
  user: z.string(),
  csrfToken: z
    .string()
    .meta({ description: 'Send as X-CSRF-Token with every write made with the session cookie' }),
  expiresAt: z.iso.datetime(),
  methods: z.array(z.enum(['totp', 'webauthn', 'recovery'])),
});

export class SessionDto extends createZodDto(sessionSchema) {}

export class CurrentSessionDto extends createZodDto(
  z.object({
    user: z.string(),
    kind: z.enum(['session', 'token']),
    stage: z.enum(['tfa', 'setup', 'active']).nullable(),
    csrfToken: z.string().nullable(),
    groups: z.array(z.string()),
    /** For stage `tfa`: what POST /api/v1/auth/tfa accepts. */
    methods: z.array(z.enum(['totp', 'webauthn', 'recovery'])),
    /** The privileges the caller holds on `/`, for the web UI to hide what it may not do. */
    privileges: z.array(z.string()),
  }),
) {}
