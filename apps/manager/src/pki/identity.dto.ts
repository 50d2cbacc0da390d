import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';

const certificateSchema = z.object({
  subject: z.string(),
  fingerprintSha256: z.string(),
  notBefore: z.iso.datetime(),
  notAfter: z.iso.datetime(),
});

export class ManagerIdentityDto extends createZodDto(
  z.object({
    clientCa: certificateSchema.extend({
      pem: z.string().meta({
        description: "Add this CA to every agent's tls.clientCas so that agents accept the manager",
      }),
      path: z.string().meta({ description: 'Where the manager keeps it' }),
    }),
    server: z.object({
      certificate: certificateSchema,
      ca: certificateSchema.extend({
        pem: z
          .string()
          .meta({ description: 'The CA of the HTTPS certificate, for clients to pin' }),
      }),
    }),
  }),
) {}
