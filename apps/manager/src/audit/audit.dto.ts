import { AUDIT_ACTION, AUDIT_LIMITS, AUDIT_OUTCOMES } from '@debvisor/audit';
import { createZodDto } from 'nestjs-zod';
import { z } from 'zod';
import { AUDIT_SYSTEM_ENTRIES } from './audit-query.repository';

/** The most entries one page answers. */
export const AUDIT_PAGE_MAX = 1000;

export const auditEntryViewSchema = z
  .object({
    seq: z.number().int().meta({ description: 'Position in the chain: 1, 2, 3 … without gaps' }),
    ts: z.iso.datetime().meta({ description: 'When it happened (UTC, milliseconds)' }),
    principal: z.string().nullable().meta({
      description:
        'Who: admin@local, user@realm, @group (group tokens), debvisor-manager (the manager itself); null when unknown',
    }),
    action: z.string().meta({
      description:
        'What: auth.login, authz.denied, remote.create, vm.power.start, agent.call, task.finish …',
    }),
    target: z
      .string()
      .nullable()
      .meta({ description: 'On what: an ACL-style path such as /remotes/dc-east/vms/<uuid>' }),
    outcome: z.enum(AUDIT_OUTCOMES),
    traceId: z.string().nullable(),
    source: z.string().nullable().meta({ description: "The client's address" }),
    details: z.record(z.string(), z.unknown()),
    prevHash: z
      .string()
      .meta({ description: 'SHA-256 (hex) of the entry before; 64 zeros for the first' }),
    hash: z.string().meta({
      description: 'SHA-256 (hex) over the canonical JSON (RFC 8785) of every other field',
    }),
  })
  .meta({ id: 'AuditEntry' });

export class AuditPageDto extends createZodDto(
  z.object({
    items: z.array(auditEntryViewSchema).meta({ description: 'Newest first' }),
    nextCursor: z
      .number()
      .int()
      .nullable()
      .meta({ description: 'Pass as cursor for the next (older) page; null on the last page' }),
  }),
) {}

const filterFields = {
  from: z.iso
    .datetime({ offset: true })
    .optional()
    .meta({ description: 'Entries at or after this time (RFC 3339)' }),
  to: z.iso
    .datetime({ offset: true })
    .optional()
    .meta({ description: 'Entries before this time (RFC 3339)' }),
  principal: z.string().min(1).max(AUDIT_LIMITS.principal).optional(),
  action: z
    .string()
    .max(AUDIT_LIMITS.action)
    .regex(AUDIT_ACTION, 'an action name such as vm.power or vm.power.start')
    .optional()
    .meta({ description: 'This action and those below it: vm.power matches vm.power.start' }),
  target: z
    .string()
    .max(AUDIT_LIMITS.target)
    .startsWith('/', 'a path such as /remotes/dc-east')
    .optional()
    .meta({ description: 'This target and everything below it: /remotes/dc-east matches its VMs' }),
  outcome: z.enum(AUDIT_OUTCOMES).optional(),
};

const systemEntries = (fallback: (typeof AUDIT_SYSTEM_ENTRIES)[number]) =>
  z
    .enum(AUDIT_SYSTEM_ENTRIES)
    .default(fallback)
    .meta({
      description:
        "The manager's own entries (principal debvisor-manager): all; no-routine, without its routine reads of the remotes (agent.call.summary); none. " +
        'An export without some entries has gaps in seq: verify it with --allow-gaps',
    });

const timeOrder = (q: { from?: string; to?: string }) =>
  !q.from || !q.to || new Date(q.from) < new Date(q.to);

export const auditQuerySchema = z
  .strictObject({
    ...filterFields,
    system: systemEntries('no-routine'),
    limit: z.coerce.number().int().min(1).max(AUDIT_PAGE_MAX).default(100),
    cursor: z.coerce
      .number()
      .int()
      .min(1)
      .optional()
      .meta({ description: 'nextCursor of the previous page: entries with a lower seq' }),
  })
  .refine(timeOrder, { message: 'must be later than from', path: ['to'] });
export type AuditQuery = z.infer<typeof auditQuerySchema>;
export class AuditQueryDto extends createZodDto(auditQuerySchema) {}

export const auditExportQuerySchema = z
  .strictObject({ ...filterFields, system: systemEntries('all') })
  .refine(timeOrder, { message: 'must be later than from', path: ['to'] });
export type AuditExportQuery = z.infer<typeof auditExportQuerySchema>;
export class AuditExportQueryDto extends createZodDto(auditExportQuerySchema) {}
