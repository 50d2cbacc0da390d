import { remoteIdSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';

export class RemoteParamsDto extends createZodDto(z.strictObject({ remote: remoteIdSchema })) {}

export const CA_ROTATION_ACTIONS = ['begin', 'finish', 'rotate'] as const;
export type CaRotationAction = (typeof CA_ROTATION_ACTIONS)[number];

export class CaRotationRequestDto extends createZodDto(
  z.strictObject({
    action: z.enum(CA_ROTATION_ACTIONS).meta({
      description:
        'begin: a new CA, trusted next to the old one by the cluster and the remote; finish: once every live node renewed, the new CA alone; rotate: both, waiting in between',
    }),
    force: z.boolean().default(false).meta({
      description:
        'finish although a node (e.g. one that is down) still holds a certificate of the old CA; it must be re-enrolled',
    }),
  }),
) {}

const caSchema = z.object({
  fingerprintSha256: z.string(),
  subject: z.string(),
  pem: z.string(),
});

export class CaRotationStatusDto extends createZodDto(
  z.object({
    remote: z.string(),
    rotating: z
      .boolean()
      .meta({ description: 'The cluster trusts two CAs: a rotation is under way' }),
    clusterCas: z.array(caSchema).meta({
      description: "The CAs the cluster trusts now, old first (empty: only the agents' tls.ca)",
    }),
    remoteCaFingerprints: z
      .array(z.string())
      .meta({ description: 'The CAs the manager trusts for this remote' }),
    issuingFingerprintSha256: z.string().nullable(),
    nodes: z.array(
      z.object({
        nodeId: z.string(),
        issuerFingerprintSha256: z.string(),
        notAfter: z.string(),
        alive: z.boolean(),
        onIssuingCa: z.boolean().nullable(),
      }),
    ),
  }),
) {}
export type CaRotationStatusView = z.infer<(typeof CaRotationStatusDto)['schema']>;
