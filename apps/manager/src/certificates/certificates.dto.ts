import { fqdnSchema, ipAddressSchema, uuidSchema } from '@debvisor/common';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';

const DOMAIN =
  /^(\*\.)?(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

const domainSchema = z
  .string()
  .regex(DOMAIN, 'a DNS name with at least two labels, optionally starting with *. (dns-01 only)')
  .meta({ example: 'manager.example.com' });

const pemSchema = (what: string) =>
  z
    .string()
    .min(1)
    .max(64 * 1024)
    .meta({ description: what });

export class CreateAcmeAccountDto extends createZodDto(
  z
    .strictObject({
      name: z
        .string()
        .regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/, 'a name is 1-64 letters, digits, space . _ -')
        .meta({ example: 'letsencrypt' }),
      directoryUrl: z
        .url({ protocol: /^https$/, error: 'expected the https:// URL of an ACME directory' })
        .max(2048)
        .meta({
          description:
            "The CA's ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory (Let's Encrypt) or https://acme-staging-v02.api.letsencrypt.org/directory (staging)",
        }),
      email: z
        .email()
        .max(254)
        .optional()
        .meta({ description: 'Contact for expiry and policy mail' }),
      termsOfServiceAgreed: z
        .boolean()
        .meta({ description: "Must be true: you agree to the CA's terms of service" }),
      externalAccountBinding: z
        .strictObject({
          keyId: z.string().min(1).max(256),
          hmacKey: z
            .string()
            .regex(/^[A-Za-z0-9_=+/-]{16,1024}$/, 'the HMAC key is base64url')
            .meta({ format: 'password', description: 'Write-only, never returned' }),
        })
        .optional()
        .meta({
          description:
            'External Account Binding, for CAs that need it (ZeroSSL, Google, private CAs)',
        }),
    })
    .meta({ id: 'CreateAcmeAccount' }),
) {}

export class AcmeAccountParamsDto extends createZodDto(z.strictObject({ id: uuidSchema })) {}

const dnsSchema = z.strictObject({
  server: z.union([ipAddressSchema, fqdnSchema]).meta({
    description: 'The primary name server that accepts RFC 2136 updates',
  }),
  port: z.number().int().min(1).max(65535).default(53),
  keyName: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/, 'a TSIG key name is letters, digits, . _ -'),
  algorithm: z.enum(['hmac-sha256', 'hmac-sha512']).default('hmac-sha256'),
  secret: z
    .string()
    .regex(/^[A-Za-z0-9+/]{16,1024}={0,2}$/, 'the TSIG secret is base64')
    .optional()
    .meta({
      format: 'password',
      description: 'The TSIG secret (base64); write-only; omit to keep the stored one',
    }),
  propagationTimeoutSeconds: z.number().int().min(5).max(3600).default(120),
  ttl: z.number().int().min(1).max(86_400).default(60),
});

export class AcmeSettingsDto extends createZodDto(
  z
    .strictObject({
      accountId: uuidSchema,
      domains: z
        .array(domainSchema)
        .min(1)
        .max(100)
        .meta({ description: 'The names of the certificate, the first one its subject' }),
      challenge: z.enum(['http-01', 'dns-01']),
      dns: dnsSchema
        .optional()
        .meta({ description: 'RFC 2136 settings; required for dns-01, refused for http-01' }),
    })
    .superRefine((value, ctx) => {
      if (value.challenge === 'dns-01' && !value.dns)
        ctx.addIssue({ code: 'custom', path: ['dns'], message: 'dns-01 needs the dns settings' });
      if (value.challenge === 'http-01' && value.dns)
        ctx.addIssue({ code: 'custom', path: ['dns'], message: 'only dns-01 takes dns settings' });
    })
    .meta({ id: 'AcmeSettings' }),
) {}

export class UploadCertificateDto extends createZodDto(
  z
    .strictObject({
      chainPem: pemSchema('The certificate chain in PEM: the certificate first, then each issuer'),
      keyPem: pemSchema(
        'The unencrypted private key in PEM (PKCS#8, PKCS#1 or SEC1); write-only, stored sealed',
      ).meta({ format: 'password' }),
    })
    .meta({ id: 'UploadCertificate' }),
) {}

const accountSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    directoryUrl: z.string(),
    email: z.string().nullable(),
    accountUrl: z.string(),
    externalAccountBinding: z.boolean(),
    termsOfServiceUrl: z.string().nullable(),
    createdAt: z.string(),
  })
  .meta({ id: 'AcmeAccount' });

export class AcmeAccountDto extends createZodDto(accountSchema) {}

const settingsViewSchema = z
  .object({
    accountId: z.string(),
    domains: z.array(z.string()),
    challenge: z.enum(['http-01', 'dns-01']),
    dns: z
      .object({
        server: z.string(),
        port: z.number(),
        keyName: z.string(),
        algorithm: z.enum(['hmac-sha256', 'hmac-sha512']),
        propagationTimeoutSeconds: z.number(),
        ttl: z.number(),
      })
      .nullable(),
  })
  .meta({ id: 'AcmeSettingsView' });

export class AcmeSettingsViewDto extends createZodDto(settingsViewSchema) {}

export class CertificatesStatusDto extends createZodDto(
  z
    .object({
      current: z.object({
        source: z.enum(['self-signed', 'acme', 'custom']),
        subject: z.string(),
        issuer: z.string(),
        names: z.array(z.string()),
        serialNumber: z.string(),
        notBefore: z.string(),
        notAfter: z.string(),
        fingerprintSha256: z.string(),
      }),
      renewal: z.object({
        dueAt: z.string().nullable(),
        basis: z.enum(['ari', 'two-thirds']).nullable(),
        lastError: z.string().nullable(),
        failures: z.number(),
      }),
      httpChallengeListener: z.object({
        port: z.number().nullable(),
        problem: z.string().nullable(),
      }),
      accounts: z.array(accountSchema),
      settings: settingsViewSchema.nullable(),
    })
    .meta({ id: 'CertificatesStatus' }),
) {}
