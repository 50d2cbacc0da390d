import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { deviceNameSchema } from './tfa.dto';

/** base64url text of at most `max` characters. */
const base64url = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[A-Za-z0-9_-]*$/, 'base64url without padding');
const credentialIdSchema = base64url(1366).min(1);

/** Client extension results: a small JSON object. */
const extensionResultsSchema = z
  .record(z.string().max(64), z.unknown())
  .refine(
    (v) => JSON.stringify(v).length <= 4096,
    'clientExtensionResults: at most 4096 characters of JSON',
  );

/** The browser's answer to navigator.credentials.get() (PublicKeyCredential.toJSON()). */
export const authenticationResponseSchema = z.strictObject({
  id: credentialIdSchema,
  rawId: credentialIdSchema,
  type: z.literal('public-key'),
  response: z.strictObject({
    clientDataJSON: base64url(8192).min(1),
    authenticatorData: base64url(8192).min(1),
    signature: base64url(2048).min(1),
    userHandle: base64url(1024).optional(),
  }),
  clientExtensionResults: extensionResultsSchema,
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
});

/** The browser's answer to navigator.credentials.create() (PublicKeyCredential.toJSON()). */
export const registrationResponseSchema = z.strictObject({
  id: credentialIdSchema,
  rawId: credentialIdSchema,
  type: z.literal('public-key'),
  response: z.strictObject({
    clientDataJSON: base64url(8192).min(1),
    attestationObject: base64url(32768).min(1),
    authenticatorData: base64url(8192).optional(),
    transports: z.array(z.string().max(32)).max(10).optional(),
    publicKeyAlgorithm: z.number().int().optional(),
    publicKey: base64url(4096).optional(),
  }),
  clientExtensionResults: extensionResultsSchema,
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
});

export class WebauthnOptionsBodyDto extends createZodDto(
  z.strictObject({
    name: deviceNameSchema,
    password: z.string().min(1).max(1024).optional().meta({
      format: 'password',
      description:
        'Your current password. Users of an OpenID Connect realm have none: they log in again and enrol within 5 minutes.',
    }),
    enrolmentCode: z.string().min(1).max(200).optional().meta({
      description:
        'For an account that must use a second factor and has none: the one-time code an administrator issued (POST /api/v1/access/users/{user}/tfa/enrolment-code). Needed unless DEBVISOR_TFA_ENROLMENT=password.',
    }),
  }),
) {}

export class WebauthnRegisterBodyDto extends createZodDto(
  z.strictObject({
    response: registrationResponseSchema.meta({
      description: 'PublicKeyCredential.toJSON() of navigator.credentials.create()',
    }),
  }),
) {}

export class WebauthnParamsDto extends createZodDto(z.strictObject({ id: z.uuid() })) {}

export class WebauthnCreationOptionsDto extends createZodDto(
  z.looseObject({ challenge: z.string() }).meta({
    description:
      'PublicKeyCredentialCreationOptionsJSON for navigator.credentials.create(); the challenge is valid for 2 minutes, once',
  }),
) {}

export class WebauthnRequestOptionsDto extends createZodDto(
  z.looseObject({ challenge: z.string() }).meta({
    description:
      'PublicKeyCredentialRequestOptionsJSON for navigator.credentials.get(); the challenge is valid for 2 minutes, once',
  }),
) {}

export class WebauthnRegisteredDto extends createZodDto(
  z.object({
    id: z.uuid(),
    name: z.string(),
    recoveryCodes: z.array(z.string()).nullable().meta({
      description:
        'For the first second factor: 10 single-use recovery codes, shown only now (stored as hashes); null otherwise',
    }),
    stage: z.enum(['setup', 'active']).meta({
      description:
        'The session stage now: a `setup` session is `active` once its first second factor is added',
    }),
  }),
) {}
