import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { groupIdSchema, realmIdSchema } from '../common/principal';
import { REALM_TYPES } from './realm.entity';
import { ldapRealmSettingsSchema } from './ldap-settings';
import { oidcRealmSettingsSchema } from './oidc-settings';

/** Minutes between scheduled directory syncs: 5 minutes to a week; null: only on demand. */
export const SYNC_INTERVAL_MINUTES = { min: 5, max: 10_080 } as const;

export const groupMappingSchema = z
  .strictObject({
    pattern: z
      .string()
      .regex(
        /^[A-Za-z0-9._*-]{1,128}$/,
        'a pattern is 1-128 letters, digits, . _ - and * (any characters)',
      )
      .meta({
        description:
          'A directory or claim group name; `*` matches any characters (case-insensitive)',
        example: 'debvisor-*',
      }),
    group: groupIdSchema
      .optional()
      .meta({ description: 'The manager group; default: the external group’s own name' }),
    tenant: z
      .boolean()
      .optional()
      .meta({ description: 'Manager groups this mapping creates are tenant groups' }),
  })
  .meta({ id: 'GroupMapping' });

const secretSchema = z.string().min(1).max(1024).meta({
  format: 'password',
  description:
    'LDAP: the bind DN’s password; OpenID Connect: the client secret. Write-only, never returned',
});

const groupMappingsSchema = z
  .array(groupMappingSchema)
  .max(64)
  .meta({ description: 'Tried in order; the first matching pattern wins' });

const syncIntervalSchema = z
  .number()
  .int()
  .min(SYNC_INTERVAL_MINUTES.min)
  .max(SYNC_INTERVAL_MINUTES.max)
  .nullable()
  .meta({
    description: 'LDAP: minutes between scheduled syncs (5 … 10080); null: sync only on demand',
  });

const addAnywaySchema = z
  .boolean()
  .default(false)
  .meta({ description: 'LDAP: store the realm even when the connection test fails' });

/** Settings by type, for the validation of create and update bodies. */
export const REALM_SETTINGS_SCHEMAS = {
  ldap: ldapRealmSettingsSchema,
  openid: oidcRealmSettingsSchema,
} as const;

export const createRealmSchema = z
  .strictObject({
    id: realmIdSchema,
    type: z.enum(['ldap', 'openid']),
    comment: z.string().max(255).default(''),
    settings: z.record(z.string(), z.unknown()).meta({
      description:
        'LDAP: LdapRealmSettings (url, bindDn, userBaseDn, groupBaseDn …); OpenID Connect: issuerUrl, clientId …',
    }),
    secret: secretSchema.optional(),
    requireTfa: z
      .boolean()
      .default(false)
      .meta({ description: 'Every user of the realm must log in with a second factor' }),
    groupMappings: groupMappingsSchema.default([]),
    syncIntervalMinutes: syncIntervalSchema.default(null),
    addAnyway: addAnywaySchema,
  })
  .superRefine((body, ctx) => {
    const settings = REALM_SETTINGS_SCHEMAS[body.type].safeParse(body.settings);
    if (!settings.success) {
      for (const issue of settings.error.issues)
        ctx.addIssue({
          code: 'custom',
          path: ['settings', ...issue.path.map(String)],
          message: issue.message,
        });
    }
    if (body.type === 'openid' && body.secret === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['secret'],
        message: 'an OpenID Connect realm needs its client secret',
      });
    }
    if (body.type === 'openid' && body.syncIntervalMinutes !== null) {
      ctx.addIssue({
        code: 'custom',
        path: ['syncIntervalMinutes'],
        message: 'only LDAP realms sync on a schedule',
      });
    }
  });
export type CreateRealmInput = z.infer<typeof createRealmSchema>;
export class CreateRealmDto extends createZodDto(createRealmSchema) {}

export const updateRealmSchema = z.strictObject({
  type: z.enum(REALM_TYPES).optional().meta({
    description:
      'Only LDAP and OpenID Connect realms may change type (with new settings); local stays local',
  }),
  comment: z.string().max(255).optional(),
  settings: z.record(z.string(), z.unknown()).optional().meta({
    description:
      'All the settings of the realm’s type (validated like on create); absent: unchanged',
  }),
  secret: secretSchema
    .nullable()
    .optional()
    .meta({ description: 'A new secret; null removes it; absent: unchanged' }),
  requireTfa: z.boolean().optional(),
  groupMappings: groupMappingsSchema.optional(),
  syncIntervalMinutes: syncIntervalSchema.optional(),
  addAnyway: addAnywaySchema,
});
export type UpdateRealmInput = z.infer<typeof updateRealmSchema>;
export class UpdateRealmDto extends createZodDto(updateRealmSchema) {}

export class RealmParamsDto extends createZodDto(z.strictObject({ realm: realmIdSchema })) {}

// --- answers ---------------------------------------------------------------------------------------

export const realmSchema = z.object({
  id: z.string(),
  type: z.enum(REALM_TYPES),
  comment: z.string(),
  settings: z
    .record(z.string(), z.unknown())
    .meta({ description: 'The type’s settings; never a secret' }),
  hasSecret: z
    .boolean()
    .meta({ description: 'A bind password or client secret is stored (it is never returned)' }),
  requireTfa: z.boolean(),
  groupMappings: z.array(groupMappingSchema),
  syncIntervalMinutes: z.number().int().nullable(),
  lastSyncAt: z.iso
    .datetime()
    .nullable()
    .meta({ description: 'The last successful directory sync' }),
  lastSyncError: z
    .string()
    .nullable()
    .meta({ description: 'Why the last sync failed; null after a successful one' }),
  createdAt: z.iso.datetime(),
});
export type RealmView = z.infer<typeof realmSchema>;
export class RealmDto extends createZodDto(realmSchema) {}
export class RealmListDto extends createZodDto(z.object({ items: z.array(realmSchema) })) {}

/** What the login page may know of a realm before anyone has logged in: nothing of its settings. */
export const loginRealmSchema = z.object({
  id: z.string(),
  type: z.enum(REALM_TYPES).meta({
    description:
      'local and ldap: a password login with this realm; openid: a single sign-on button',
  }),
  comment: z
    .string()
    .meta({ description: 'What the login page shows next to the id, e.g. "Corporate directory"' }),
});
export type LoginRealmView = z.infer<typeof loginRealmSchema>;
export class LoginRealmListDto extends createZodDto(
  z.object({ items: z.array(loginRealmSchema).meta({ description: 'local first, then by id' }) }),
) {}

export const realmConnectionSchema = z
  .object({
    ok: z.boolean(),
    error: z
      .object({ code: z.string(), message: z.string() })
      .optional()
      .meta({ description: 'Why the test failed (only with addAnyway)' }),
  })
  .nullable()
  .meta({
    description:
      'The directory connection test; null when none ran (OpenID Connect, or nothing connection-related changed)',
  });
export type RealmConnection = z.infer<typeof realmConnectionSchema>;
export class ChangedRealmDto extends createZodDto(
  realmSchema.extend({ connection: realmConnectionSchema }),
) {}

export const syncSummarySchema = z.object({
  users: z.object({
    created: z.number().int(),
    updated: z.number().int(),
    disabled: z.number().int().meta({
      description:
        'No longer listed by the directory: disabled, sessions ended, realm memberships removed',
    }),
    skipped: z
      .number()
      .int()
      .meta({ description: 'Listed, but with a name that cannot be a manager user name' }),
  }),
  groups: z.object({ created: z.number().int() }),
  memberships: z.object({ added: z.number().int(), removed: z.number().int() }),
});
export type SyncSummary = z.infer<typeof syncSummarySchema>;
export class SyncSummaryDto extends createZodDto(syncSummarySchema) {}
