import { remoteIdSchema, uuidSchema } from '@debvisor/common';
import { ROLES } from '@debvisor/permissions';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { PRINCIPAL_TYPES, type PrincipalType } from './acl-entry.entity';
import { groupIdSchema, userIdSchema } from '../common/principal';

export const ACL_PATH_FORMS = [
  '/',
  '/remotes',
  '/remotes/{remote}',
  '/remotes/{remote}/vms',
  '/remotes/{remote}/vms/{vm uuid}',
  '/groups',
  '/groups/{remote group}',
  '/access',
  '/system',
] as const;

const NOT_A_PATH = `not an ACL path: use one of ${ACL_PATH_FORMS.join(', ')}`;

/**
 * What is wrong with an ACL path, or undefined when it is one of ACL_PATH_FORMS exactly (no
 * trailing slash, no empty, `.` or `..` segment, no percent-encoding, remote ids and VM uuids valid).
 */
export function aclPathProblem(path: string): string | undefined {
  if (path === '/') return undefined;
  if (!path.startsWith('/') || path.endsWith('/')) return NOT_A_PATH;
  const parts = path.slice(1).split('/');
  const [root, id, sub, vm] = parts;
  const remoteId = (value: string, what: string) =>
    remoteIdSchema.safeParse(value).success
      ? undefined
      : `${JSON.stringify(value)} is not a valid ${what} id (${NOT_A_PATH})`;
  switch (root) {
    case 'access':
    case 'system':
      return parts.length === 1 ? undefined : NOT_A_PATH;
    case 'groups':
      if (parts.length === 1) return undefined;
      return parts.length === 2 ? remoteId(id, 'remote group') : NOT_A_PATH;
    case 'remotes': {
      if (parts.length === 1) return undefined;
      if (parts.length > 4) return NOT_A_PATH;
      const bad = remoteId(id, 'remote');
      if (bad || parts.length === 2) return bad;
      if (sub !== 'vms') return NOT_A_PATH;
      if (parts.length === 3) return undefined;
      return uuidSchema.safeParse(vm).success
        ? undefined
        : `${JSON.stringify(vm)} is not a VM uuid (${NOT_A_PATH})`;
    }
    default:
      return NOT_A_PATH;
  }
}

/** An ACL path, validated strictly; a VM uuid in it is lower-cased (the form route parameters use). */
export const aclPathSchema = z
  .string()
  .min(1)
  .max(1024)
  .superRefine((path, ctx) => {
    const problem = aclPathProblem(path);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })
  .transform((path) => path.toLowerCase())
  .meta({ description: ACL_PATH_FORMS.join(' | '), example: '/remotes/dc-east' });

const TOKEN_ID = /^[0-9a-f]{16}$/;

/** What a principal id must look like for its type (user `name@realm`, group id, token id). */
export function principalProblem(type: PrincipalType, principal: string): string | undefined {
  switch (type) {
    case 'user':
      return userIdSchema.safeParse(principal).success
        ? undefined
        : 'a user principal is name@realm, e.g. alice@local';
    case 'group':
      return groupIdSchema.safeParse(principal).success
        ? undefined
        : 'a group principal is a group id, e.g. debvisor-operator';
    case 'token':
      return TOKEN_ID.test(principal)
        ? undefined
        : 'a token principal is the token’s id (16 hex digits, the part after dvdm_)';
  }
}

const principalTypeSchema = z
  .enum(PRINCIPAL_TYPES)
  .meta({ description: 'user, group, or token (a limited token’s own entries)' });
const principalSchema = z.string().min(1).max(255);

function checkPrincipal(
  entry: { principalType?: PrincipalType; principal?: string },
  ctx: z.RefinementCtx,
): void {
  if (entry.principalType === undefined || entry.principal === undefined) return;
  const problem = principalProblem(entry.principalType, entry.principal);
  if (problem) ctx.addIssue({ code: 'custom', message: problem, path: ['principal'] });
}

export const aclKeySchema = z
  .strictObject({
    path: aclPathSchema,
    principalType: principalTypeSchema,
    principal: principalSchema,
  })
  .superRefine(checkPrincipal);
export type AclKey = z.infer<typeof aclKeySchema>;

export const putAclSchema = z
  .strictObject({
    path: aclPathSchema,
    principalType: principalTypeSchema,
    principal: principalSchema,
    role: z.enum(ROLES),
    propagate: z
      .boolean()
      .default(true)
      .meta({ description: 'The role also holds on everything below the path' }),
  })
  .superRefine(checkPrincipal);
export type PutAclInput = z.infer<typeof putAclSchema>;
export class PutAclDto extends createZodDto(putAclSchema) {}

const partialKey = {
  path: z.string().max(1024).optional(),
  principalType: principalTypeSchema.optional(),
  principal: principalSchema.optional(),
};

/** DELETE takes its key in the query or in the body (validated as a whole by the service). */
export class AclKeyQueryDto extends createZodDto(z.strictObject(partialKey)) {}
export class AclKeyBodyDto extends createZodDto(z.strictObject(partialKey).default({})) {}

export class AclQueryDto extends createZodDto(
  z.strictObject({
    path: aclPathSchema.optional().meta({ description: 'Entries on exactly this path' }),
    principalType: principalTypeSchema.optional(),
    principal: principalSchema
      .optional()
      .meta({ description: 'Entries of this principal (user id, group id or token id)' }),
  }),
) {}

// --- answers ---------------------------------------------------------------------------------------

export const aclEntrySchema = z.object({
  path: z.string(),
  principalType: z.enum(PRINCIPAL_TYPES),
  principal: z.string(),
  role: z.enum(ROLES),
  propagate: z.boolean(),
  createdAt: z.iso.datetime(),
});
export type AclEntryView = z.infer<typeof aclEntrySchema>;
export class AclEntryDto extends createZodDto(aclEntrySchema) {}
export class AclListDto extends createZodDto(z.object({ items: z.array(aclEntrySchema) })) {}
