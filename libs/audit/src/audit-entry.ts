import { z } from 'zod';

/**
 * What became of the audited thing:
 *  - `attempt`: written before a change is made (the change is refused when this cannot be written);
 *  - `success` / `failure`: the outcome;
 *  - `denied`: refused for lack of authentication, permission or rate.
 */
export const AUDIT_OUTCOMES = ['attempt', 'success', 'failure', 'denied'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/** Lengths every writer keeps to (the manager's columns have these sizes). */
export const AUDIT_LIMITS = {
  principal: 255,
  action: 64,
  target: 1024,
  traceId: 128,
  source: 255,
  /** Any one string inside `details`. */
  detailString: 1024,
  /** Items of any one array inside `details`. */
  detailItems: 100,
  /** Nesting depth of `details`. */
  detailDepth: 6,
} as const;

/** Action names: a small, bounded vocabulary such as `auth.login`, `vm.power.start`, `rpc.VmService.StartVm`. */
export const AUDIT_ACTION = /^[a-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)*$/;

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256 in lower-case hex');
const nullableText = (max: number) => z.string().max(max).nullable();

/** JSON values as they appear in `details`. */
export type AuditDetailValue =
  string | number | boolean | null | AuditDetailValue[] | { [key: string]: AuditDetailValue };
export type AuditDetails = { [key: string]: AuditDetailValue };

const detailValue: z.ZodType<AuditDetailValue> = z.lazy(() =>
  z.union([
    z.string(),
    z.number().refine(Number.isFinite),
    z.boolean(),
    z.null(),
    z.array(detailValue),
    z.record(z.string(), detailValue),
  ]),
);

/** One audited event, before it is placed in a chain. */
export const auditEventSchema = z.strictObject({
  /** When it happened: RFC 3339 in UTC with milliseconds (`2026-05-01T12:00:00.000Z`). */
  ts: z
    .string()
    .regex(
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/,
      'an RFC 3339 UTC time with milliseconds',
    ),
  /** Who: `user@realm`, a token's principal, an agent key's principal; null when unknown (a failed login). */
  principal: nullableText(AUDIT_LIMITS.principal),
  action: z
    .string()
    .max(AUDIT_LIMITS.action)
    .regex(AUDIT_ACTION, 'an action name such as vm.power.start'),
  /** What it was done to: an ACL-style path such as `/remotes/dc-east/vms/<uuid>`; null when nothing in particular. */
  target: nullableText(AUDIT_LIMITS.target),
  outcome: z.enum(AUDIT_OUTCOMES),
  traceId: nullableText(AUDIT_LIMITS.traceId),
  /** Where the request came from: the peer's address (HTTP client, gRPC peer). */
  source: nullableText(AUDIT_LIMITS.source),
  /** Further facts, never secrets: method, error code, task id, key id … */
  details: z.record(z.string(), detailValue),
});
export type AuditEvent = z.infer<typeof auditEventSchema> & { details: AuditDetails };

/** An entry of a hash chain: the event, its sequence number, its predecessor's hash and its own. */
export const auditEntrySchema = auditEventSchema.extend({
  /** 1, 2, 3 … without gaps in one chain. */
  seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** The hash of the entry before (64 zeros for the first entry of a chain). */
  prevHash: sha256Hex,
  /** SHA-256 over the canonical JSON of every other field (see entryHash). */
  hash: sha256Hex,
});
export type AuditEntry = z.infer<typeof auditEntrySchema> & { details: AuditDetails };

/** The fields of an entry in the order a reader expects them (canonical JSON sorts them anyway). */
export const AUDIT_ENTRY_FIELDS = [
  'seq',
  'ts',
  'principal',
  'action',
  'target',
  'outcome',
  'traceId',
  'source',
  'details',
  'prevHash',
  'hash',
] as const;
