import { endpointSchema, parseAgentApiKey, remoteIdSchema } from '@debvisor/common';
import { describeCertificate, normalizeFingerprint, splitPemBundle } from '@debvisor/pki';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';

export const credentialNameSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/,
    'a credential name is 1-64 letters, digits, dots, underscores and inner hyphens',
  );

const agentKeySchema = z
  .string()
  .refine(
    (value) => parseAgentApiKey(value) !== undefined,
    'an agent API key looks like dvk_<16 hex digits>_<43 base64url characters>',
  )
  .meta({
    description: 'An agent API key (dvk_…); write-only, never returned',
    format: 'password',
  });

const fingerprintSchema = z
  .string()
  .max(200)
  .refine(
    (value) => normalizeFingerprint(value) !== undefined,
    'a SHA-256 fingerprint is 64 hex digits, optionally in colon-separated pairs',
  )
  .meta({ description: 'SHA-256 fingerprint of the cluster CA certificate', example: 'AB:CD:…' });

const caCertPemSchema = z
  .string()
  .max(65_536)
  .refine(
    (value) => isCaCertificate(value),
    'caCertPem must be a PEM CA certificate (BEGIN CERTIFICATE, basic constraints CA:true)',
  )
  .meta({ description: 'The cluster CA certificate (PEM)' });

const endpointsSchema = z
  .array(endpointSchema)
  .min(1, 'at least one endpoint is needed')
  .max(32)
  .refine((list) => new Set(list).size === list.length, 'endpoints must not repeat')
  .meta({ description: 'Agent endpoints (host:port), tried in this order' });

const credentialInputSchema = z.strictObject({ name: credentialNameSchema, key: agentKeySchema });

export const createRemoteSchema = z
  .strictObject({
    id: remoteIdSchema,
    description: z.string().max(500).default(''),
    endpoints: endpointsSchema,
    caCertPem: caCertPemSchema.optional(),
    caFingerprint: fingerprintSchema.optional(),
    credentials: z
      .array(credentialInputSchema)
      .min(1, 'at least one credential is needed')
      .max(32)
      .refine(
        (list) => new Set(list.map((c) => c.name)).size === list.length,
        'credential names must be unique',
      ),
    addAnyway: z
      .boolean()
      .default(false)
      .meta({ description: 'Store the remote even when the connection test fails' }),
  })
  .refine((body) => (body.caCertPem === undefined) !== (body.caFingerprint === undefined), {
    message: 'give exactly one of caCertPem and caFingerprint',
    path: ['caCertPem'],
  });
export class CreateRemoteDto extends createZodDto(createRemoteSchema) {}

export const updateRemoteSchema = z
  .strictObject({
    description: z.string().max(500).optional(),
    endpoints: endpointsSchema.optional(),
    caCertPem: caCertPemSchema.optional(),
    caFingerprint: fingerprintSchema.optional(),
    credentials: z.array(credentialInputSchema).max(100).optional().meta({
      description:
        'With a new caCertPem or caFingerprint: the key of every stored credential, entered again (a new CA never receives the stored keys)',
    }),
  })
  .refine((body) => body.caCertPem === undefined || body.caFingerprint === undefined, {
    message: 'give at most one of caCertPem and caFingerprint',
    path: ['caCertPem'],
  });
export class UpdateRemoteDto extends createZodDto(updateRemoteSchema) {}

export class AddCredentialDto extends createZodDto(
  credentialInputSchema.extend({
    addAnyway: z
      .boolean()
      .default(false)
      .meta({ description: 'Store the credential even when the remote does not accept it now' }),
  }),
) {}

export class ProbeDto extends createZodDto(z.strictObject({ endpoint: endpointSchema })) {}

export class RemoteParamsDto extends createZodDto(z.strictObject({ remote: remoteIdSchema })) {}
export class CredentialParamsDto extends createZodDto(
  z.strictObject({ remote: remoteIdSchema, name: credentialNameSchema }),
) {}

// --- answers ---------------------------------------------------------------------------------------

const credentialSchema = z
  .object({
    name: z.string(),
    keyId: z.string().meta({ description: 'The public id of the agent API key' }),
    createdAt: z.iso.datetime(),
  })
  .meta({ id: 'RemoteCredential' });

export const remoteSchema = z.object({
  id: z.string(),
  description: z.string(),
  endpoints: z.array(z.string()),
  trust: z.object({
    caFingerprint: z.string(),
    caCertPem: z.string().nullable().meta({
      description: 'Null while only the fingerprint is pinned and no agent presented the CA yet',
    }),
    resolved: z.boolean(),
  }),
  credentials: z.array(credentialSchema),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
export type RemoteView = z.infer<typeof remoteSchema>;
export class RemoteDto extends createZodDto(remoteSchema) {}
export class RemoteListDto extends createZodDto(z.object({ items: z.array(remoteSchema) })) {}

export const connectionReportSchema = z
  .object({
    ok: z.boolean(),
    nodeId: z.string().optional().meta({ description: 'The node whose agent answered' }),
    clusterId: z.string().optional(),
    agentVersion: z.string().optional(),
    nodeCount: z.number().int().optional(),
    error: z
      .object({ code: z.string(), message: z.string() })
      .optional()
      .meta({ description: 'Why the test failed (only with addAnyway)' }),
  })
  .meta({ id: 'ConnectionReport' });
export type ConnectionReport = z.infer<typeof connectionReportSchema>;

export class CreatedRemoteDto extends createZodDto(
  remoteSchema.extend({ connection: connectionReportSchema }),
) {}

const presentedCertificateSchema = z
  .object({
    subject: z.string(),
    issuer: z.string(),
    fingerprintSha256: z.string(),
    isCa: z.boolean(),
    notBefore: z.iso.datetime(),
    notAfter: z.iso.datetime(),
    pem: z.string(),
  })
  .meta({ id: 'PresentedCertificate' });
export class ProbeResultDto extends createZodDto(
  z.object({
    endpoint: z.string(),
    certificates: z
      .array(presentedCertificateSchema)
      .meta({ description: 'As presented, leaf first' }),
  }),
) {}

function isCaCertificate(pem: string): boolean {
  const first = splitPemBundle(pem)[0];
  if (!first) return false;
  try {
    return describeCertificate(first).isCa;
  } catch {
    return false;
  }
}
