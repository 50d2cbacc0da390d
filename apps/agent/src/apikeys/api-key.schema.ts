import { apiKeyIdSchema, permissionSpecSchema } from '@debvisor/common';
import { z } from 'zod';
import { hasControlCharacters } from '../shared/text';

/** Who holds a key: `manager:dc-east`, `ci@example.org`, `terraform/prod`. */
export const principalSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,127}$/,
    'a principal is 1-128 letters, digits and . _ : @ + / - (starting with a letter or digit)',
  );

export const descriptionSchema = z
  .string()
  .max(200, 'a description is at most 200 characters')
  .refine((value) => !hasControlCharacters(value), 'a description holds no control characters');

const timestamp = z.iso.datetime({ offset: true });

/** An API key as stored in etcd under /debvisor/rpc/apikeys/<id>: the secret only as its SHA-256. */
export const apiKeyRecordSchema = z.strictObject({
  id: apiKeyIdSchema,
  principal: principalSchema,
  permissions: z.array(permissionSpecSchema).min(1),
  description: descriptionSchema,
  /** Hex SHA-256 of the secret part of the key. */
  secretSha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: timestamp,
  expiresAt: timestamp.nullable(),
  lastUsedAt: timestamp.nullable(),
  revokedAt: timestamp.nullable(),
});

export type ApiKeyRecord = z.infer<typeof apiKeyRecordSchema>;

/** A record with the etcd revision it was read at, for compare-and-swap updates. */
export interface StoredApiKey {
  readonly record: ApiKeyRecord;
  readonly revision: string;
}

/** What callers may see of a key: everything but the hash. */
export type ApiKeySummary = Omit<ApiKeyRecord, 'secretSha256'>;

export function summarize({ secretSha256: _hash, ...rest }: ApiKeyRecord): ApiKeySummary {
  return rest;
}
